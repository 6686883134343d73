"""The token format, in one place: the prompts of the three training stages and the turns of the agent loop,
at the token-id level. Training (core/examples.py) and the agent (core/agent.py) both build their sequences here.

Prompts use the base tokenizer's chat template. A tool code is appended as its own token ids (from
`ToolGenModel.code_ids`), never re-tokenized inside a longer string, so training and decoding see the same ids.

Documentation on demand (`documented=True`, the `--agent-docs` build): a tool call's assistant turn ends right after
the Action's code, the chosen tool's compact documentation follows as a user turn `Documentation: …`
(`documentation_text`, at most DOC_MAX_TOKENS tokens), and a second assistant turn writes `Action Input: {json}`.
Finish turns keep the pure layout. The paper's pure mode (no documentation) is the default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .bfcl import function_name
from .indexing import FINISH
from .tools import Tool

MEMORIZE_SYSTEM = "Memorize the tool."
RETRIEVE_SYSTEM = "Pick the tool."
AGENT_SYSTEM = (
    "You are an agent that solves the user's task with tools. Each turn write 'Thought: ' with your reasoning, "
    "'Action: ' with one tool, and 'Action Input: ' with its JSON arguments. When done, use the Finish action "
    'with {"final_answer": "..."}.'
)
THOUGHT, ACTION, ACTION_INPUT, OBSERVATION = "Thought: ", "\nAction: ", "\nAction Input: ", "Observation: "
DOCUMENTATION = "Documentation: "
DOCUMENTED_ACTION_INPUT = ACTION_INPUT.lstrip("\n")  # opens the assistant turn after the documentation
DOC_MAX_TOKENS = 160  # documentation text cut to this many tokens
DOC_DESCRIPTION_CHARS, DOC_PARAMETER_CHARS = 200, 100  # description / per-parameter description, in characters


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of `text` with no special tokens added."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def truncate_tokens(tokenizer, text: str, max_tokens: int | None) -> str:
    """`text` cut to its first `max_tokens` tokens (unchanged when shorter or when max_tokens is None)."""
    if max_tokens is None:
        return text
    ids = encode(tokenizer, text)
    return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens])


def chat_text(tokenizer, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """The chat-template rendering of `messages` (a plain `Role: content` fallback without a template)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages)
    return text + ("Assistant: " if add_generation_prompt else "")


def chat_ids(tokenizer, system: str, user: str) -> list[int]:
    """Ids of a system + user exchange ending where the assistant's reply begins."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return encode(tokenizer, chat_text(tokenizer, messages))


def memorization_prompt(tokenizer, document: str) -> list[int]:
    """Stage 1 input: the tool's documentation; the target is its code."""
    return chat_ids(tokenizer, MEMORIZE_SYSTEM, document)


def retrieval_prompt(tokenizer, query: str) -> list[int]:
    """Stage 2 input: the user's query; the target is a gold tool's code."""
    return chat_ids(tokenizer, RETRIEVE_SYSTEM, query)


def end_of_turn_ids(tokenizer) -> list[int]:
    """The ids that close an assistant turn in this tokenizer's chat format (e.g. `<|im_end|>` and a newline)."""
    rendered = chat_text(tokenizer, [{"role": "assistant", "content": "\x00"}], add_generation_prompt=False)
    return encode(tokenizer, rendered[rendered.rindex("\x00") + 1 :])


def agent_prompt(tokenizer, query: str) -> list[int]:
    """Ids of the agent's system prompt and the user's task, ending where the first assistant turn begins."""
    return chat_ids(tokenizer, AGENT_SYSTEM, query)


def user_turn_ids(tokenizer, text: str) -> list[int]:
    """Ids of a user message after a finished assistant turn, ending where the next assistant turn begins."""
    messages = [{"role": "assistant", "content": "X"}, {"role": "user", "content": text}]
    full = chat_text(tokenizer, messages, add_generation_prompt=True)
    closing = chat_text(tokenizer, messages[:1], add_generation_prompt=False)
    return encode(tokenizer, full[len(closing) :])


def observation_ids(tokenizer, observation: str) -> list[int]:
    """Ids of an observation: the user turn `Observation: …` after the assistant turn that called the tool."""
    return user_turn_ids(tokenizer, OBSERVATION + observation)


