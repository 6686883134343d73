"""Helpers shared by the test modules: tiny models and hand-made records (conftest.py holds only fixtures;
the scripted stand-in LM for agent tests is in scripted_agent.py). No test module imports another."""

from __future__ import annotations

import torch

from core.agent import AgentTrace, ArgumentsEvent, FinalAnswerEvent
from core.model import ToolGenModel
from core.tiny import tiny_llama
from core.tools import ToolCatalog


def peaked_llama(vocab_size: int, seed: int = 0):
    """A tiny random Llama with large embeddings, so its next-token distributions are far from uniform."""
    model = tiny_llama(vocab_size, hidden=32, layers=1, seed=seed)
    torch.nn.init.normal_(model.get_input_embeddings().weight, std=0.3)
    return model


def tiny_toolgen(tokenizer, catalog: ToolCatalog, scheme: str = "atomic") -> ToolGenModel:
    """A ToolGen model over `catalog` on a tiny random Llama (adds the tool tokens to `tokenizer`)."""
    return ToolGenModel.from_base(catalog, scheme=scheme, model=tiny_llama(len(tokenizer)), tokenizer=tokenizer)


def toolbench_api(
    tool_name: str, api_name: str, required=(), optional=(), defaults=None, types=None, description: str = "Test API."
) -> dict:
    """A ToolBench `api_list` entry; parameters are STRINGs without a default unless `types`/`defaults` say."""
    defaults, types = defaults or {}, types or {}

    def param(name: str) -> dict:
        return {"name": name, "type": types.get(name, "STRING"), "description": "", "default": defaults.get(name, "")}

    return {
        "category_name": "Test",
        "tool_name": tool_name,
        "api_name": api_name,
        "api_description": description,
        "required_parameters": [param(p) for p in required],
        "optional_parameters": [param(p) for p in optional],
        "method": "GET",
        "template_response": {"city": "str", "temperature": "float"},
    }


def made_trajectory(calls_by_turn, finished: bool = True) -> AgentTrace:
    """An agent trace holding the given (tool id, arguments) calls per user turn, each turn ended by Finish."""
    events, step = [], 0
    for turn, calls in enumerate(calls_by_turn):
        for tool_id, arguments in calls:
            events.append(
                ArgumentsEvent(turn=turn, step=step, tool_id=tool_id, arguments=arguments, text="", problems=[])
            )
            step += 1
        if finished:
            events.append(FinalAnswerEvent(turn=turn, step=step, text="done"))
            step += 1
    answers = ["done" if finished else None] * len(calls_by_turn)
    return AgentTrace(turns=[f"turn {i}" for i in range(len(calls_by_turn))], events=events, answers=answers)
