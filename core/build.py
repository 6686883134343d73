"""`python -m core build`: build a ToolGen model through the three training stages.

    python -m core build                                   # SmolLM2-135M + BFCL -> models/toolgen-bfcl
    python -m core build --corpus toolbench --data-dir ../shared/data/toolbench   # -> models/toolgen-toolbench
    accelerate launch -m core build ...                    # the same on one or several GPUs

Queries are split with `core.splits` (test queries never feed a stage; checked with `check_no_leak`).
After every stage the model is saved to --out with the stages done in `toolgen.json`; running the same
command again resumes after the last finished stage (and inside a stage from its periodic state folder).
At the end it prints, as JSON, retrieval quality on the held-out test queries (NDCG@1/@5 over the whole
catalog, ranking tools by their code token's logit at the end of the retrieval prompt) for the
untrained tokens and after each stage, the training reports, wall time and peak memory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from .bfcl_trajectories import bfcl_agent_examples
from .examples import (
    AGENT,
    MEMORIZATION,
    RETRIEVAL,
    STAGES,
    memorization_examples,
    retrieval_examples,
    trajectory_example,
)
from .indexing import FINISH
from .metrics import ndcg
from .model import SMOLLM2, ToolGenModel, load_base
from .prompts import retrieval_prompt
from .remove_tools import listed, read_tool_ids
from .settings import TOOLBENCH_DATA_DIR, TOOLGEN_VOCAB_FILE, model_dir
from .soft_targets import SoftTargets, read_soft_targets
from .splits import check_no_leak, entry_texts, normalise, split_entries, split_queries, spread
from .tools import ToolCatalog
from .train import StageConfig, Trainer
from .vocab import NAMES_ONLY, grown_catalog

CORPORA = ("bfcl", "toolbench")
STATE_DIR = "stage-state"  # the running stage's resumable state (core.train)
RETRIEVAL_PAIRS_FILE = "retrieval_pairs.jsonl"


@dataclass(frozen=True)
class Preset:
    """Everything a build needs besides the data: base model, trained layers, per-stage settings."""

    base: str = SMOLLM2
    train_layers: int = 2
    max_doc_tokens: int | None = 64  # memorization documents are cut to this many tokens
    max_query_tokens: int | None = 96
    synthetic_per_tool: int = 2
    synthetic_for: str = "all"
    pairs_per_tool: int = 1
    agent_examples: int = 300
    agent_replay: int = 300  # retrieval examples mixed into stage 3 against forgetting
    agent_docs: bool = False  # stage 3 calls read the tool's documentation before their arguments (core/prompts.py)
    eval_queries: int = 300  # test queries scored after each stage (an even spread)
    max_tools: int | None = None
    stages: dict = field(
        default_factory=lambda: {
            MEMORIZATION: StageConfig(epochs=2, head="codes", lr=5e-4, rows_lr=2e-3),
            RETRIEVAL: StageConfig(epochs=2, head="codes", lr=5e-4, rows_lr=2e-3, doc_rows=True),
            AGENT: StageConfig(epochs=2, head="full", lr=1e-3, rows_lr=5e-4, max_len=512),
        }
    )


PRESETS = {
    "default": Preset(),
    # ToolBench (2,479 tools, fewer training queries): more synthetic queries pay off there (see README).
    "default-toolbench": Preset(
        synthetic_per_tool=4,
        pairs_per_tool=2,
        stages={
            **Preset().stages,
            RETRIEVAL: StageConfig(epochs=3, head="codes", lr=5e-4, rows_lr=2e-3, doc_rows=True),
        },
    ),
    # A random-init 2-layer model on 40 tools: checks the whole pipeline in about a minute.
    "tiny": Preset(
        base="tiny",
        train_layers=-1,
        max_tools=40,
        agent_examples=40,
        agent_replay=40,
        eval_queries=40,
        stages={
            MEMORIZATION: StageConfig(epochs=3, head="codes", lr=3e-3, rows_lr=3e-2),
            RETRIEVAL: StageConfig(epochs=3, head="codes", lr=3e-3, rows_lr=3e-2),
            AGENT: StageConfig(epochs=1, lr=1e-3, rows_lr=1e-2, max_len=256),
        },
    ),
}


@dataclass
class Corpus:
    """A catalog with its training queries, held-out test queries, and the sources of agent trajectories:
    BFCL training entries (executed by `bfcl_agent_examples`) and ready-made `TrainingTrajectory`s."""

    name: str
    catalog: ToolCatalog
    train: list
    test: list
    train_entries: list = field(default_factory=list)
    trajectories: list = field(default_factory=list)

    def agent_entries(self) -> list:
        """The BFCL training entries agent tuning learns from: AST (single-turn calls) and multi-turn ones.

        Irrelevance entries (the offered functions do not fit, so Finish at once) are left out: ToolGen's model
        never sees the offered functions, so it can only learn to refuse from the request's wording, and then
        refuses answerable requests too (the README has the measurements)."""
        return [e for e in self.train_entries if e.kind in ("ast", "multi_turn")]

    def training_texts(self) -> list[str]:
        """Every user text that can feed training: queries, entry turns, trajectory turns."""
        return (
            [q.text for q in self.train]
            + [t for e in self.train_entries for t in entry_texts(e)]
            + [user for t in self.trajectories for user, _ in t.turns]
        )


def load_corpus(name: str, data_dir: Path | str | None = None, max_tools: int | None = None) -> Corpus:
    """Load and split a corpus (see `core.splits`)."""
    if name == "toolbench":
        corpus = _load_toolbench(Path(data_dir or TOOLBENCH_DATA_DIR))
    elif name == "bfcl":
        corpus = _load_bfcl(data_dir)
    else:
        raise ValueError(f"unknown corpus {name!r}; choose from {CORPORA}")
    if max_tools is not None:
        corpus = _limit_tools(corpus, max_tools)
    return corpus


def _load_toolbench(data_dir: Path) -> Corpus:
    """ToolBench: corpus.json, queries/<group>.json, and agent trajectories for training queries only: the
    complete ones of `reference_answers/<group>.json` (when that folder exists), and synthetic ones
    (`core.toolbench.synthetic_trajectories`) for the training queries without one."""
    from .toolbench import (
        load_reference_trajectories,
        load_toolbench_corpus,
        load_toolbench_queries,
        synthetic_trajectories,
    )

    catalog = load_toolbench_corpus(data_dir / "corpus.json")
    files = sorted((data_dir / "queries").glob("*.json"))
    if not files:
        raise FileNotFoundError(f"{data_dir / 'queries'}: no query files")
    split = split_queries(q for path in files for q in load_toolbench_queries(path, catalog))
    answers = data_dir / "reference_answers"
    trajectories = [
        trajectory
        for path in (files if answers.is_dir() else [])
        for trajectory in load_reference_trajectories(
            answers / path.name, catalog, [q for q in split.train if q.source == f"toolbench:{path.stem}"]
        )
    ]
    answered = {normalise(user) for trajectory in trajectories for user, _ in trajectory.turns}
    trajectories += synthetic_trajectories([q for q in split.train if normalise(q.text) not in answered], catalog)
    return Corpus("toolbench", catalog, split.train, split.test, trajectories=trajectories)


def _load_bfcl(data_dir) -> Corpus:
    from .bfcl import entries_to_queries, load_bfcl_catalog, load_bfcl_entries

    split = split_entries(load_bfcl_entries(data_dir=data_dir))
    test_texts = {normalise(t) for e in split.test for t in entry_texts(e)}
    # A few multi-turn follow-ups ("I want 100 shares.") recur across scenarios: such entries stay out.
    train_entries = [e for e in split.train if not any(normalise(t) in test_texts for t in entry_texts(e))]
    return Corpus(
        "bfcl",
        load_bfcl_catalog(data_dir=data_dir),
        entries_to_queries(train_entries),
        entries_to_queries(split.test),
        train_entries,
    )


def _limit_tools(corpus: Corpus, max_tools: int) -> Corpus:
    """Keep `max_tools` tools, those named by test then training queries first; drop queries outside them."""
    named = [t for q in corpus.test + corpus.train for t in q.gold]
    return keep_tools(corpus, list(dict.fromkeys(named + corpus.catalog.ids))[:max_tools])


def without_tools(corpus: Corpus, held_out: list[str]) -> Corpus:
    """The corpus as it would be if the `held_out` tools did not exist (a build that adds them later with
    `core.add_tools`); ValueError naming ids that are not in the catalog."""
    unknown = [t for t in held_out if t not in corpus.catalog]
    if unknown:
        raise ValueError(f"{len(unknown)} held-out tool id(s) not in the {corpus.name} catalog: {listed(unknown)}")
    gone = set(held_out)
    return keep_tools(corpus, [t for t in corpus.catalog.ids if t not in gone])


def keep_tools(corpus: Corpus, keep: list[str]) -> Corpus:
    """The corpus over the `keep` tools only: every query, entry and trajectory naming another tool is dropped."""
    kept = set(keep)
    inside = lambda tools: set(tools) <= kept  # noqa: E731
    return Corpus(
        corpus.name,
        corpus.catalog.subset(keep),
        [q for q in corpus.train if inside(q.gold)],
        [q for q in corpus.test if inside(q.gold)],
        [e for e in corpus.train_entries if inside(e.gold) and inside(e.pool)],
        [
            t
            for t in corpus.trajectories
            if inside(s.tool_id for _, steps in t.turns for s in steps if s.tool_id != FINISH)
        ],
    )


def sample(items: list, n: int, seed: int) -> list:
    """At most n items, a deterministic pseudo-random choice (by `seed`) kept in their original order."""
    ranked = sorted(range(len(items)), key=lambda i: hashlib.sha1(f"{seed}:{i}".encode()).hexdigest())
    return [items[i] for i in sorted(ranked[:n])]


def stage_examples(stage: str, toolgen, corpus: Corpus, preset: Preset) -> list:
    """The training examples of `stage` for this corpus and preset."""
    if stage == MEMORIZATION:
        return memorization_examples(toolgen, preset.max_doc_tokens)
    if stage == AGENT:
        documented = preset.agent_docs
        agent = bfcl_agent_examples(toolgen, corpus.agent_entries(), documented=documented) + [
            trajectory_example(toolgen, t, documented=documented) for t in corpus.trajectories
        ]
        if not agent:  # retrieval replay alone would not be agent tuning
            return []
    documented = [t.id for t in toolgen.catalog if t.source != NAMES_ONLY]  # names-only tools get no queries
    retrieval = retrieval_examples(
        toolgen if len(documented) == len(toolgen.catalog) else toolgen.restricted(documented),
        corpus.train,
        preset.synthetic_per_tool,
        preset.synthetic_for,
        preset.pairs_per_tool,
        max_query_tokens=preset.max_query_tokens,
    )
    if stage == RETRIEVAL:
        return retrieval
    return sample(agent, preset.agent_examples, 0) + sample(retrieval, preset.agent_replay, 1)


def retrieval_quality(trainer: Trainer, toolgen, queries: list) -> dict:
    """NDCG@1/@5 of ranking the whole catalog by each tool's code-token logit after the retrieval prompt."""
    if toolgen.indexing.scheme != "atomic":
        return {"skipped": f"logit ranking needs atomic indexing, not {toolgen.indexing.scheme}"}
    if not queries:
        return {"queries": 0}
    ids = toolgen.catalog.ids
    prompts = [retrieval_prompt(toolgen.tokenizer, q.text) for q in queries]
    logits = trainer.code_logits(prompts, [toolgen.code_ids(t)[0] for t in ids], desc="evaluating")
    top = logits.topk(min(5, len(ids)), dim=1).indices.tolist()
    ranked = [[ids[i] for i in row] for row in top]
    scores = {
        f"ndcg@{k}": 100 * sum(ndcg(r, q.gold, k) for r, q in zip(ranked, queries)) / len(queries) for k in (1, 5)
    }
    return {**{k: round(v, 2) for k, v in scores.items()}, "queries": len(queries)}


