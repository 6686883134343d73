"""Speed benchmarks: ToolGen retrieval against MiniLM on the same queries in the same run, and training tokens/s.

    python -m eval speed --corpus bfcl|toolbench [--model DIR] [--queries N] [--precision auto|float32|bfloat16]
                         [--threads N] [--json]
    python -m eval speed --train --corpus bfcl [--examples 300] [--precision auto|float32|bfloat16] [--json]

Retrieval: ToolGen's model is loaded (`--model`, else the build's retrieval checkpoint, else the untrained
SmolLM2 with the corpus's tool tokens, which costs the same per query) and timed: load, first query, then each
of N held-out queries at batch 1 (ToolGen and its plain path in turn, then MiniLM over the same queries),
then each batched. The quality block compares ToolGen's rankings with the plain path (float32 weights, no cached prefix,
one query at a time; batched: one padded batch of 32) on the same model, which is timed too
(`toolgen_plain_path`); `breakdown_ms` splits a batch-1 query into its stages. Next to wall clock, each figure
has a CPU-time twin (this process's CPU seconds, all threads), which other jobs on the machine disturb much
less: with `--threads 1` it is the latency an idle core would give.
Run each measurement in a fresh process: the machine's load average is recorded with every figure (the
development machine has 2 cores shared with other jobs), and systems are compared as ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from core.decoding import constrained_beam_search_batch
from core.runtime import apply_precision, describe_machine, serving_precision

BATCH = 32  # queries per retrieve_batch call when measuring throughput


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _percentiles(wall: list[float], cpu: list[float]) -> dict:
    p50, p95 = np.percentile(wall, [50, 95]) * 1000
    return {
        "p50_ms": round(float(p50), 1),
        "p95_ms": round(float(p95), 1),
        "cpu_p50_ms": round(float(np.median(cpu)) * 1000, 1),
    }


def _throughput(retriever, texts: list[str]) -> dict:
    """Queries per second (wall clock) and per CPU-second (this process's CPU time, all threads) in batches."""
    wall, cpu = time.perf_counter(), time.process_time()
    for first in range(0, len(texts), BATCH):
        retriever.retrieve_batch(texts[first : first + BATCH], k=5)
    return {
        "batched_qps": round(len(texts) / (time.perf_counter() - wall), 2),
        "batched_q_per_cpu_s": round(len(texts) / (time.process_time() - cpu), 2),
    }


def eval_queries(corpus: str, n: int) -> tuple:
    """(catalog, n held-out queries spread over the test split): BFCL's, or the four ToolBench groups' (whole
    catalog, the multi-domain setting)."""
    from core.splits import spread
    from eval.retrieval_eval import bfcl_set, toolbench_sets

    if corpus == "bfcl":
        catalog, evalset = bfcl_set("test")
        return catalog, spread(evalset.queries, n)
    from core.settings import TOOLBENCH_DATA_DIR
    from core.toolbench import load_toolbench_corpus

    catalog = load_toolbench_corpus(TOOLBENCH_DATA_DIR / "corpus.json")
    files = sorted((TOOLBENCH_DATA_DIR / "queries").glob("*.json"))
    return catalog, spread([q for s in toolbench_sets(catalog, files, "multi-domain", "test") for q in s.queries], n)


def stage_breakdown(retriever, texts: list[str]) -> dict:
    """Median milliseconds per stage of a batch-1 query with one-token (atomic) codes: prompt (chat template,
    tokenizer), embedding and set-up, lower layers, the top 2 layers, final norm + LM head, and the rest of the
    decode (log-softmax, masking, top-k, Python)."""
    model = retriever.toolgen.model
    layers = model.model.layers
    marks: dict[str, float] = {}

    def mark(name):
        return lambda *_: marks.__setitem__(name, time.perf_counter())

    hooks = [
        layers[0].register_forward_pre_hook(mark("lower")),
        layers[len(layers) - 2].register_forward_pre_hook(mark("top")),
        model.model.norm.register_forward_pre_hook(mark("head")),
        model.lm_head.register_forward_hook(mark("rest")),
    ]
    prompt_ids = retriever.prompt_ids

    def timed_prompt_ids(text):
        ids = prompt_ids(text)
        marks["setup"] = time.perf_counter()
        return ids

    retriever.prompt_ids = timed_prompt_ids
    stages: dict[str, list[float]] = {}
    try:
        for text in texts:
            begin = time.perf_counter()
            retriever.retrieve(text, k=5)
            end = time.perf_counter()
            times = {
                "prompt": marks["setup"] - begin,
                "embedding_and_setup": marks["lower"] - marks["setup"],
                "lower_layers": marks["top"] - marks["lower"],
                "top_layers": marks["head"] - marks["top"],
                "norm_and_lm_head": marks["rest"] - marks["head"],
                "decode_rest": end - marks["rest"],
            }
            for name, value in times.items():
                stages.setdefault(name, []).append(value)
    finally:
        del retriever.prompt_ids
        for hook in hooks:
            hook.remove()
    return {name: round(float(np.median(v)) * 1000, 2) for name, v in stages.items()}


def _agreement(fast: list[list[tuple[str, float]]], plain: list[list[tuple[str, float]]], queries) -> dict:
    from core.metrics import ndcg

    def quality(rankings):
        return {
            f"ndcg@{k}": round(
                100 * float(np.mean([ndcg([t for t, _ in r], q.gold, k) for r, q in zip(rankings, queries)])), 2
            )
            for k in (1, 5)
        }

    return {
        "reference": "float32 weights, no cached prefix, batch 1",
        "top1_agreement": round(float(np.mean([f[0][0] == p[0][0] for f, p in zip(fast, plain)])), 4),
        "same_top5": round(float(np.mean([[t for t, _ in f] == [t for t, _ in p] for f, p in zip(fast, plain)])), 4),
        "max_abs_score_diff": float(max(abs(a - b) for f, p in zip(fast, plain) for (_, a), (_, b) in zip(f, p))),
        "fast": quality(fast),
        "plain": quality(plain),
    }


class PlainPath:
    """The oracle ToolGen is checked against: float32 weights, every prompt token through every layer (no cached
    prefix), one query at a time, or one batch padded to its longest prompt."""

    def __init__(self, model, retriever):
        self.model, self.retriever = model, retriever

    def retrieve(self, text: str, k: int = 5) -> list[tuple[str, float]]:
        return self.retrieve_batch([text], k)[0]

    def retrieve_batch(self, texts: list[str], k: int = 5) -> list[list[tuple[str, float]]]:
        prompts = [self.retriever.prompt_ids(t) for t in texts]
        results = constrained_beam_search_batch(
            self.model, prompts, self.retriever.trie, self.retriever.num_beams, k, record_steps=False
        )
        return [[(c.tool_id, c.log_prob) for c in r.candidates] for r in results]


def retrieval_speed(corpus: str, model_dir: str | None, n: int, precision: str) -> dict:
    """The retrieval benchmark described in the module docstring."""
    from core.model import ToolGenModel
    from core.retrieval import ToolGenRetriever
    from eval.retrieval_eval import default_toolgen_dir
    from eval.retrievers import EmbeddingRetriever

    catalog, queries = eval_queries(corpus, n)
    texts = [q.text for q in queries]
    source = Path(model_dir) if model_dir else default_toolgen_dir(corpus)
    trained = (source / "config.json").exists()

    def load_model():  # the untrained model is the same every time (mean-of-name initialisation)
        return ToolGenModel.load(source) if trained else ToolGenModel.from_base(catalog)

    precision = serving_precision(precision)
    start = time.perf_counter()
    toolgen = load_model()
    apply_precision(toolgen.model, precision)
    loaded = time.perf_counter()
    retriever = ToolGenRetriever(toolgen)
    ready = time.perf_counter()
    retriever.retrieve(texts[0], k=5)
    first_ms = (time.perf_counter() - ready) * 1000
    retriever.retrieve_batch(texts[:BATCH], k=5)  # a full batch too, so the peak below covers batched use
    toolgen_rss = peak_rss_mb()  # before anything else is loaded: a ToolGen retrieval process's peak

    start_minilm = time.perf_counter()
    minilm = EmbeddingRetriever(catalog)
    minilm_loaded = time.perf_counter()
    minilm.retrieve(texts[0], k=5)
    minilm_first_ms = (time.perf_counter() - minilm_loaded) * 1000
    plain = PlainPath(load_model().model if precision != "float32" else toolgen.model, retriever)

    # Batch 1. ToolGen's two paths take turns on each query, first one then the other, so load changes on the
    # machine hit both alike; MiniLM runs its own loop over the same queries: a ToolGen query right after a MiniLM
    # one costs 50-60 ms more CPU time (measured), which a server running one system never pays.
    systems = {"toolgen": retriever, "toolgen_plain_path": plain, "minilm": minilm}
    rankings, wall, cpu = ({name: [] for name in systems} for _ in range(3))
    toolgen_order = ["toolgen", "toolgen_plain_path"]
    turns = [[toolgen_order, toolgen_order[::-1]][i % 2] for i in range(len(texts))] + [["minilm"]] * len(texts)
    for text, names in zip(texts + texts, turns):
        for name in names:
            begin, begin_cpu = time.perf_counter(), time.process_time()
            rankings[name].append(systems[name].retrieve(text, k=5))
            wall[name].append(time.perf_counter() - begin)
            cpu[name].append(time.process_time() - begin_cpu)
    figures = {
        name: {**_percentiles(wall[name], cpu[name]), **_throughput(system, texts)} for name, system in systems.items()
    }
    figures["toolgen"].update(
        {
            "model_load_s": round(loaded - start, 2),
            "retriever_init_s": round(ready - loaded, 2),
            "first_query_ms": round(first_ms, 1),
            "peak_rss_mb": toolgen_rss,
        }
    )
    figures["minilm"].update(
        {"load_s": round(minilm_loaded - start_minilm, 2), "first_query_ms": round(minilm_first_ms, 1)}
    )
    model_name = str(source) if trained else "untrained: SmolLM2-135M-Instruct + the corpus's tool tokens"
    return {
        "corpus": corpus,
        "queries": len(texts),
        "model": model_name,
        "precision": precision,
        **figures,
        "p50_ratio_toolgen_to_minilm": round(figures["toolgen"]["p50_ms"] / figures["minilm"]["p50_ms"], 2),
        "cpu_p50_ratio_toolgen_to_minilm": round(figures["toolgen"]["cpu_p50_ms"] / figures["minilm"]["cpu_p50_ms"], 2),
        "breakdown_ms": stage_breakdown(retriever, texts[:20]),
        "quality": _agreement(rankings["toolgen"], rankings["toolgen_plain_path"], queries),
        "peak_rss_mb": peak_rss_mb(),
    }


def training_speed(corpus_name: str, examples: int, precision: str, eval_queries: int = 100) -> dict:
    """Tokens/s of one retrieval-stage epoch on an even slice of `examples` of the default build's retrieval
    examples, from the untrained model, with bf16 autocast or float32 (`precision`, "auto" as the build picks);
    and the quality probes after it (probe loss, NDCG@1/@5 on `eval_queries` held-out queries). The tool rows are
    free rows: the build's one-off documentation pass (core/doc_rows.py) is not part of the loop timed here."""
    from core.build import PRESETS, load_corpus, retrieval_quality, stage_examples
    from core.examples import RETRIEVAL
    from core.model import ToolGenModel
    from core.splits import spread
    from core.train import Trainer

    preset = PRESETS["default-toolbench" if corpus_name == "toolbench" else "default"]
    corpus = load_corpus(corpus_name)
    toolgen = ToolGenModel.from_base(corpus.catalog)
    chosen = spread(stage_examples(RETRIEVAL, toolgen, corpus, preset), examples)
    trainer = Trainer(
        toolgen, train_layers=preset.train_layers, bf16=None if precision == "auto" else precision == "bfloat16"
    )
    report = trainer.train(chosen, replace(preset.stages[RETRIEVAL], epochs=1, doc_rows=False), RETRIEVAL)
    quality = retrieval_quality(trainer, toolgen, spread(corpus.test, eval_queries))
    return {
        "corpus": corpus_name,
        "examples": len(chosen),
        "precision": report["precision"],
        "tokens": report["tokens"],
        "seconds": report["seconds"],
        "tokens_per_s": report["tokens_per_s"],
        "probe_loss_before": report["probe_loss_before"],
        "probe_loss_after": report["probe_loss_after"],
        "retrieval_after": quality,
        "peak_rss_mb": peak_rss_mb(),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", choices=("bfcl", "toolbench"), default="bfcl")
    parser.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="number format (auto: bfloat16 where the CPU has native bf16, else float32)",
    )
    parser.add_argument(
        "--model",
        help="ToolGen checkpoint (default: the build's retrieval checkpoint of the corpus, "
        "else the untrained SmolLM2 with the corpus's tool tokens)",
    )
    parser.add_argument("--queries", type=int, default=60, help="held-out queries, spread over the test split")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--train", action="store_true", help="measure training tokens/s instead of retrieval")
    parser.add_argument("--examples", type=int, default=300, help="--train: retrieval examples in the slice")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print its record (machine, load average, figures)."""
    started = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = describe_machine()
    if args.train:
        figures = training_speed(args.corpus, args.examples, args.precision)
    else:
        figures = retrieval_speed(args.corpus, args.model, args.queries, args.precision)
    record = {
        "machine": machine,
        **figures,
        "wall_s": round(time.time() - started, 1),
        "load_average_after": describe_machine()["load_average"],
    }
    print(json.dumps(record, indent=1) if args.json else record)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m eval.bench_speed")
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
