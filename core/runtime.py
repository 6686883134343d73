"""Number formats for the machine we run on: read the CPU's flags, then train and serve in the cheapest format
that keeps the model's answers.

- Training (`train_bf16`): bfloat16 autocast only where bf16 is native (a GPU that supports it; a CPU with
  `avx512_bf16` or `amx_bf16`). Elsewhere autocast emulates bf16 and is slower than float32 (README, Training).
- Serving (`serving_precision`, `apply_precision`): the decoder layers in bfloat16 where bf16 is native, else
  float32. The embedding, the final norm and the tied LM head stay float32 either way: bf16 logits (8-bit
  mantissa) would tie thousands of tools. int8 is not offered: dynamic quantization (torch.ao, fbgemm) of
  SmolLM2's linear layers changes the top-1 tool too often, because the inputs of some MLP down-projections
  hold outliers thousands of times their 99th percentile (README, Speed, has the measurements).

Every choice can be forced: `--precision` on the commands, or the environment variable TOOLGEN_PRECISION.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path

import torch

PRECISIONS = ("auto", "float32", "bfloat16")
PRECISION_ENV = "TOOLGEN_PRECISION"
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of this machine's CPU (from /proc/cpuinfo; empty where that file is missing)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return frozenset()
    for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo), or the platform's processor string."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether `device` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU with avx512_bf16/amx_bf16."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(cpu_flags() & NATIVE_BF16_FLAGS)


def train_bf16(device: torch.device | str = "cpu") -> bool:
    """The trainer's default: bfloat16 autocast only where bf16 is native (see the module docstring)."""
    return native_bf16(device)


def serving_precision(requested: str | None = None) -> str:
    """The number format to serve in: `requested` (else TOOLGEN_PRECISION, else "auto"), "auto" resolved by the
    CPU: bfloat16 where native, else float32."""
    precision = requested or os.environ.get(PRECISION_ENV) or "auto"
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    return "bfloat16" if native_bf16() else "float32"


def apply_precision(model, precision: str):
    """Convert a loaded Llama-style causal LM in place for serving in `precision` ("float32" or "bfloat16", as
    `serving_precision` resolves it); returns the model. Only the decoder layers change: the embedding output is
    cast to bf16 on its way in, and the final norm (float32 weight) brings the last hidden state back to
    float32, so the tool logits are float32 products of float32 rows."""
    if precision not in PRECISIONS or precision == "auto":
        raise ValueError(f"precision must be float32 or bfloat16 (resolved), got {precision!r}")
    if precision == "bfloat16" and next(model.model.layers.parameters()).dtype != torch.bfloat16:
        model.model.layers.to(torch.bfloat16)
        model.model.embed_tokens.register_forward_hook(lambda module, args, out: out.to(torch.bfloat16))
    return model


def describe_machine() -> dict:
    """The CPU model, the flags that decide the number formats, core and thread counts: for benchmark records."""
    relevant = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx", "fma", "f16c")) or f in ("sse4_2",))
    return {
        "cpu": cpu_model(),
        "flags": relevant,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "native_bf16": native_bf16(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
