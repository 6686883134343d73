"""`python -m eval train-baseline --kind embedding-ft|retrieve-read --corpus bfcl|toolbench [--max-pairs N]
 [--recipe catalog|in-batch] [--trajectories N] [--out DIR]`: train a baseline once; the evaluations only load it.

- embedding-ft: MiniLM fine-tuned on exactly the (query, tool) pairs of ToolGen's retrieval stage
  (`retrieval_pairs.jsonl` of `--model`, by default the build's retrieval-stage model), `--max-pairs` of them
  evenly spread when given; `--recipe catalog` (default, eval/catalog_softmax.py): each query against every tool's
  document, documents embedded without gradient once per epoch; `--recipe in-batch`: sentence-transformers'
  MultipleNegativesRankingLoss (`retrievers.finetune_embedding`), the other documents of a batch as negatives.
  `python -m eval retrieval --systems embedding-ft` loads it.
- retrieve-read: the base model (`--base`) with semantic codes, tuned with core/train.py on the trajectories
  ToolGen's agent stage samples from the same corpus (the build's preset and sample), each user message followed by
  the documents the retrieve-read agent retrieves for it (gold tools always among them; sequences up to 1,024
  tokens). `python -m eval agent --systems retrieve-read` loads it.

The model goes to `--out`, by default `core.settings.baseline_dir(kind, corpus)` (models/<kind>-<corpus>), where the
evaluations look for it; an existing folder is never overwritten.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from core.bfcl import BfclEntry, load_bfcl_catalog
from core.bfcl_trajectories import bfcl_trajectory
from core.build import Preset, load_corpus, load_retrieval_pairs, sample
from core.examples import AGENT, Example, TrainingTrajectory, trajectory_example
from core.indexing import FINISH
from core.model import SMOLLM2
from core.settings import TOOLBENCH_DATA_DIR, baseline_dir
from core.splits import spread
from core.toolbench import load_toolbench_corpus
from core.tools import Tool, ToolCatalog
from core.train import Trainer

from .agent_datasets import offered_pools
from .agent_systems import RetrieveReadSystem, untuned_retrieve_read
from .catalog_softmax import finetune_against_catalog
from .retrieval_eval import default_toolgen_dir
from .retrievers import embedding_document, finetune_embedding

KINDS = ("embedding-ft", "retrieve-read")
CATALOG_RECIPE, IN_BATCH_RECIPE = "catalog", "in-batch"  # embedding-ft's two training recipes


def toolgen_training_pairs(
    catalog: ToolCatalog, model_dir: Path, document: Callable[[Tool], str] = Tool.document
) -> list[tuple[str, str]]:
    """(query, tool document) pairs: exactly the (query, tool) pairs ToolGen's retrieval stage trained on, each tool
    as `document` writes it (the text the embedding baseline indexes)."""
    pairs = load_retrieval_pairs(model_dir)
    unknown = sorted({tool_id for _, tool_id in pairs if tool_id not in catalog})
    if unknown:
        raise ValueError(f"{model_dir}: {len(unknown)} training tools are not in this catalog, e.g. {unknown[0]!r}")
    return [(query, document(catalog[tool_id])) for query, tool_id in pairs]


def train_embedding_ft(
    catalog: ToolCatalog,
    corpus: str,
    toolgen_dir: Path,
    out: Path,
    max_pairs: int | None = None,
    recipe: str = CATALOG_RECIPE,
    log=print,
) -> Path:
    """Fine-tune MiniLM on the retrieval pairs of the ToolGen model at `toolgen_dir` (at most `max_pairs`, evenly
    spread), tools written as the fine-tuned baseline indexes them, by `recipe` (see the module docstring), and save
    it to `out`."""
    document = embedding_document(corpus, fine_tuned=True)
    pairs = toolgen_training_pairs(catalog, toolgen_dir, document)
    if max_pairs:
        pairs = spread(pairs, max_pairs)
    log(f"fine-tuning MiniLM ({recipe}) on {len(pairs)} (query, document) pairs → {out}")
    if recipe == CATALOG_RECIPE:
        log(json.dumps(finetune_against_catalog(pairs, [document(tool) for tool in catalog], out)))
        return out
    return finetune_embedding(pairs, out)


def retrieve_read_examples(
    system: RetrieveReadSystem, trajectories: Sequence[tuple[TrainingTrajectory, Sequence | None]]
) -> list[Example]:
    """Agent-tuning examples for the retrieve-read agent: training trajectories (core/examples.py) with each user
    message followed by its retrieved documents, gold tools included. Each trajectory comes with the tools offered
    at each of its turns (None: the whole catalog)."""
    examples = []
    for trajectory, pools in trajectories:
        turns = []
        for index, (text, steps) in enumerate(trajectory.turns):
            gold = [step.tool_id for step in steps if step.tool_id != FINISH]
            turns.append((system.user_turn(text, pools[index] if pools else None, include=gold).text, steps))
        examples.append(trajectory_example(system.model, TrainingTrajectory(tuple(turns), trajectory.source)))
    return examples


def train_retrieve_read(
    system: RetrieveReadSystem, corpus_name: str, data_dir: str | Path | None, out: Path, n_trajectories: int
) -> dict:
    """Tune the retrieve-read agent's model on the trajectories ToolGen's agent stage samples from the same corpus
    (see the module docstring) and save it to `out`. Returns the training report; ValueError when the corpus has no
    agent trajectories."""
    preset, corpus = Preset(), load_corpus(corpus_name, data_dir)
    # the build's agent sources in its order: `Corpus.agent_entries`, then ready-made trajectories
    sources = list(corpus.agent_entries()) + list(corpus.trajectories)
    if not sources:
        raise ValueError(f"the {corpus_name} corpus has no agent training trajectories")
    chosen = [
        (bfcl_trajectory(s, system.model.catalog), offered_pools(s)) if isinstance(s, BfclEntry) else (s, None)
        for s in sample(sources, n_trajectories, 0)
    ]
    examples = retrieve_read_examples(system, chosen)
    report = Trainer(system.model, train_layers=preset.train_layers).train(
        examples, replace(preset.stages[AGENT], max_len=1024), AGENT
    )
    system.model.info["stages"].append(AGENT)
    system.model.info["reports"] = {AGENT: report}
    system.model.save(out)
    return report


def corpus_catalog(corpus: str, data_dir: str | Path) -> ToolCatalog:
    """The catalog the evaluations rank and act over: every BFCL function, or the ToolBench corpus file."""
    return load_toolbench_corpus(Path(data_dir) / "corpus.json") if corpus == "toolbench" else load_bfcl_catalog()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--corpus", choices=("bfcl", "toolbench"), required=True)
    parser.add_argument("--data-dir", default=str(TOOLBENCH_DATA_DIR), help="ToolBench data folder")
    parser.add_argument("--out", help="where to save the model (default: models/<kind>-<corpus>)")
    parser.add_argument(
        "--model",
        help="embedding-ft: the ToolGen checkpoint whose retrieval pairs it trains on "
        "(default: models/toolgen-<corpus>-retrieval, else models/toolgen-<corpus>)",
    )
    parser.add_argument(
        "--max-pairs",
        type=int,
        help="embedding-ft: train on at most N of ToolGen's pairs, evenly "
        "spread (default: all; see the README for the cost)",
    )
    parser.add_argument(
        "--recipe",
        choices=(CATALOG_RECIPE, IN_BATCH_RECIPE),
        default=CATALOG_RECIPE,
        help="embedding-ft: each query against every tool's document, documents without gradient (catalog, default) "
        "or against the other documents of its batch, documents with gradient (in-batch; ~20x slower per pair)",
    )
    parser.add_argument(
        "--trajectories",
        type=int,
        default=300,
        help="retrieve-read: agent trajectories it is tuned on (ToolGen's default agent stage: 300)",
    )
    parser.add_argument("--base", default=SMOLLM2, help="retrieve-read: the base model tuned")
    parser.add_argument("--k", type=int, default=5, help="retrieve-read: tools retrieved per user message")


def run(args: argparse.Namespace) -> int:
    """Train the baseline and save it; an existing output folder is an error."""
    out = Path(args.out) if args.out else baseline_dir(args.kind, args.corpus)
    if out.exists():
        raise ValueError(f"{out} already exists: delete it to retrain, or pass another --out")
    catalog = corpus_catalog(args.corpus, args.data_dir)
    if args.kind == "embedding-ft":
        toolgen_dir = Path(args.model) if args.model else default_toolgen_dir(args.corpus)
        train_embedding_ft(catalog, args.corpus, toolgen_dir, out, args.max_pairs, args.recipe)
    else:
        system = RetrieveReadSystem(untuned_retrieve_read(catalog, args.base), args.k)
        print(f"tuning the retrieve-read agent on {args.trajectories} {args.corpus} trajectories → {out}")
        train_retrieve_read(
            system, args.corpus, args.data_dir if args.corpus == "toolbench" else None, out, args.trajectories
        )
    print(f"saved {out}")
    return 0
