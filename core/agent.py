"""The ToolGen agent: a ReAct loop over a `ToolGenModel` that streams structured events.

The model sees one token-id context built by concatenating ids, exactly as agent tuning renders trajectories
(core/prompts.py owns the format):

    agent_prompt(query)
    + assistant_turn_ids(Step(thought, tool, arguments))    "Thought: …\\nAction: <code>\\nAction Input: {…}"
    + observation_ids(observation[:max_observation_chars])  "Observation: …" as a user turn
    + …                                                     until the action is <<Finish>>

Decoding one assistant turn:
1. Thought: greedy and unconstrained until the text ends with "\\nAction: ". Hitting `max_thought_tokens` or an
   end-of-turn token first is an error event; the Action then follows the text written so far.
2. Action: `constrained_beam_search` over the codes of the current tool pool plus `<<Finish>>`, so the model can
   only name a tool that exists (one-token codes: the same exact ranking, read from the KV-cached context's
   next-token distribution). The best code is taken; the other ranked tools are kept with their log-probs.
   With `finish_margin` m, a user turn's first action ranks Finish by its log-prob minus m (refusing at once
   must beat the best tool by m nats; the event keeps the true log-probs).
3. Action Input: the tokens of "\\nAction Input:" are forced, then `core.arguments.decode_arguments` writes a JSON
   object whose keys come from the tool's parameter schema (Finish: `final_answer`) and whose values the model
   generates; it always parses and holds every required parameter. With `typed_arguments` each value is also held
   to its parameter's JSON-schema type (integers, numbers, booleans, enums, strings: core/typed_values.py), and
   with `copy_bonus` a tool's string values lean toward spans of the user's messages.
   Documentation on demand (`agent_docs`; by default as the model was agent-tuned, `toolgen.info["agent_docs"]`):
   after a tool's code the assistant turn ends, the tool's documentation enters as a user turn
   (`prompts.documentation_ids`, once per Action), and "Action Input:" opens the next assistant turn.
   A value that does not complete within `max_argument_tokens` is an error event (a cut string is kept). Values
   that break the schema (a wrong type) are reported in the arguments event and still sent: the executor
   answers with an error observation.
   Whatever was generated, the context receives the canonical turn (`assistant_turn_ids`) of what was executed.
4. Execution: `executor.call(tool, arguments)` under a time limit. A raise, a timeout or a result that is not an
   `Observation` becomes an error observation. The context gets the first `max_observation_chars` characters.

A conversation may hold several user turns (BFCL multi-turn): later turns are appended as user messages and
may change the tool pool (BFCL's held-out functions). `max_steps` limits the assistant turns (Finish included)
of each user turn; a user turn that hits a limit ends the conversation. `run_agent` plays user turns known in
advance; a `Conversation` takes them one at a time (a chat), with the same token layout.
Thought and argument decoding share one KV cache over the growing context, so each step only encodes new tokens.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

import torch

from .arguments import FINISH_SCHEMA, decode_arguments
from .constraint import CodeTrie
from .decoding import constrained_beam_search, top_single_token_codes
from .executors.base import DEFAULT_TIMEOUT_S, Executor, Observation, error_observation, safe_call, validate_arguments
from .indexing import FINISH
from .model import ToolGenModel
from .prompts import (
    ACTION,
    ACTION_INPUT,
    DOC_MAX_TOKENS,
    DOCUMENTED_ACTION_INPUT,
    THOUGHT,
    Step,
    agent_prompt,
    assistant_turn_ids,
    documentation_ids,
    encode,
    end_of_turn_ids,
    observation_ids,
    user_turn_ids,
)
from .typed_values import CopyBias

DEFAULT_CONTEXT_TOKENS = 4096  # context limit for models whose config names none


@dataclass
class AgentConfig:
    """Limits and decoding settings of one agent run."""

    max_steps: int = 6  # assistant turns per user turn, the Finish turn included
    num_beams: int = 5
    alternatives: int = 5  # how many ranked tools each action event reports
    max_thought_tokens: int = 96
    max_argument_tokens: int = 128
    max_observation_chars: int = 300  # observation text shown to the model, as in agent tuning (events keep it all)
    tool_timeout_s: float = DEFAULT_TIMEOUT_S
    max_context_tokens: int | None = None  # default: the model's max_position_embeddings
    probe_unconstrained: bool = False  # also decode the action greedily without the constraint (hallucination probe)
    agent_docs: bool | None = None  # read the tool's documentation before its arguments; None: as the model was tuned
    typed_arguments: bool = False  # hold argument values to their JSON-schema types (core/typed_values.py)
    copy_bonus: float = 0.0  # typed only: logit bonus for string tokens that copy a span of the user's messages
    finish_margin: float | None = None  # a turn's first action is Finish only if it beats the best tool by this
    # (nats); None: the model's `info["finish_margin"]` (chosen on training tasks), else 0

    def __post_init__(self):
        limits = (self.max_steps, self.num_beams, self.alternatives, self.max_thought_tokens, self.max_argument_tokens)
        if min(limits) < 1 or self.tool_timeout_s <= 0:
            raise ValueError(f"agent limits must be positive: {self}")
        if self.copy_bonus < 0 or (self.copy_bonus and not self.typed_arguments):
            raise ValueError(f"copy_bonus must be >= 0 and needs typed_arguments: {self}")
        if self.finish_margin is not None and self.finish_margin < 0:
            raise ValueError(f"finish_margin must be >= 0: {self}")


@dataclass(frozen=True)
class UserTurn:
    """One user message; `pool`, when given, replaces the tools the agent may call from this turn on."""

    text: str
    pool: tuple[str, ...] | None = None


# ---------------------------------------------------------------- events


@dataclass(kw_only=True)
class AgentEvent:
    """Something the agent did. `turn`: user turn index; `step`: tool-call step within the run (from 0)."""

    kind: str = field(init=False, default="")
    turn: int
    step: int

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict (includes `kind`)."""
        return asdict(self)


