"""The scale curve: ToolBench models whose vocabulary holds 2.5k, 10k and all ~47k official ToolGen tool tokens.

    python -m eval scale [--sizes 2479,10000,47020] [--work models/scale] [--systems bm25,embedding]
                         [--db FILE]

Each size's catalog is ToolBench's 2,479 documented APIs plus names-only tools of the official token list
(`core.vocab.grown_catalog`: memorized from their names, never named by a query; distractors), nested across sizes;
47,020 is all of them (the list's 46,984 tools, 36 of ToolBench's APIs not in it). Per size, each in its own process:
1. `python -m core build --corpus toolbench --stages memorization,retrieval --catalog-size N` (WORK/toolbench-N);
   the size of a `--reuse` checkpoint (by default the ToolBench build's retrieval checkpoint: same recipe) is not
   built again;
2. `python -m eval retrieval --corpus toolbench --catalog-size N --systems toolgen` (peak RSS of that process);
3. the same for the baselines over the same catalog.
Evaluation runs are stored in the results store as sets `toolbench:<group>@N-tools`. Printed per size: held-out
NDCG@1/@5 of every system (all test queries and the gold-unseen bucket), ToolGen's latency p50/p95 at batch 1,
peak RSS of the build and of the ToolGen evaluation, checkpoint size, training seconds per stage.
A size whose model exists is not rebuilt (its build figures come from WORK/toolbench-N/build.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.build import retrieval_checkpoint
from core.model import ToolGenModel
from core.settings import DEFAULT_DB, TOOLBENCH_DATA_DIR, TOOLGEN_VOCAB_FILE, model_dir
from core.tools import ToolCatalog
from core.vocab import NAMES_ONLY

from .retrieval_eval import GOLD_UNSEEN, POOLED_GROUP, catalog_suffix
from .steps import run_measured, run_step

BUILD_RECORD = "build.json"  # the build's own JSON report, kept beside the model
SETS = ("", f"/{GOLD_UNSEEN}")  # reported per size: every test query, and the gold-unseen bucket


def folder_mb(folder: Path) -> float:
    """Size of the files in `folder` (not below it), in MB."""
    return round(sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 1e6, 3)


def model_for(size: int, work: Path, reuse: Path | None) -> Path:
    """The checkpoint of one size: `reuse` when that checkpoint exists and holds `size` tools, else built here."""
    if (
        reuse is not None
        and (reuse / "tools.json").exists()
        and len(ToolCatalog.from_json(reuse / "tools.json")) == size
    ):
        return reuse
    return work / f"toolbench-{size}"


def build(size: int, out: Path, options: list[str]) -> dict:
    """Build the model of one size unless its build report (build.json, with wall_s and peak_rss_mb) exists.
    `options`: more `core build` arguments (data folder, token list, preset)."""
    command = ["core", "build", "--corpus", "toolbench", "--stages", "memorization,retrieval", "--out", str(out)]
    return run_step([*command, "--catalog-size", str(size), *options], out / BUILD_RECORD)


def evaluate(size: int, model: Path, systems: str, db: str, options: list[str]) -> tuple[dict, float]:
    """`python -m eval retrieval` over the catalog of `size`; (its JSON report, the process's peak RSS in MB)."""
    command = ["eval", "retrieval", "--corpus", "toolbench", "--systems", systems, "--db", db, "--json"]
    stdout, _, rss = run_measured([*command, "--catalog-size", str(size), "--model", str(model), *options])
    return json.loads(stdout), rss


def whole_set(report: dict, size: int) -> str:
    """The name of the set holding every query in an evaluation report: the query files together, or the one file."""
    pooled = f"toolbench:{POOLED_GROUP}{catalog_suffix(size)}"
    sets = [name for name in report if "/" not in name]
    return pooled if pooled in report else sets[0]


def size_record(size: int, model: Path, systems: str, db: str, options: list[str]) -> dict:
    """Every figure of one size."""
    toolgen = ToolGenModel.load(model)
    names_only = sum(t.source == NAMES_ONLY for t in toolgen.catalog)
    built = json.loads((model / BUILD_RECORD).read_text()) if (model / BUILD_RECORD).exists() else {}
    own, toolgen_rss = evaluate(size, model, "toolgen", db, options)
    others, _ = evaluate(size, model, systems, db, options) if systems else ({}, None)
    whole = whole_set(own, size)
    quality = {
        (name.lstrip("/") or "all"): {
            system: {m: round(100 * values[m], 1) for m in ("ndcg@1", "ndcg@5")} | {"queries": values["queries"]}
            for report in (own, others)
            for system, values in report.get(whole + name, {}).items()
            if not system.startswith("paired")
        }
        for name in SETS
    }
    toolgen_all = own[whole]["toolgen"]
    return {
        "tools": len(toolgen.catalog),
        "names_only": names_only,
        "quality": quality,
        "toolgen_latency_ms": {"p50": toolgen_all["latency_p50_ms"], "p95": toolgen_all["latency_p95_ms"]},
        "toolgen_eval_peak_rss_mb": toolgen_rss,
        "checkpoint_mb": folder_mb(model),
        "train_s": {stage: r["seconds"] for stage, r in toolgen.info["reports"].items()},
        **({"build_wall_s": built["wall_s"], "build_peak_rss_mb": built["peak_rss_mb"]} if built else {}),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="2479,10000,47020", help="catalog sizes (2479: ToolBench's own)")
    parser.add_argument("--work", default="models/scale", help="folder for the models built here")
    parser.add_argument("--systems", default="bm25,embedding", help="baselines over the same catalogs")
    parser.add_argument("--db", default=str(DEFAULT_DB))
    parser.add_argument("--data-dir", default=str(TOOLBENCH_DATA_DIR), help="ToolBench data folder")
    parser.add_argument("--vocab", default=str(TOOLGEN_VOCAB_FILE), help="the official token list")
    parser.add_argument("--preset", default=None, help="build preset (default: the ToolBench build's)")
    parser.add_argument(
        "--reuse",
        default=str(retrieval_checkpoint(model_dir("toolbench"))),
        help="checkpoint used for the size it holds, when it exists (default: the ToolBench build's retrieval "
        "checkpoint, the same recipe); '' to build every size",
    )


def run(args: argparse.Namespace) -> int:
    """Build what is missing, evaluate every size, print the curve."""
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    work, reuse = Path(args.work), Path(args.reuse) if args.reuse else None
    data = ["--data-dir", args.data_dir, "--vocab", args.vocab]
    records = []
    for size in sizes:
        model = model_for(size, work, reuse)
        if model.parent == work:
            build(size, model, data + (["--preset", args.preset] if args.preset else []))
        records.append(size_record(size, model, args.systems, args.db, data))
        print(json.dumps(records[-1]), file=sys.stderr)  # each size as it is done
    print(json.dumps({"sizes": records}, indent=1))
    return 0
