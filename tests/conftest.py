"""Shared fixtures only (helper functions are in helpers.py): the shared data folder, the packaged SmolLM2
tokenizer, a toy catalog, and the scripted agent model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from core.settings import SHARED_DATA_DIR

# Before anything imports transformers (huggingface_hub reads it once): so the fixtures import core.model and
# transformers themselves, and the test modules, imported after this file, see it too.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one torch thread, and the test machine's two cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`, or skip when this checkout has no shared data beside it."""
    if not SHARED_DATA_DIR.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA_DIR}")
    return SHARED_DATA_DIR


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir() -> Path:
    """Directory of the cached SmolLM2 weights and tokenizer (built from the packaged GGUF once)."""
    from core.model import smollm2_dir

    return smollm2_dir()


@pytest.fixture
def smollm2_tokenizer(smollm2_tokenizer_dir):
    """A fresh SmolLM2 tokenizer (tests may add tokens to it)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)


@pytest.fixture
def toy_catalog():
    """Twenty hand-made tools over four tool names."""
    from core.tools import Tool, ToolCatalog

    specs = {
        "Weather": ["current weather", "forecast", "air quality", "sunrise times", "storm alerts"],
        "Finance": ["stock price", "exchange rate", "crypto price", "market news", "dividend history"],
        "Music": ["search song", "artist info", "lyrics", "top charts", "concert dates"],
        "Travel": ["flight search", "hotel search", "car rental", "visa rules", "train times"],
    }
    tools = [
        Tool(
            id=f"{name}&&{api}",
            category=name.lower(),
            tool_name=name,
            api_name=api,
            description=f"Returns the {api} from the {name} service.",
            parameters={"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
            source="test",
        )
        for name, apis in specs.items()
        for api in apis
    ]
    return ToolCatalog(tools)


@pytest.fixture
def setup(smollm2_tokenizer, toy_catalog):
    """(tokenizer, build(turns) -> ToolGenModel over the toy catalog driven by a TurnScript)."""
    from core.indexing import FINISH, build_indexing
    from core.model import ToolGenModel
    from tests.scripted_agent import ScriptedLM, TurnScript

    indexing = build_indexing("atomic", toy_catalog)
    smollm2_tokenizer.add_tokens(indexing.new_tokens() + [FINISH])

    def build(turns):
        model = ScriptedLM(len(smollm2_tokenizer), TurnScript(smollm2_tokenizer, turns))
        return ToolGenModel(model, smollm2_tokenizer, toy_catalog, indexing)

    return smollm2_tokenizer, build