def save_retrieval_pairs(examples: list, out: Path) -> Path:
    """Write the retrieval stage's (query, gold tool id) pairs to `out/retrieval_pairs.jsonl`, one JSON object
    `{"query", "tool"}` per line: the fine-tuned embedding baseline trains on exactly these pairs."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / RETRIEVAL_PAIRS_FILE
    with open(path, "w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps({"query": example.text, "tool": example.tool_id}, ensure_ascii=False) + "\n")
    return path


def load_retrieval_pairs(model_dir: Path | str) -> list[tuple[str, str]]:
    """The (query, tool id) pairs a build's retrieval stage trained on (see `save_retrieval_pairs`)."""
    path = Path(model_dir) / RETRIEVAL_PAIRS_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the model at {model_dir} was not built by `python -m core build` "
            "with a retrieval stage"
        )
    with open(path, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [(row["query"], row["tool"]) for row in rows]


def retrieval_checkpoint(out: Path | str) -> Path:
    """Where a build that goes on to agent tuning also keeps its retrieval-stage model: `<out>-retrieval`."""
    out = Path(out)
    return out.with_name(out.name + "-retrieval")


def build_stages(
    trainer: Trainer, corpus: Corpus, preset: Preset, out: Path, stages=STAGES, soft_targets: SoftTargets | None = None
) -> None:
    """Run the `stages` not yet in `info["stages"]`, scoring retrieval and saving to `out` after each one.

    Before each stage its examples and the corpus's training texts are checked against the test queries.
    When the agent stage follows, the retrieval-stage model is also saved to `retrieval_checkpoint(out)`
    (retrieval is evaluated on it, as in the paper; the agent uses `out`).

    Scores go to `info["metrics"]` ("untrained" first), training reports to `info["reports"]`; the agent stage
    records its trajectory format in `info["agent_docs"]` (the agent reads tool documentation when it is true).
    `soft_targets` (core/soft_targets.py) are a teacher's distributions for the retrieval stage's queries, used with
    the weight of the stage's `distill` setting.
    """
    toolgen = trainer.toolgen
    eval_queries = spread(corpus.test, preset.eval_queries)
    metrics, reports = toolgen.info.setdefault("metrics", {}), toolgen.info.setdefault("reports", {})
    done = toolgen.info.setdefault("stages", [])
    if "untrained" not in metrics and not done:
        metrics["untrained"] = retrieval_quality(trainer, toolgen, eval_queries)
    for stage in stages:
        if stage in done:
            continue
        examples = stage_examples(stage, toolgen, corpus, preset)
        if not examples:
            print(f"{stage}: no training examples for corpus {corpus.name}; skipped")
            continue
        check_no_leak(corpus.training_texts() + [e.text for e in examples], [q.text for q in corpus.test])
        if stage == AGENT:
            toolgen.info["agent_docs"] = preset.agent_docs
        if stage == RETRIEVAL and trainer.accelerator.is_main_process:
            save_retrieval_pairs(examples, out)
        soft = soft_targets if stage == RETRIEVAL else None
        reports[stage] = trainer.train(examples, preset.stages[stage], stage, out / STATE_DIR, soft)
        metrics[stage] = retrieval_quality(trainer, toolgen, eval_queries)
        done.append(stage)
        if trainer.accelerator.is_main_process:
            trainer.toolgen.save(out)
            if stage == RETRIEVAL and AGENT in stages:  # agent tuning costs retrieval quality: keep this one too
                trainer.toolgen.save(retrieval_checkpoint(out))
                shutil.copy(out / RETRIEVAL_PAIRS_FILE, retrieval_checkpoint(out))
        trainer.accelerator.wait_for_everyone()


def _start_model(args, corpus: Corpus, preset: Preset) -> ToolGenModel:
    out = Path(args.out)
    if (out / "toolgen.json").exists() and not args.fresh:
        toolgen = ToolGenModel.load(out)
        if set(toolgen.catalog.ids) != set(corpus.catalog.ids):
            raise SystemExit(f"{out} holds a model over another catalog; use --fresh or another --out")
        return toolgen
    if preset.base == "tiny":
        from transformers import AutoTokenizer

        from .model import smollm2_dir
        from .tiny import tiny_llama

        tokenizer = AutoTokenizer.from_pretrained(smollm2_dir())
        model = tiny_llama(len(tokenizer))
    else:
        model, tokenizer = load_base(preset.base)
    toolgen = ToolGenModel.from_base(
        corpus.catalog, scheme=args.scheme, base=preset.base, model=model, tokenizer=tokenizer
    )
    toolgen.info.update({"corpus": corpus.name, "preset": args.preset, "stages": [], "metrics": {}, "reports": {}})
    return toolgen


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", choices=CORPORA, default="bfcl", help="tool corpus (default: bfcl)")
    parser.add_argument(
        "--data-dir",
        default=None,
        help=f"toolbench: folder with corpus.json and queries/ (default {TOOLBENCH_DATA_DIR}); "
        "bfcl: the bfcl_eval data folder (default: the installed package's)",
    )
    parser.add_argument("--out", default=None, help="checkpoint folder (default models/toolgen-<corpus>)")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="settings (default: 'default' for bfcl, 'default-toolbench' for toolbench)",
    )
    parser.add_argument("--scheme", default="atomic", help="tool indexing scheme (default atomic)")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated stages to run, in order")
    parser.add_argument("--train-layers", type=int, default=None, help="top decoder layers trained (-1: all)")
    parser.add_argument(
        "--epochs", default=None, help="epochs per stage, e.g. memorization=2,retrieval=3 (overrides the preset)"
    )
    parser.add_argument("--head", default=None, help="softmax head per stage, e.g. retrieval=codes (full|codes)")
    parser.add_argument("--synthetic-per-tool", type=int, default=None)
    parser.add_argument("--synthetic-for", choices=("missing", "all", "none"), default=None)
    parser.add_argument("--pairs-per-tool", type=int, default=None, help="two-intent synthetic queries per tool")
    parser.add_argument("--max-tools", type=int, default=None, help="use only this many tools (experiments)")
    parser.add_argument(
        "--hold-out",
        default=None,
        metavar="FILE",
        help="tool ids (one per line) the build leaves out, with every query naming one: to add them later with "
        "`python -m core add-tools` (recorded in toolgen.json as held_out_tools)",
    )
    parser.add_argument(
        "--catalog-size",
        type=int,
        default=None,
        help="grow the catalog to N tools with names-only tools of the official ToolGen token list (--vocab): "
        "memorized from their names, no queries; distractors for the scale curve (`python -m eval scale`)",
    )
    parser.add_argument("--vocab", default=str(TOOLGEN_VOCAB_FILE), help="token list for --catalog-size")
    parser.add_argument("--eval-queries", type=int, default=None, help="test queries scored per stage")
    parser.add_argument(
        "--agent-docs",
        action="store_true",
        default=None,
        help="documentation on demand: agent-tuning calls read the chosen tool's documentation before their "
        "Action Input (recorded in toolgen.json; the agent then does the same)",
    )
    parser.add_argument(
        "--agent-max-len",
        type=int,
        default=None,
        help="agent-tuning sequences keep their first N tokens (preset: 512; documentation turns make them longer)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="training matmuls: bfloat16 autocast or float32; auto: bfloat16 only where the device "
        "has native bf16 (a CPU with avx512_bf16/amx_bf16, or such a GPU)",
    )
    parser.add_argument("--no-bf16", action="store_true", help="same as --precision float32")
    parser.add_argument(
        "--teacher",
        default=None,
        metavar="FILE",
        help="distillation: a soft-targets file (`python -m eval teacher`) whose distributions the retrieval stage "
        "also learns, weighted by --distill",
    )
    parser.add_argument(
        "--distill", type=float, default=None, help="weight of the teacher's soft targets (default 1 with --teacher)"
    )
    parser.add_argument(
        "--doc-rows",
        default=None,
        help="stages whose tool rows are documentation-conditioned (core/doc_rows.py; default: retrieval, "
        "for atomic indexing); 'none' for none",
    )
    parser.add_argument("--fresh", action="store_true", help="ignore a checkpoint already in --out")