def format_arguments(arguments: dict) -> str:
    """Action Input text: compact, key-ordered JSON."""
    return json.dumps(arguments, ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True)
class Step:
    """One assistant turn: a thought, then a tool call (`tool_id`, `arguments`) and what it returned; or,
    with `tool_id == FINISH`, the final answer in `arguments["final_answer"]` and no observation."""

    thought: str
    tool_id: str
    arguments: dict
    observation: str = ""


def _clip(text: str, chars: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= chars else text[: chars - 1].rstrip() + "…"


def _type_text(spec: dict) -> str:
    """`integer`, `array of string`, `string or null`, `any`: a parameter's JSON-schema type in words."""
    kind = spec.get("type", "any")
    text = " or ".join(kind) if isinstance(kind, list) else str(kind)
    items = spec.get("items")
    if text == "array" and isinstance(items, dict) and "type" in items:
        text += f" of {_type_text(items)}"
    return text


def documentation_text(tool: Tool) -> str:
    """A tool's documentation, compact: `name: description`, then one line per parameter with its type, whether
    it is required, its allowed values and default, and its description (descriptions clipped)."""
    schema = tool.parameters if isinstance(tool.parameters, dict) else {}
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    lines = [f"{function_name(tool)}: {_clip(tool.description, DOC_DESCRIPTION_CHARS)}".rstrip(": ")]
    for name, spec in properties.items():
        spec = spec if isinstance(spec, dict) else {}
        facts = [_type_text(spec), "required" if name in required else "optional"]
        if isinstance(spec.get("enum"), list):
            facts.append("one of " + ", ".join(json.dumps(v, ensure_ascii=False) for v in spec["enum"]))
        if "default" in spec and name not in required:
            facts.append("default " + json.dumps(spec["default"], ensure_ascii=False, default=str))
        description = _clip(spec.get("description", ""), DOC_PARAMETER_CHARS)
        lines.append(f"- {name} ({'; '.join(facts)})" + (f": {description}" if description else ""))
    return "\n".join(lines)


def documentation_ids(tokenizer, tool: Tool, max_tokens: int = DOC_MAX_TOKENS) -> list[int]:
    """Ids of the documentation turn after an Action (documented mode): the user turn `Documentation: …` with
    `documentation_text(tool)` cut to `max_tokens` tokens, ending where the next assistant turn begins."""
    return user_turn_ids(tokenizer, DOCUMENTATION + truncate_tokens(tokenizer, documentation_text(tool), max_tokens))


def assistant_turn_parts(toolgen, step: Step, documented: bool = False) -> list[tuple[list[int], bool]]:
    """One assistant step as `(ids, written by the model)` parts, in order.

    Pure: one part, `Thought: …\\nAction: <code>\\nAction Input: {json}` and the end of turn. Documented (a
    tool call, not Finish): `Thought: …\\nAction: <code>` and the end of turn; the tool's documentation turn
    (`documentation_ids`, not written by the model); `Action Input: {json}` and the end of turn."""
    tokenizer = toolgen.tokenizer
    finish = step.tool_id == FINISH
    action = encode(tokenizer, THOUGHT + step.thought + ACTION) + list(
        (toolgen.finish_token_id,) if finish else toolgen.code_ids(step.tool_id)
    )
    arguments = format_arguments(step.arguments)
    if finish or not documented:
        return [(action + encode(tokenizer, ACTION_INPUT + arguments) + end_of_turn_ids(tokenizer), True)]
    return [
        (action + end_of_turn_ids(tokenizer), True),
        (documentation_ids(tokenizer, toolgen.catalog[step.tool_id]), False),
        (encode(tokenizer, DOCUMENTED_ACTION_INPUT + arguments) + end_of_turn_ids(tokenizer), True),
    ]


def assistant_turn_ids(toolgen, step: Step, documented: bool = False) -> list[int]:
    """Ids of one assistant step (`assistant_turn_parts` joined): pure, `Thought: …\\nAction: <code>\\nAction
    Input: {json}` and the end of turn; documented, with the tool's documentation turn before the Action Input."""
    return [token for ids, _ in assistant_turn_parts(toolgen, step, documented) for token in ids]
