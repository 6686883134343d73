"""Named thoughts: the thought's opening is decoded over the pool's function names, and the action follows it."""

from core.agent import AgentConfig, run_agent
from core.examples import FINISH_THOUGHT
from core.indexing import FINISH, build_indexing
from core.model import ToolGenModel
from core.thought_names import ThoughtOpenings
from core.tools import Tool, ToolCatalog
from tests.scripted_agent import FORECAST, LYRICS, WEATHER, RecordingExecutor, scripted

# The thought names `forecast` but the scripted action token is another tool's.
CONTRADICTED = [
    ("I should use forecast to get the forecast.", WEATHER, {"q": "Oslo"}),
    (FINISH_THOUGHT, FINISH, {"final_answer": "done"}),
]
POOL = [WEATHER, FORECAST, LYRICS]


def test_the_action_is_chosen_among_the_tools_the_thought_names(setup):
    _, build = setup
    free = list(run_agent(scripted(build, CONTRADICTED), "Forecast for Oslo?", RecordingExecutor(), pool=POOL))
    assert free[1].tool_id == WEATHER  # unconstrained by the thought, the action follows its own token
    config = AgentConfig(named_thoughts=True)
    named = list(run_agent(scripted(build, CONTRADICTED), "Forecast for Oslo?", RecordingExecutor(), POOL, config))
    assert named[0].kind == "thought" and named[0].text == "I should use forecast to get the forecast."
    assert named[1].tool_id == FORECAST and [a[0] for a in named[1].alternatives] == [FORECAST]
    finish = [e for e in named if e.kind == "action"][-1]
    assert finish.tool_id == FINISH and [a[0] for a in finish.alternatives] == [FINISH]
    assert named[-1].kind == "final_answer"


def test_openings_name_every_pool_function_and_finish(setup):
    tokenizer, build = setup
    openings = ThoughtOpenings.of(build([[0]]), [WEATHER, FORECAST, FINISH])
    assert set(openings.named) == {FINISH, "current weather to", "current weather.", "forecast to", "forecast."}
    assert openings.named["forecast to"] == (FORECAST,) and openings.named[FINISH] == ()
    assert tokenizer.decode(openings.trie.codes["forecast to"]) == "Thought: I should use forecast to"
    assert tokenizer.decode(openings.trie.codes[FINISH]) == "Thought: " + FINISH_THOUGHT


def test_an_opening_that_prefixes_another_is_left_out(smollm2_tokenizer):
    names = ["math", "math.factorial", "math.factorial"]
    tools = [
        Tool(f"Calc&&{name}{suffix}", "", "Calc", f"{name}{suffix}", "") for name, suffix in zip(names, ["", "", "#b2"])
    ]
    catalog = ToolCatalog(tools)
    indexing = build_indexing("atomic", catalog)
    smollm2_tokenizer.add_tokens(indexing.new_tokens() + [FINISH])
    toolgen = ToolGenModel(None, smollm2_tokenizer, catalog, indexing)
    openings = ThoughtOpenings.of(toolgen, catalog.ids)
    assert "math." not in openings.named  # "…use math." begins "…use math.factorial to"
    assert openings.named["math to"] == ("Calc&&math",)
    assert openings.named["math.factorial."] == ("Calc&&math.factorial", "Calc&&math.factorial#b2")
