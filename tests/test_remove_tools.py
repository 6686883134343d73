"""`python -m core remove-tools`: removed tools leave the catalog and the code trie, retrieval and the agent never
return them, a reload keeps them out, their rows stay unused; bad requests are refused before anything is written."""

import json

import pytest
import torch

from core.__main__ import main
from core.adapter import ADAPTER_WEIGHTS, save_compact
from core.agent import AgentConfig, run_agent
from core.examples import memorization_examples
from core.indexing import FINISH
from core.model import ToolGenModel
from core.remove_tools import remove_tools
from core.retrieval import QueryError, ToolGenRetriever
from core.tiny import tiny_llama
from core.train import StageConfig, Trainer
from tests.helpers import tiny_toolgen
from tests.scripted_agent import FORECAST, LYRICS, WEATHER, RecordingExecutor, scripted

QUERY = "What will the weather be like in Rome tomorrow?"


def ranking(toolgen, k=20, pool=None):
    return [tool_id for tool_id, _ in ToolGenRetriever(toolgen, num_beams=k).retrieve(QUERY, k=k, pool=pool)]


def test_removed_tools_are_never_retrieved_and_stay_removed_after_a_reload(tmp_path, smollm2_tokenizer, toy_catalog):
    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog)
    before = ranking(toolgen)
    assert sorted(before) == sorted(toy_catalog.ids)
    gone = before[:3]  # the three tools this (random) model ranks first: removal must change the answer
    toolgen.save(tmp_path / "model")
    (tmp_path / "ids.txt").write_text("\n".join(gone) + "\n\n")

    command = ["remove-tools", "--model", str(tmp_path / "model"), "--tools-file", str(tmp_path / "ids.txt")]
    assert main([*command, "--out", str(tmp_path / "smaller")]) == 0
    smaller = ToolGenModel.load(tmp_path / "smaller")
    assert smaller.catalog.ids == [t for t in toy_catalog.ids if t not in gone]
    assert set(smaller.code_sequences()) == set(smaller.catalog.ids) and smaller.info["removed_tools"] == gone
    assert ranking(smaller) == [t for t in before if t not in gone]  # the same scores for the tools that remain
    with pytest.raises(QueryError, match="unknown tool"):
        ranking(smaller, pool=[gone[0], before[5]])
    assert len(smaller.tokenizer) == len(toolgen.tokenizer)  # the rows stay, unused
    for name, value in toolgen.model.state_dict().items():
        assert torch.equal(smaller.model.state_dict()[name], value), name
    assert ToolGenModel.load(tmp_path / "model").catalog.ids == toy_catalog.ids  # --out left the source alone

    assert main(["remove-tools", "--model", str(tmp_path / "smaller"), "--tools", before[3]]) == 0  # in place
    again = ToolGenModel.load(tmp_path / "smaller")
    assert again.info["removed_tools"] == [*gone, before[3]] and ranking(again) == before[4:]


def test_the_agent_never_calls_a_removed_tool(setup):
    _, build = setup
    toolgen = scripted(build, [("Lyrics!", LYRICS, {"q": "x"}), ("ok", FINISH, {"final_answer": "-"})])
    first_action = next(e for e in run_agent(toolgen, "Lyrics?", RecordingExecutor()) if e.kind == "action")
    assert first_action.tool_id == LYRICS  # what the model writes while the tool is there
    smaller = remove_tools(toolgen, [LYRICS])
    events = list(run_agent(smaller, "Lyrics?", RecordingExecutor(), config=AgentConfig(max_steps=2)))
    actions = [e for e in events if e.kind == "action"]
    assert actions and LYRICS not in {a.tool_id for a in actions}
    with pytest.raises(ValueError, match="not in the model's catalog"):
        list(run_agent(smaller, "Lyrics?", RecordingExecutor(), pool=[WEATHER, LYRICS]))


def test_training_after_a_removal_leaves_the_removed_rows_alone(smollm2_tokenizer, toy_catalog):
    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog)
    smaller = remove_tools(toolgen, [FORECAST])
    trainer = Trainer(smaller, train_layers=1, bf16=False)
    embedding = smaller.model.get_input_embeddings().weight
    assert trainer.first_new == min(toolgen.code_ids(t)[0] for t in toy_catalog.ids)  # the removed row still counts
    removed_row, kept_row = toolgen.code_ids(FORECAST)[0], toolgen.code_ids(WEATHER)[0]
    removed_before, kept_before = embedding[removed_row].clone(), embedding[kept_row].clone()
    config = StageConfig(epochs=1, head="codes", lr=3e-3, rows_lr=3e-2, batch_tokens=1024)
    trainer.train(memorization_examples(smaller), config, "memorization")
    assert torch.equal(embedding[removed_row], removed_before) and not torch.equal(embedding[kept_row], kept_before)


def test_unknown_ids_and_removing_every_tool_are_refused_before_anything_is_written(
    tmp_path, capsys, smollm2_tokenizer, toy_catalog
):
    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog)
    with pytest.raises(ValueError, match=r"2 tool id\(s\) not in the model's catalog: Nope&&a, Nope&&b$"):
        remove_tools(toolgen, ["Nope&&a", WEATHER, "Nope&&b"])
    with pytest.raises(ValueError, match="refusing to remove all 20 tools"):
        remove_tools(toolgen, toy_catalog.ids)
    with pytest.raises(ValueError, match="no tool ids"):
        remove_tools(toolgen, [])
    toolgen.save(tmp_path / "model")
    written = (tmp_path / "model" / "toolgen.json").read_text()
    assert main(["remove-tools", "--model", str(tmp_path / "model"), "--tools", f"{WEATHER},Nope&&a"]) == 2
    assert "Nope&&a" in capsys.readouterr().err
    assert main(["remove-tools", "--model", str(tmp_path / "model"), "--tools", ",".join(toy_catalog.ids)]) == 2
    assert "refusing" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    assert (
        main(["remove-tools", "--model", str(tmp_path / "model"), "--tools", WEATHER, "--out", str(tmp_path / "taken")])
        == 2
    )
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "model" / "toolgen.json").read_text() == written
    assert "removed_tools" not in json.loads(written)


def test_a_compact_checkpoint_stays_compact(tmp_path, smollm2_tokenizer, toy_catalog):
    tiny_llama(len(smollm2_tokenizer)).save_pretrained(tmp_path / "base")
    smollm2_tokenizer.save_pretrained(tmp_path / "base")
    save_compact(ToolGenModel.from_base(toy_catalog, base=str(tmp_path / "base")), tmp_path / "compact")
    out = tmp_path / "smaller"
    assert main(["remove-tools", "--model", str(tmp_path / "compact"), "--tools", WEATHER, "--out", str(out)]) == 0
    assert not (out / "model.safetensors").exists()
    assert (out / ADAPTER_WEIGHTS).read_bytes() == (tmp_path / "compact" / ADAPTER_WEIGHTS).read_bytes()
    smaller = ToolGenModel.load(out)
    assert WEATHER not in smaller.catalog and len(smaller.catalog) == len(toy_catalog) - 1
    assert WEATHER not in ranking(smaller)
