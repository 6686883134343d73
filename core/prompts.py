"""The token format, in one place: the prompts of the three training stages and the turns of the agent loop,
at the token-id level. Training (core/examples.py) and the agent (core/agent.py) both build their sequences here.

Prompts use the base tokenizer's chat template. A tool code is appended as its own token ids (from
`ToolGenModel.code_ids`), never re-tokenized inside a longer string, so training and decoding see the same ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .indexing import FINISH

MEMORIZE_SYSTEM = "Memorize the tool."
RETRIEVE_SYSTEM = "Pick the tool."
AGENT_SYSTEM = (
    "You are an agent that solves the user's task with tools. Each turn write 'Thought: ' with your reasoning, "
    "'Action: ' with one tool, and 'Action Input: ' with its JSON arguments. When done, use the Finish action "
    'with {"final_answer": "..."}.'
)
THOUGHT, ACTION, ACTION_INPUT, OBSERVATION = "Thought: ", "\nAction: ", "\nAction Input: ", "Observation: "


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


def assistant_turn_ids(toolgen, step: Step) -> list[int]:
    """Ids of one assistant turn: `Thought: …\\nAction: <code>\\nAction Input: {json}` and the end of turn."""
    tokenizer = toolgen.tokenizer
    code = (toolgen.finish_token_id,) if step.tool_id == FINISH else toolgen.code_ids(step.tool_id)
    return (
        encode(tokenizer, THOUGHT + step.thought + ACTION)
        + list(code)
        + encode(tokenizer, ACTION_INPUT + format_arguments(step.arguments))
        + end_of_turn_ids(tokenizer)
    )
