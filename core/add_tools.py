"""`python -m core add-tools`: add tools to a built model by training only on them, with a replay of the old ones.

    python -m core add-tools --model models/toolgen-bfcl --tools new_functions.json --out models/more
    python -m core add-tools --model DIR --tools apis.json            # rewrites DIR in place

The tools file is JSON: a list of BFCL function documents (`{"name", "description", "parameters"}`) or of ToolBench
`api_list` entries (`{"tool_name", "api_name", "api_description", "required_parameters", …}`, as in corpus.json).
Each new tool gets an atomic token at the end of the vocabulary, its row initialised as a build initialises rows
(the mean of its name's sub-token embeddings), then two short stages run with the build's settings: memorization
(the new tools' documentation -> their tokens) and retrieval (their synthetic queries -> their tokens). Only the
new tools' rows train: the decoder and every old row stay exactly as built, so nothing learnt is forgotten and an
old tool can only lose a query to a new tool that outranks it. Both stages mix in `--replay` old examples per new
one (the build's saved retrieval pairs, else synthetic queries of old tools; the old tools' documentation): in the
softmax over the whole catalog they teach the new rows where they must stay below the old ones. (Training the
old rows or the top layers as well forgot much more: README, Scale and new tools.) Prints a JSON report (tools,
examples, seconds, peak memory).

A model built with documentation-conditioned rows (`build --doc-rows`, core/doc_rows.py) first gives each new tool
the row its documentation puts it at (its initial row plus the build's projection of its documentation); with
`--no-train` that is all, in seconds. Training then moves the new tools' own rows; the projection is kept as built.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from .bfcl import function_to_tool
from .build import PRESETS, load_retrieval_pairs, sample
from .doc_rows import FILE as DOC_ROWS_FILE
from .examples import MEMORIZATION, RETRIEVAL, memorization_examples, retrieval_examples
from .indexing import AtomicIndexing
from .model import ToolGenModel, _initialise_rows
from .remove_tools import listed
from .settings import DEFAULT_MODEL_DIR
from .toolbench import api_to_tool, read_json
from .tools import CatalogError, Query, Tool, ToolCatalog
from .train import Trainer


def read_tools_file(path: Path | str) -> list[Tool]:
    """The tools of a JSON list of BFCL function documents or ToolBench `api_list` entries; CatalogError naming the
    entry when one is malformed or an id repeats."""
    data = read_json(path)
    if not isinstance(data, list) or not data:
        raise CatalogError(str(path), "-", "expected a non-empty JSON list of function documents or api_list entries")
    tools = ToolCatalog()
    for index, entry in enumerate(data):
        toolbench = isinstance(entry, dict) and "api_name" in entry
        tool = api_to_tool(entry, str(path), index) if toolbench else function_to_tool(entry, str(path), index)
        tools.add(tool, source=str(path), entry=index)
    return list(tools)


def add_tools(toolgen: ToolGenModel, tools: list[Tool]) -> ToolGenModel:
    """`toolgen` with `tools` added to its catalog and vocabulary (untrained rows); the model is resized in place.

    ValueError when no tool is given, when a tool is already in the catalog (naming them), or when the model does
    not use atomic indexing."""
    if not tools:
        raise ValueError("no tools given")
    if not isinstance(toolgen.indexing, AtomicIndexing):
        raise ValueError(f"adding tools needs atomic indexing, not {toolgen.indexing.scheme}")
    present = [t.id for t in tools if t.id in toolgen.catalog]
    if present:
        raise ValueError(f"{len(present)} tool(s) already in the model: {listed(present)}")
    catalog = toolgen.catalog.merge(ToolCatalog(tools))
    indexing = AtomicIndexing({**toolgen.indexing.codes, **AtomicIndexing.build(ToolCatalog(tools)).codes})
    tokenizer, model = toolgen.tokenizer, toolgen.model
    old_size = model.get_input_embeddings().weight.shape[0]
    vocabulary = tokenizer.get_vocab()
    tokenizer.add_tokens([indexing.code(t.id) for t in tools if indexing.code(t.id) not in vocabulary])
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    _initialise_rows(model, tokenizer, catalog, indexing, start=old_size)
    added = [t.id for t in tools]
    info = {
        **toolgen.info,
        "added_tools": list(toolgen.info.get("added_tools", [])) + added,
        "removed_tools": [t for t in toolgen.info.get("removed_tools", []) if t not in set(added)],
    }
    return ToolGenModel(model, tokenizer, catalog, indexing, info, toolgen.doc_rows)


def built_with(toolgen: ToolGenModel):
    """The build preset the model records (the default one when it records none)."""
    return PRESETS.get(toolgen.info.get("preset") or "default", PRESETS["default"])


def place_by_documentation(toolgen: ToolGenModel, added: list[str], train_layers: int) -> None:
    """Add to the rows of the `added` tools what the model's documentation projection makes of their documentation."""
    if toolgen.doc_rows is None:
        raise ValueError("the model has no documentation projection (built without --doc-rows)")
    trainer = Trainer(toolgen, train_layers=train_layers)
    offsets = toolgen.doc_rows.offsets(trainer.documentation_features(added))
    rows = toolgen.model.get_input_embeddings().weight
    with torch.no_grad():
        rows[[toolgen.code_ids(t)[0] for t in added]] += offsets.to(rows.dtype)


