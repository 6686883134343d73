"""`python -m core remove-tools`: take tools out of a built model, without training.

    python -m core remove-tools --model models/toolgen-bfcl --tools 'math&&add,math&&sub' --out models/less
    python -m core remove-tools --model DIR --tools-file ids.txt      # one id per line; rewrites DIR in place

The tools leave the catalog (`tools.json`) and the indexing (`toolgen.json`). Retrieval, the agent and the build's
scoring decode through a code trie made from those (`ToolGenModel.code_sequences`), so they can no longer return a
removed tool. The tools' tokens and embedding rows stay in the vocabulary, unused: the weights are not touched
(with --out the checkpoint folder is copied as it is, full or compact, and only its two metadata files are
rewritten), and the trainer still finds the added rows at the end of the vocabulary. `toolgen.json` lists the
removed ids under `removed_tools`.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterable
from pathlib import Path

from .model import ToolGenModel
from .settings import DEFAULT_MODEL_DIR

SHOWN_UNKNOWN = 20  # tool ids named in an error message


def remove_tools(toolgen: ToolGenModel, tool_ids: Iterable[str]) -> ToolGenModel:
    """A model sharing `toolgen`'s weights and tokenizer whose catalog and indexing lack `tool_ids`.

    ValueError when no id is given, when ids are not in the catalog (naming them), or when no tool would remain."""
    removed = list(dict.fromkeys(tool_ids))
    if not removed:
        raise ValueError("no tool ids given")
    unknown = [t for t in removed if t not in toolgen.catalog]
    if unknown:
        raise ValueError(f"{len(unknown)} tool id(s) not in the model's catalog: {listed(unknown)}")
    gone = set(removed)
    keep = [t for t in toolgen.catalog.ids if t not in gone]
    if not keep:
        raise ValueError(f"refusing to remove all {len(toolgen.catalog)} tools: the model would have none left")
    smaller = toolgen.restricted(keep)
    smaller.info["removed_tools"] = list(toolgen.info.get("removed_tools", [])) + removed
    return smaller


def listed(ids: list[str]) -> str:
    """The first SHOWN_UNKNOWN of `ids`, comma-separated, and how many more there are."""
    more = f" and {len(ids) - SHOWN_UNKNOWN} more" if len(ids) > SHOWN_UNKNOWN else ""
    return ", ".join(ids[:SHOWN_UNKNOWN]) + more


def read_tool_ids(tools: str | None, tools_file: Path | str | None) -> list[str]:
    """Tool ids from a comma-separated list or a file with one id per line (blank lines skipped)."""
    if tools_file is not None:
        return [line.strip() for line in Path(tools_file).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [t.strip() for t in (tools or "").split(",") if t.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="ToolGen checkpoint folder")
    ids = parser.add_mutually_exclusive_group(required=True)
    ids.add_argument("--tools", help="comma-separated tool ids (tool_name&&api_name)")
    ids.add_argument("--tools-file", help="a file with one tool id per line")
    parser.add_argument("--out", default=None, help="write the result here (a copy of --model); default: in place")


def run(args: argparse.Namespace) -> int:
    """Remove the tools and write the checkpoint; prints what was removed and what remains."""
    source = Path(args.model)
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no checkpoint folder here")
    toolgen = ToolGenModel.load(source)
    ids = read_tool_ids(args.tools, args.tools_file)
    smaller = remove_tools(toolgen, ids)  # every check before anything is written
    out = Path(args.out) if args.out else source
    if out.resolve() != source.resolve():
        if out.exists() and any(out.iterdir()):
            raise ValueError(f"{out} exists and is not empty; choose another --out")
        shutil.copytree(source, out, dirs_exist_ok=True)
    smaller.save_metadata(out)
    print(f"removed {len(toolgen.catalog) - len(smaller.catalog)} tools; {len(smaller.catalog)} remain in {out}")
    return 0
