"""`python -m core check-constraint`: show that constrained decoding never emits a token outside a vocabulary.

Adds every token of a vocabulary file (one per line, verbatim) to the packaged SmolLM2 tokenizer, builds
a tiny random-init Llama over that vocabulary, runs seeded constrained decodes on random prompts (half
beam search, half sampling), writes each emitted tool token on its own line, re-reads that file against
the vocabulary, and reports timings. The same prompts decoded WITHOUT the constraint (greedy or sampled,
same model) show how many invalid outputs the check catches when the constraint is absent.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time

import numpy as np
import torch

from .constraint import CodeTrie
from .decoding import constrained_beam_search, constrained_sample
from .model import smollm2_tokenizer
from .tiny import tiny_llama
from .vocab import read_lines_verbatim, read_token_lines


def _tool_token_ids(tokenizer, tokens: list[str], path: str) -> list[int]:
    tokenizer.add_tokens(tokens)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    for number, (token, token_id) in enumerate(zip(tokens, ids), start=1):
        if token_id is None or tokenizer.convert_ids_to_tokens(token_id) != token:
            raise ValueError(f"{path}: line {number}: token {token!r} did not become one vocabulary entry")
    return ids


def _unconstrained_token(model, prompt: list[int], sample: bool, generator: torch.Generator) -> int:
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prompt]), logits_to_keep=1).logits[0, -1].float()
    if sample:
        return int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator))
    return int(logits.argmax())


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def run_check(vocab_file: str, decodes: int, out_file: str, seed: int = 0, num_beams: int = 5, tokenizer=None) -> dict:
    """Run the check; write the emitted tokens to `out_file`; return the report (timings, invalid counts).

    `tokenizer`: the base tokenizer to add the tokens to (default: a fresh SmolLM2 tokenizer).
    """
    if decodes < 1:
        raise ValueError(f"--decodes must be at least 1, got {decodes}")
    tokens = read_token_lines(vocab_file)
    start = time.perf_counter()
    tokenizer = tokenizer or smollm2_tokenizer()
    token_ids = _tool_token_ids(tokenizer, tokens, vocab_file)
    vocab_size = len(tokenizer)  # slow with many added tokens: ask once
    tokenizer_s = time.perf_counter() - start

    start = time.perf_counter()
    model = tiny_llama(vocab_size, hidden=32, layers=1, seed=seed)
    model_s = time.perf_counter() - start

    start = time.perf_counter()
    trie = CodeTrie({token: (token_id,) for token, token_id in zip(tokens, token_ids)})
    build_s = time.perf_counter() - start

    rng = random.Random(seed)
    prompts = [[rng.randrange(vocab_size) for _ in range(rng.randint(4, 32))] for _ in range(decodes)]
    beam_count = decodes - decodes // 2
    generator = torch.Generator().manual_seed(seed)
    emitted, decode_ms, mask_ms = [], [], []
    for index, prompt in enumerate(prompts):
        start = time.perf_counter()
        if index < beam_count:
            result = constrained_beam_search(model, prompt, trie, num_beams=num_beams, top_k=1, record_steps=False)
        else:
            result = constrained_sample(model, prompt, trie, temperature=1.0, generator=generator)
        decode_ms.append((time.perf_counter() - start) * 1e3)
        mask_ms.extend(result.mask_ms)
        emitted.append(result.best.tool_id)
    with open(out_file, "w", encoding="utf-8", newline="") as f:
        f.writelines(token + "\n" for token in emitted)

    vocabulary = set(tokens)
    written = read_lines_verbatim(out_file)
    invalid_constrained = sum(line not in vocabulary for line in written)

    tool_ids = set(token_ids)
    generator = torch.Generator().manual_seed(seed)
    unconstrained = [
        _unconstrained_token(model, p, sample=i >= beam_count, generator=generator) for i, p in enumerate(prompts)
    ]
    return {
        "vocab_file": vocab_file,
        "tokens": len(tokens),
        "vocab_size": vocab_size,
        "decodes": decodes,
        "beam_decodes": beam_count,
        "sampled_decodes": decodes - beam_count,
        "num_beams": num_beams,
        "seed": seed,
        "torch_threads": torch.get_num_threads(),
        "tokenizer_s": round(tokenizer_s, 3),
        "model_build_s": round(model_s, 3),
        "constraint_build_s": round(build_s, 4),
        "mask_ms_mean": round(float(np.mean(mask_ms)), 4),
        "mask_ms_p95": round(_percentile(mask_ms, 95), 4),
        "decode_ms_mean": round(float(np.mean(decode_ms)), 3),
        "decode_ms_p95": round(_percentile(decode_ms, 95), 3),
        "decode_s_total": round(sum(decode_ms) / 1e3, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "out_file": out_file,
        "lines_written": len(written),
        "invalid_constrained": invalid_constrained,
        "invalid_unconstrained": sum(t not in tool_ids for t in unconstrained),
        "unconstrained_decodes": len(unconstrained),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The check-constraint options."""
    parser.add_argument("--vocab", required=True, help="token list, one token per line (e.g. virtual_tokens.txt)")
    parser.add_argument("--decodes", type=int, required=True, help="number of constrained decodes")
    parser.add_argument("--out", required=True, help="file receiving one emitted token per line")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-beams", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: the tiny model gains nothing from more)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    """Run the check from parsed arguments; print the report; exit status 0 only if every decode wrote a valid token."""
    try:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
        report = run_check(args.vocab, args.decodes, args.out, seed=args.seed, num_beams=args.num_beams)
    except (OSError, ValueError) as error:
        print(f"check-constraint: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    passed = report["invalid_constrained"] == 0 and report["lines_written"] == report["decodes"]
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point: `python -m core.check_constraint --vocab FILE --decodes N --out FILE [--json]`."""
    parser = argparse.ArgumentParser(prog="python -m core check-constraint", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