def _retrieval_replay(old: ToolGenModel, model_dir: Path, n: int, preset) -> list:
    """`n` retrieval examples of the old tools: the build's own pairs when it saved them, else synthetic queries."""
    try:
        pairs = [(q, t) for q, t in load_retrieval_pairs(model_dir) if t in old.catalog]
    except FileNotFoundError:
        pairs = []
    queries = [
        Query(id=f"replay:{i}", text=text, gold=(tool_id,), source="replay")
        for i, (text, tool_id) in enumerate(sample(pairs, n, 2))
    ]
    synthetic = "none" if queries else "all"
    examples = retrieval_examples(old, queries, preset.synthetic_per_tool, synthetic, 0, 0, preset.max_query_tokens)
    return sample(examples, n, 2)


def train_added(toolgen: ToolGenModel, added: list[str], model_dir: Path, replay: float = 1.0) -> dict:
    """Memorization and retrieval training on the `added` tools (with `replay` old examples per new one), with the
    settings of the preset the model was built with; returns the two stages' training reports."""
    preset = built_with(toolgen)
    gone = set(added)
    new, old = toolgen.restricted(added), toolgen.restricted([t for t in toolgen.catalog.ids if t not in gone])
    memorization = memorization_examples(new, preset.max_doc_tokens)
    retrieval = retrieval_examples(
        new, [], preset.synthetic_per_tool, "all", preset.pairs_per_tool, max_query_tokens=preset.max_query_tokens
    )
    stages = {
        MEMORIZATION: memorization
        + sample(memorization_examples(old, preset.max_doc_tokens), round(replay * len(memorization)), 1),
        RETRIEVAL: retrieval + _retrieval_replay(old, model_dir, round(replay * len(retrieval)), preset),
    }
    trainer = Trainer(toolgen, train_layers=0)  # the decoder and the old tools' rows stay as built
    trainer.train_only_rows([toolgen.code_ids(t)[0] for t in added])
    return {  # the new tools' own rows train; the documentation projection stays as the build left it
        stage: trainer.train(examples, replace(preset.stages[stage], doc_rows=False), stage)
        for stage, examples in stages.items()
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="ToolGen checkpoint folder (full or compact)")
    parser.add_argument(
        "--tools", required=True, help="JSON list of BFCL function documents or ToolBench api_list entries"
    )
    parser.add_argument("--out", default=None, help="write the result here; default: rewrite --model in place")
    parser.add_argument("--replay", type=float, default=1.0, help="old examples mixed in per new one (default 1)")
    parser.add_argument(
        "--no-train",
        action="store_true",
        help="only place the new rows by their documentation (a model built with --doc-rows); no training",
    )


def run(args: argparse.Namespace) -> int:
    """Add, train, save (a full checkpoint); prints the JSON report."""
    started = time.time()
    source = Path(args.model)
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no checkpoint folder here")
    if args.replay < 0:
        raise ValueError(f"--replay must be at least 0, got {args.replay}")
    out = Path(args.out) if args.out else source
    if out.resolve() != source.resolve() and out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; choose another --out")
    tools = read_tools_file(args.tools)  # every check before any training
    if args.no_train and not (source / DOC_ROWS_FILE).exists():
        raise ValueError(f"--no-train needs a model built with --doc-rows; {source} has no {DOC_ROWS_FILE}")
    toolgen = ToolGenModel.load(source)
    larger = add_tools(toolgen, tools)
    added = [t.id for t in tools]
    if larger.doc_rows is not None:
        place_by_documentation(larger, added, built_with(toolgen).train_layers)
    reports = {} if args.no_train else train_added(larger, added, source, args.replay)
    larger.info.setdefault("reports", {})["add-tools"] = reports
    partial = out.with_name(out.name + ".adding")  # written whole, then moved into place: a failure loses nothing
    if partial.exists():
        shutil.rmtree(partial)
    larger.save(partial)
    if out.exists():
        shutil.rmtree(out)  # in place, a compact source becomes a full checkpoint
    partial.rename(out)
    report = {
        "added": len(tools),
        "tools": len(larger.catalog),
        "out": str(out),
        "examples": {stage: r["examples"] for stage, r in reports.items()},
        "train_s": {stage: r["seconds"] for stage, r in reports.items()},
        "wall_s": round(time.time() - started, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(report, indent=1))
    return 0
