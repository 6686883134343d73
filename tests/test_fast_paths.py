"""Number-format choice by CPU flags (core/runtime.py)."""
import pytest
import torch

from core import runtime
from core.tiny import tiny_llama


@pytest.fixture
def cpu_with(monkeypatch):
    """Pretend the CPU has exactly the given flags."""
    def set_flags(*flags):
        monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset(flags))
    return set_flags


def test_cpu_flags_are_read_from_proc_cpuinfo():
    flags = runtime.cpu_flags()
    assert isinstance(flags, frozenset)
    if runtime.Path("/proc/cpuinfo").exists():
        assert "fpu" in flags  # every x86 CPU lists it; the parse found the flags line


def test_bf16_only_where_native(cpu_with, monkeypatch):
    monkeypatch.delenv(runtime.PRECISION_ENV, raising=False)
    cpu_with("avx2", "fma", "avx512f")
    assert not runtime.train_bf16("cpu") and runtime.serving_precision() == "float32"
    for flag in ("avx512_bf16", "amx_bf16"):
        cpu_with("avx2", flag)
        assert runtime.train_bf16("cpu") and runtime.serving_precision() == "bfloat16"


def test_precision_is_forced_by_argument_or_environment(cpu_with, monkeypatch):
    cpu_with("avx2")
    monkeypatch.setenv(runtime.PRECISION_ENV, "bfloat16")
    assert runtime.serving_precision() == "bfloat16"
    assert runtime.serving_precision("float32") == "float32"
    monkeypatch.setenv(runtime.PRECISION_ENV, "int4")
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        runtime.serving_precision()
    with pytest.raises(ValueError, match="resolved"):
        runtime.apply_precision(tiny_llama(64), "auto")


def test_trainer_default_follows_the_cpu(cpu_with, smollm2_tokenizer, toy_catalog):
    from core.model import ToolGenModel
    from core.train import Trainer

    toolgen = ToolGenModel.from_base(toy_catalog, model=tiny_llama(len(smollm2_tokenizer)), tokenizer=smollm2_tokenizer)
    cpu_with("avx2")
    assert Trainer(toolgen, train_layers=1).bf16 is False
    cpu_with("avx2", "amx_bf16")
    assert Trainer(toolgen, train_layers=1).bf16 is True
    assert Trainer(toolgen, train_layers=1, bf16=False).bf16 is False


def test_bfloat16_serving_keeps_the_head_in_float32():
    model = runtime.apply_precision(tiny_llama(300, layers=2), "bfloat16")
    assert {p.dtype for p in model.model.layers.parameters()} == {torch.bfloat16}
    assert model.lm_head.weight.dtype == torch.float32
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert logits.dtype == torch.float32
