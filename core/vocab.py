"""The official ToolGen token list (`virtual_tokens.txt`): one `<<tool_name&&api_name>>` per line, names only."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .indexing import FINISH, parse_tool_token
from .tools import CatalogError, Tool, ToolCatalog

NAMES_ONLY = "toolgen-vocab"  # the source of tools known only by name (no documentation, no synthetic queries)


def read_lines_verbatim(path: Path | str) -> list[str]:
    """Lines of `path` with only the newline removed (tabs, runs of spaces, emoji and \\r are kept)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        raise CatalogError(str(path), "-", "file not found") from None
    except UnicodeDecodeError as e:
        raise CatalogError(str(path), f"byte {e.start}", "not UTF-8 text") from None
    return lines[:-1] if lines and lines[-1] == "" else lines


def read_token_lines(path: Path | str) -> list[str]:
    """The tokens of a token file, one per line, verbatim; empty or duplicate lines are errors."""
    lines = read_lines_verbatim(path)
    first_line: dict[str, int] = {}
    for number, token in enumerate(lines, start=1):
        if token == "":
            raise CatalogError(str(path), f"line {number}", "empty token")
        if token in first_line:
            raise CatalogError(
                str(path), f"line {number}", f"duplicate token {token!r} (first on line {first_line[token]})"
            )
        first_line[token] = number
    if not lines:
        raise CatalogError(str(path), "-", "no tokens")
    return lines


def catalog_from_tokens(tokens: list[str], source: str = "tokens") -> ToolCatalog:
    """A names-only catalog from official tool tokens; `<<Finish>>` is skipped, anything else malformed raises."""
    catalog = ToolCatalog()
    for line_number, token in enumerate(tokens, start=1):
        if token == FINISH:
            continue
        try:
            tool_name, api_name = parse_tool_token(token)
        except ValueError as e:
            raise CatalogError(source, f"line {line_number}", str(e)) from None
        tool = Tool(
            id=f"{tool_name}&&{api_name}",
            category="",
            tool_name=tool_name,
            api_name=api_name,
            description="",
            source=NAMES_ONLY,
        )
        catalog.add(tool, source=source, entry=f"line {line_number}")
    return catalog


def load_token_list(path: Path | str) -> ToolCatalog:
    """Load `virtual_tokens.txt` into a names-only catalog."""
    return catalog_from_tokens(read_token_lines(path), source=str(path))


def grown_catalog(catalog: ToolCatalog, size: int, path: Path | str, seed: int = 0) -> ToolCatalog:
    """`catalog` followed by names-only tools of the token list at `path` that it lacks, `size` tools in all.

    The added tools are a seeded random choice, each size's choice holding every smaller one's (so a scale
    curve's catalogs are nested). ValueError when `size` is below the catalog's size or above what the list gives."""
    extra = [t for t in load_token_list(path) if t.id not in catalog]
    if not len(catalog) <= size <= len(catalog) + len(extra):
        raise ValueError(f"catalog size must be between {len(catalog)} and {len(catalog) + len(extra)}, got {size}")
    extra.sort(key=lambda t: hashlib.sha1(f"{seed}:{t.id}".encode()).hexdigest())
    return catalog.merge(ToolCatalog(extra[: size - len(catalog)]))