def _overrides(text: str | None, cast) -> dict:
    if not text:
        return {}
    pairs = [item.split("=", 1) for item in text.split(",")]
    if any(len(p) != 2 or p[0] not in STAGES for p in pairs):
        raise SystemExit(f"expected stage=value pairs with stages from {STAGES}, got {text!r}")
    return {stage: cast(value) for stage, value in pairs}


def _preset(args) -> Preset:
    args.preset = args.preset or ("default-toolbench" if args.corpus == "toolbench" else "default")
    preset = PRESETS[args.preset]
    stages = dict(preset.stages)
    for stage, epochs in _overrides(args.epochs, int).items():
        stages[stage] = replace(stages[stage], epochs=epochs)
    for stage, head in _overrides(args.head, str).items():
        stages[stage] = replace(stages[stage], head=head)
    if args.doc_rows is not None:
        chosen = {s.strip() for s in args.doc_rows.split(",")} - {"none", ""}
        if chosen - set(STAGES):
            raise SystemExit(f"--doc-rows: unknown stages {sorted(chosen - set(STAGES))}; choose from {STAGES}")
        stages = {stage: replace(config, doc_rows=stage in chosen) for stage, config in stages.items()}
    elif args.scheme != "atomic":  # documentation-conditioned rows need one row per tool: the preset's are dropped
        stages = {stage: replace(config, doc_rows=False) for stage, config in stages.items()}
    if args.agent_max_len is not None:
        stages[AGENT] = replace(stages[AGENT], max_len=args.agent_max_len)
    if args.distill is not None and not args.teacher:
        raise SystemExit("--distill needs --teacher FILE")
    if args.teacher:
        stages[RETRIEVAL] = replace(stages[RETRIEVAL], distill=1.0 if args.distill is None else args.distill)
    changes = {
        name: getattr(args, name)
        for name in (
            "train_layers",
            "synthetic_per_tool",
            "synthetic_for",
            "pairs_per_tool",
            "max_tools",
            "eval_queries",
            "agent_docs",
        )
        if getattr(args, name) is not None
    }
    return replace(preset, stages=stages, **changes)