@dataclass(kw_only=True)
class ThoughtEvent(AgentEvent):
    kind: str = field(init=False, default="thought")
    text: str


@dataclass(kw_only=True)
class ActionEvent(AgentEvent):
    """The chosen tool (or FINISH) and the beam's ranked alternatives `(tool_id, code, log_prob)`, best first.

    With `probe_unconstrained`: `unconstrained` is what greedy decoding writes at this point without the
    constraint, `unconstrained_valid` whether that text starts with a code of the pool (or Finish).
    """

    kind: str = field(init=False, default="action")
    tool_id: str
    code: str
    log_prob: float
    alternatives: list[tuple[str, str, float]]
    unconstrained: str | None = None
    unconstrained_valid: bool | None = None


@dataclass(kw_only=True)
class ArgumentsEvent(AgentEvent):
    """The arguments sent, the raw generated text, and their problems against the tool's schema."""

    kind: str = field(init=False, default="arguments")
    tool_id: str
    arguments: dict
    text: str
    problems: list[str]


@dataclass(kw_only=True)
class ObservationEvent(AgentEvent):
    kind: str = field(init=False, default="observation")
    tool_id: str
    content: str
    ok: bool
    error: str | None
    simulated: bool
    executed: bool


@dataclass(kw_only=True)
class FinalAnswerEvent(AgentEvent):
    kind: str = field(init=False, default="final_answer")
    text: str


@dataclass(kw_only=True)
class ErrorEvent(AgentEvent):
    """A deviation from the format or a limit hit; `recovery` says what the agent did instead of crashing."""

    kind: str = field(init=False, default="error")
    message: str
    recovery: str


# ---------------------------------------------------------------- trace


