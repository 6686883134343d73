"""The official ToolGen token list (`virtual_tokens.txt`): one `<<tool_name&&api_name>>` per line, names only."""
from __future__ import annotations

from pathlib import Path

from .indexing import FINISH, parse_tool_token
from .tools import CatalogError, Tool, ToolCatalog


def read_token_lines(path: Path | str) -> list[str]:
    """The non-empty lines of a token file, verbatim except the line break (names may hold tabs, emoji)."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\r\n") for line in f if line.rstrip("\r\n")]
    except FileNotFoundError:
        raise CatalogError(str(path), "-", "file not found") from None
    except UnicodeDecodeError as e:
        raise CatalogError(str(path), f"byte {e.start}", "not UTF-8 text") from None


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
        tool = Tool(id=f"{tool_name}&&{api_name}", category="", tool_name=tool_name, api_name=api_name,
                    description="", source="toolgen-vocab")
        catalog.add(tool, source=source, entry=f"line {line_number}")
    return catalog


def load_token_list(path: Path | str) -> ToolCatalog:
    """Load `virtual_tokens.txt` into a names-only catalog."""
    return catalog_from_tokens(read_token_lines(path), source=str(path))