def run(args: argparse.Namespace) -> int:
    """Build (or resume) the model and print the JSON report; returns the exit status."""
    started = time.time()
    preset = _preset(args)
    args.out = args.out or model_dir(args.corpus)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise SystemExit(f"unknown stages {unknown}; choose from {STAGES}")
    corpus = load_corpus(args.corpus, args.data_dir, preset.max_tools)
    held_out = read_tool_ids(None, args.hold_out) if args.hold_out else []
    if held_out:
        corpus = without_tools(corpus, held_out)
    if args.catalog_size:
        corpus = replace(corpus, catalog=grown_catalog(corpus.catalog, args.catalog_size, args.vocab))
    toolgen = _start_model(args, corpus, preset)
    if held_out:
        toolgen.info["held_out_tools"] = held_out
    precision = "float32" if args.no_bf16 else args.precision
    trainer = Trainer(
        toolgen, train_layers=preset.train_layers, bf16=None if precision == "auto" else precision == "bfloat16"
    )
    soft_targets = read_soft_targets(args.teacher, set(corpus.catalog.ids)) if args.teacher else None
    if soft_targets is not None:
        toolgen.info["teacher"] = {"file": str(args.teacher), "queries": len(soft_targets)}
    build_stages(trainer, corpus, preset, Path(args.out), stages, soft_targets)
    if trainer.accelerator.is_main_process:
        report = {
            "corpus": corpus.name,
            "out": str(args.out),
            "stages": toolgen.info["stages"],
            "tools": len(corpus.catalog),
            "train_queries": len(corpus.train),
            "test_queries": len(corpus.test),
            "retrieval": toolgen.info["metrics"],
            "train": toolgen.info["reports"],
            "wall_s": round(time.time() - started, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
        print(json.dumps(report, indent=1))
    return 0