@dataclass
class AgentTrace:
    """A finished run: the user turns, every event, and the final answer of each user turn (None: no Finish)."""

    turns: list[str]
    events: list[AgentEvent]
    answers: list[str | None]

    @property
    def query(self) -> str:
        return self.turns[0]

    @property
    def final_answer(self) -> str | None:
        """The final answer of the last user turn."""
        return self.answers[-1] if self.answers else None

    @property
    def finished(self) -> bool:
        """Every user turn ended with Finish."""
        return len(self.answers) == len(self.turns) and all(a is not None for a in self.answers)

    @property
    def calls(self) -> list[tuple[int, str, dict]]:
        """Tool calls made, in order: (user turn, tool id, arguments); Finish is not a call."""
        return [
            (e.turn, e.tool_id, e.arguments)
            for e in self.events
            if isinstance(e, ArgumentsEvent) and e.tool_id != FINISH
        ]

    def calls_by_turn(self) -> list[list[tuple[str, dict]]]:
        """The (tool id, arguments) calls of each user turn."""
        grouped: list[list[tuple[str, dict]]] = [[] for _ in self.turns]
        for turn, tool_id, arguments in self.calls:
            grouped[turn].append((tool_id, arguments))
        return grouped

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict."""
        return {
            "query": self.query,
            "turns": self.turns,
            "events": [e.to_dict() for e in self.events],
            "answers": self.answers,
            "final_answer": self.final_answer,
            "finished": self.finished,
        }


# ---------------------------------------------------------------- token format


def forced_input_prefix(tokenizer, opening: str = ACTION_INPUT) -> list[int]:
    """The ids that begin every tokenized Action Input line before its JSON: "\\nAction Input:" (the tokenizer
    may merge the space before "{" into one token, as SmolLM2's does; the model then generates it). `opening`:
    DOCUMENTED_ACTION_INPUT for the turn after a documentation turn."""
    ids = encode(tokenizer, opening + "{}")
    while ids and not opening.startswith(tokenizer.decode(ids)):
        ids = ids[:-1]
    return ids


# ---------------------------------------------------------------- decoding helpers


class _PrefixCache:
    """A KV cache over the last sequence run: a new sequence only encodes what follows their common prefix."""

    def __init__(self, model):
        self.model, self.ids, self.cache = model, [], None

    @torch.inference_mode()
    def next_logits(self, ids: Sequence[int]) -> torch.Tensor:
        """Next-token logits after `ids` (1-D)."""
        ids = list(ids)
        limit = min(len(self.ids), len(ids) - 1)  # at least one token must be fed to get logits
        common = limit if ids[:limit] == self.ids[:limit] else 0
        while common < limit and self.ids[common] == ids[common]:
            common += 1
        if self.cache is not None and common < len(self.ids):
            if common == 0:
                self.cache = None
            else:
                self.cache.crop(common - len(self.ids))
        device = self.model.device
        out = self.model(
            input_ids=torch.tensor([ids[common:]], dtype=torch.long, device=device),
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self.cache, self.ids = out.past_key_values, ids
        return out.logits[0, -1].float()

    def release(self) -> None:
        """Free the cache's memory; the next call encodes its whole sequence."""
        self.ids, self.cache = [], None

    def greedy(self, ids: Sequence[int], max_new_tokens: int, done) -> list[int]:
        """Greedy continuation of `ids`, stopping after `max_new_tokens` or once `done(new_ids)` holds."""
        new: list[int] = []
        while len(new) < max_new_tokens:
            new.append(int(self.next_logits(list(ids) + new).argmax()))
            if done(new):
                break
        return new


def _observe(executor: Executor, tool, arguments: dict, timeout_s: float) -> Observation:
    """`executor.call` that never raises: exceptions, timeouts and non-Observation results become errors."""
    box: dict[str, object] = {}

    def call() -> str:
        box["observation"] = executor.call(tool, arguments)
        return ""

    outcome = safe_call(call, timeout_s, max_chars=None)
    if not outcome.ok:
        return outcome
    observation = box["observation"]
    if not isinstance(observation, Observation):
        return error_observation(
            f"the executor returned {type(observation).__name__}, not an Observation", executed=True
        )
    if not isinstance(observation.content, str):
        return error_observation(
            f"the observation content is {type(observation.content).__name__}, not text", executed=observation.executed
        )
    return observation


def tool_trie(toolgen: ToolGenModel, pool: Sequence[str] | None) -> CodeTrie:
    """The codes the action may take: the pool's tools (None: the whole catalog) and Finish."""
    pool = None if pool is None else list(dict.fromkeys(pool))
    unknown = [] if pool is None else [t for t in pool if t not in toolgen.catalog]
    if unknown:
        raise ValueError(f"{len(unknown)} pool tool(s) are not in the model's catalog, e.g. {unknown[:3]}")
    return CodeTrie(toolgen.code_sequences(pool, include_finish=True))


def _config_or_model(toolgen: ToolGenModel, config: AgentConfig, name: str, default):
    """The config's `name`, else the value the model records under that name in `toolgen.info`, else `default`."""
    chosen = getattr(config, name)
    return toolgen.info.get(name, default) if chosen is None else chosen


def reads_documentation(toolgen: ToolGenModel, config: AgentConfig) -> bool:
    """Whether the agent's tool calls read the tool's documentation (documentation on demand): the config's
    `agent_docs`, else what the model was agent-tuned with (`toolgen.info["agent_docs"]`, default False)."""
    return bool(_config_or_model(toolgen, config, "agent_docs", False))


def finish_margin(toolgen: ToolGenModel, config: AgentConfig) -> float:
    """How clearly Finish must beat the best tool to be a turn's first action: the config's `finish_margin`, else
    the model's `info["finish_margin"]` (set by `scripts/refusal_probe.py --split train --record`), else 0."""
    return float(_config_or_model(toolgen, config, "finish_margin", 0.0))


# ---------------------------------------------------------------- the loop


class _Run:
    """The state of one conversation: the token context, the step counter, and the decoding helpers."""

    def __init__(self, toolgen: ToolGenModel, executor: Executor, config: AgentConfig):
        self.toolgen, self.executor, self.config = toolgen, executor, config
        self.tokenizer = tokenizer = toolgen.tokenizer
        self.context: list[int] = []
        self.requests: list[str] = []  # the user's messages so far (string values may copy from them)
        self.step = self.turn_start = 0  # turn_start: the step that began the current user turn
        self.cache = _PrefixCache(toolgen.model)
        self.input_prefix = forced_input_prefix(tokenizer)
        self.documented_input_prefix = forced_input_prefix(tokenizer, DOCUMENTED_ACTION_INPUT)
        self.end_of_turn = end = end_of_turn_ids(tokenizer)
        self.stop_ids = {
            i
            for i in (tokenizer.eos_token_id, end[0] if end else None)
            if i is not None and i in tokenizer.all_special_ids
        }
        self.model_limit = getattr(getattr(toolgen.model, "config", None), "max_position_embeddings", None)

    @property
    def max_context(self) -> int:
        return self.config.max_context_tokens or self.model_limit or DEFAULT_CONTEXT_TOKENS

    @property
    def documented(self) -> bool:
        return reads_documentation(self.toolgen, self.config)

    def code_text(self, tool_id: str) -> str:
        return FINISH if tool_id == FINISH else self.toolgen.indexing.code(tool_id)

    def user_turn(self, turn: int, text: str, trie: CodeTrie) -> Iterator[AgentEvent]:
        """User message `text` enters the context (after the agent prompt if it is the first), then assistant
        turns follow until Finish (then the last event is a FinalAnswerEvent), `max_steps`, or a full context."""
        self.context += agent_prompt(self.tokenizer, text) if not self.context else user_turn_ids(self.tokenizer, text)
        self.requests.append(text)
        self.turn_start = self.step
        for _ in range(self.config.max_steps):
            needed = self.config.max_thought_tokens + trie.depth + self.config.max_argument_tokens + 16
            needed += DOC_MAX_TOKENS + 16 if self.documented else 0
            if len(self.context) + needed > self.max_context:
                yield ErrorEvent(
                    turn=turn,
                    step=self.step,
                    message=f"the context ({len(self.context)} tokens) "
                    f"leaves no room for another step within {self.max_context} tokens",
                    recovery="the conversation stops here",
                )
                return
            for event in self.assistant_turn(turn, trie):
                yield event
            self.step += 1
            if isinstance(event, FinalAnswerEvent):
                return
        yield ErrorEvent(
            turn=turn,
            step=self.step,
            message=f"no Finish within {self.config.max_steps} steps",
            recovery="the conversation stops without a final answer",
        )

    def assistant_turn(self, turn: int, trie: CodeTrie) -> Iterator[AgentEvent]:
        """One Thought / Action / Action Input turn, then its observation or final answer."""
        for event in self.thought(turn):
            yield event
        thought = event.text  # the thought event comes last
        prompt = self.context + encode(self.tokenizer, THOUGHT + thought + ACTION)
        action = self.action(turn, trie, prompt)
        yield action
        finish = action.tool_id == FINISH
        documented = self.documented and not finish
        code_ids = [self.toolgen.finish_token_id] if finish else list(self.toolgen.code_ids(action.tool_id))
        if documented:  # the documentation turn, once per Action, exactly as `assistant_turn_parts` lays it out
            tool = self.toolgen.catalog[action.tool_id]
            opening = self.end_of_turn + documentation_ids(self.tokenizer, tool) + self.documented_input_prefix
        else:
            opening = self.input_prefix
        for event in self.arguments(turn, action, prompt + code_ids + opening):
            yield event
        arguments = event.arguments  # the arguments event comes last
        self.context += assistant_turn_ids(self.toolgen, Step(thought, action.tool_id, arguments), documented)
        if finish:
            yield FinalAnswerEvent(turn=turn, step=self.step, text=arguments["final_answer"])
            return
        tool = self.toolgen.catalog[action.tool_id]
        observation = _observe(self.executor, tool, arguments, self.config.tool_timeout_s)
        yield ObservationEvent(
            turn=turn,
            step=self.step,
            tool_id=tool.id,
            content=observation.content,
            ok=observation.ok,
            error=observation.error,
            simulated=observation.simulated,
            executed=observation.executed,
        )
        self.context += observation_ids(self.tokenizer, observation.content[: self.config.max_observation_chars])

    def thought(self, turn: int) -> Iterator[AgentEvent]:
        """Greedy text up to "\\nAction: "; the last event is the ThoughtEvent."""
        tokenizer = self.tokenizer
        new = self.cache.greedy(
            self.context,
            self.config.max_thought_tokens,
            lambda ids: ids[-1] in self.stop_ids or ("\n" + tokenizer.decode(ids)).endswith(ACTION),
        )
        text = "\n" + tokenizer.decode([i for i in new if i not in self.stop_ids])
        if text.endswith(ACTION):
            text = text[: -len(ACTION)]
        else:
            cause = "ended its turn" if new and new[-1] in self.stop_ids else f"wrote {len(new)} tokens"
            yield ErrorEvent(
                turn=turn,
                step=self.step,
                message=f"the model {cause} without an Action",
                recovery="the thought is cut there and the Action is decoded after it",
            )
        yield ThoughtEvent(turn=turn, step=self.step, text=text[1:].removeprefix(THOUGHT).strip())

    def action(self, turn: int, trie: CodeTrie, prompt: list[int]) -> ActionEvent:
        """Constrained beam search for the action; optionally the unconstrained greedy probe."""
        if trie.depth == 1:  # one-token codes: the ranking is one masked softmax after the cached prompt
            log_probs = torch.log_softmax(self.cache.next_logits(prompt), dim=-1)
            candidates = top_single_token_codes(log_probs, trie, self.config.alternatives)
        else:
            candidates = constrained_beam_search(
                self.toolgen.model,
                prompt,
                trie,
                num_beams=self.config.num_beams,
                top_k=self.config.alternatives,
                record_steps=False,
            ).candidates
        margin = finish_margin(self.toolgen, self.config)
        if margin and self.step == self.turn_start:  # refusing at once must beat a call clearly
            candidates = sorted(candidates, key=lambda c: c.log_prob - margin * (c.tool_id == FINISH), reverse=True)
        best = candidates[0]
        event = ActionEvent(
            turn=turn,
            step=self.step,
            tool_id=best.tool_id,
            code=self.code_text(best.tool_id),
            log_prob=best.log_prob,
            alternatives=[(c.tool_id, self.code_text(c.tool_id), c.log_prob) for c in candidates],
        )
        if self.config.probe_unconstrained:
            free = self.cache.greedy(prompt, trie.depth, lambda ids: _left_or_completed(trie, ids))
            event.unconstrained = self.tokenizer.decode(free)
            event.unconstrained_valid = trie.leading_code(free) is not None
        return event

    def arguments(self, turn: int, action: ActionEvent, prompt: list[int]) -> Iterator[AgentEvent]:
        """Schema-guided JSON after the forced "\\nAction Input:" (core/arguments.py); the last event is the
        ArgumentsEvent."""
        tool = None if action.tool_id == FINISH else self.toolgen.catalog[action.tool_id]
        decoded = decode_arguments(
            self.cache.next_logits,
            self.tokenizer,
            prompt,
            FINISH_SCHEMA if tool is None else tool.parameters,
            self.config.max_argument_tokens,
            frozenset(self.stop_ids),
            typed=self.config.typed_arguments,
            copy=CopyBias(self.tokenizer, "\n".join(self.requests), self.config.copy_bonus)
            if self.config.copy_bonus and tool is not None
            else None,
        )
        arguments = decoded.arguments
        if decoded.problem:
            yield ErrorEvent(
                turn=turn, step=self.step, message=decoded.problem, recovery="the arguments decoded before it are used"
            )
        if tool is None and not isinstance(arguments.get("final_answer"), str):
            arguments = {"final_answer": ""}
        problems = [] if tool is None else validate_arguments(tool, arguments)
        yield ArgumentsEvent(
            turn=turn, step=self.step, tool_id=action.tool_id, arguments=arguments, text=decoded.text, problems=problems
        )


def _left_or_completed(trie: CodeTrie, ids: Sequence[int]) -> bool:
    try:
        return len(trie.allowed(ids)) == 0
    except KeyError:  # the text left the trie: not a code of the pool
        return True


def _user_turns(query: str | UserTurn | Sequence[str | UserTurn]) -> list[UserTurn]:
    turns = [query] if isinstance(query, (str, UserTurn)) else list(query)
    return [turn if isinstance(turn, UserTurn) else UserTurn(turn) for turn in turns]


def run_agent(
    toolgen: ToolGenModel,
    query: str | UserTurn | Sequence[str | UserTurn],
    executor: Executor,
    pool: Sequence[str] | None = None,
    config: AgentConfig | None = None,
) -> Iterator[AgentEvent]:
    """Run the agent on `query` (one request, or the user turns of a conversation), yielding events as they happen.

    `pool`: the tool ids the agent may call (None: the model's whole catalog); a `UserTurn.pool` replaces it from
    that turn on. Pools naming tools the model does not know raise ValueError before anything runs. The executor
    is used as given (pass a fresh or reset one per conversation).
    """
    config = config or AgentConfig()
    turns = _user_turns(query)
    if not turns or not turns[0].text.strip():
        raise ValueError("the query is empty")
    tries = []
    for turn in turns:
        if turn.pool is not None or not tries:
            tries.append(tool_trie(toolgen, pool if turn.pool is None else turn.pool))
        else:
            tries.append(tries[-1])
    run = _Run(toolgen, executor, config)
    for index, (turn, trie) in enumerate(zip(turns, tries)):
        last = None
        for event in run.user_turn(index, turn.text, trie):
            last = event
            yield event
        if not isinstance(last, FinalAnswerEvent):
            return  # a limit was hit: later user turns are not attempted


def run_to_end(
    toolgen: ToolGenModel,
    query: str | UserTurn | Sequence[str | UserTurn],
    executor: Executor,
    pool: Sequence[str] | None = None,
    config: AgentConfig | None = None,
) -> AgentTrace:
    """`run_agent` to completion, collected into an AgentTrace."""
    texts = [turn.text for turn in _user_turns(query)]
    events = list(run_agent(toolgen, query, executor, pool, config))
    answers: list[str | None] = [None] * len(texts)
    for event in events:
        if isinstance(event, FinalAnswerEvent):
            answers[event.turn] = event.text
    return AgentTrace(turns=texts, events=events, answers=answers)


class Conversation:
    """A chat with the agent: each `send` answers one user message in the context of the earlier ones.

    The token context and the executor's state carry over between messages, laid out exactly as the user turns
    of a multi-turn `run_agent` (BFCL multi-turn training format); `trajectory` is the whole conversation.
    `pool` and `config` may be changed between messages. A message that hits a limit (no Finish) ends the
    conversation until `reset`. Between messages only token ids are kept: the KV cache is freed after each
    message and rebuilt by the next one. One message at a time: a `send` or `reset` while another message is
    being answered raises ValueError.
    """

    def __init__(
        self,
        toolgen: ToolGenModel,
        executor: Executor,
        pool: Sequence[str] | None = None,
        config: AgentConfig | None = None,
    ):
        self.toolgen, self.executor = toolgen, executor
        self.config = config or AgentConfig()
        self.pool = pool
        self._busy = threading.Lock()
        self._start()

    def _start(self) -> None:
        self._run = _Run(self.toolgen, self.executor, self.config)
        self._trajectory = AgentTrace(turns=[], events=[], answers=[])

    @property
    def pool(self) -> tuple[str, ...] | None:
        """The tool ids the agent may call from the next message on (None: the model's whole catalog)."""
        return self._pool

    @pool.setter
    def pool(self, pool: Sequence[str] | None) -> None:
        self._trie = tool_trie(self.toolgen, pool)  # unknown tools raise here
        self._pool = None if pool is None else tuple(dict.fromkeys(pool))

    @property
    def context(self) -> list[int]:
        """The token ids the model has seen so far."""
        return list(self._run.context)

    @property
    def trajectory(self) -> AgentTrace:
        """The conversation so far: one user turn per message, as `run_to_end` returns for the same messages."""
        t = self._trajectory
        return AgentTrace(turns=list(t.turns), events=list(t.events), answers=list(t.answers))

    @property
    def answering(self) -> bool:
        """A message is being answered right now (a `send` has started and not ended)."""
        return self._busy.locked()

    @property
    def can_continue(self) -> bool:
        """Every message so far ended with Finish (always true before the first one)."""
        return all(answer is not None for answer in self._trajectory.answers)

    def send(self, message: str | UserTurn) -> Iterator[AgentEvent]:
        """Answer `message`, yielding events as they happen (errors are raised on the first `next`).

        A `UserTurn` with a pool replaces `pool` from this message on. Raises ValueError for an empty message,
        after a message that ended without Finish, or while another message is being answered.
        """
        turn = message if isinstance(message, UserTurn) else UserTurn(message)
        if not turn.text.strip():
            raise ValueError("the message is empty")
        if not self._busy.acquire(blocking=False):
            raise ValueError("the agent is still answering the previous message")
        try:
            if not self.can_continue:
                raise ValueError(
                    "the previous message ended without a final answer, so the conversation cannot "
                    "go on: start a new one"
                )
            if turn.pool is not None:
                self.pool = turn.pool
            trajectory, index = self._trajectory, len(self._trajectory.turns)
            trajectory.turns.append(turn.text)
            trajectory.answers.append(None)
            self._run.config = self.config
            for event in self._run.user_turn(index, turn.text, self._trie):
                trajectory.events.append(event)
                if isinstance(event, FinalAnswerEvent):
                    trajectory.answers[index] = event.text
                yield event
        finally:
            self._run.cache.release()
            self._busy.release()

    def reset(self) -> None:
        """Start over: an empty context and trajectory, and `executor.reset()`."""
        if not self._busy.acquire(blocking=False):
            raise ValueError("the agent is still answering: wait for it before starting a new conversation")
        try:
            self.executor.reset()
            self._start()
        finally:
            self._busy.release()
