"""ToolBench / StableToolBench loaders: the `api_list` corpus format and the solvable-query files."""
from __future__ import annotations

import json
from pathlib import Path

from .tools import CatalogError, Query, Tool, ToolCatalog

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "toolbench"
_REQUIRED_API_FIELDS = ("tool_name", "api_name")
_TYPE_MAP = {"string": "string", "str": "string", "number": "number", "float": "number", "integer": "integer",
             "int": "integer", "boolean": "boolean", "bool": "boolean", "array": "array", "object": "object",
             "enum": "string", "date": "string", "time": "string", "datetime": "string"}


def read_json(path: Path | str) -> object:
    """Parse a JSON file, raising CatalogError (naming the file and position) on malformed JSON."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise CatalogError(str(path), "-", "file not found") from None
    except json.JSONDecodeError as e:
        raise CatalogError(str(path), f"line {e.lineno} col {e.colno}", f"invalid JSON: {e.msg}") from None


def api_to_tool(entry: object, source: str, index: int) -> Tool:
    """Convert one ToolBench `api_list` entry to a Tool; raise CatalogError if it is malformed."""
    if not isinstance(entry, dict):
        raise CatalogError(source, index, f"expected an object, got {type(entry).__name__}")
    for name in _REQUIRED_API_FIELDS:
        if not isinstance(entry.get(name), str) or not entry[name].strip():
            raise CatalogError(source, index, f"missing or empty field {name!r}")
    properties, required = {}, []
    for group in ("required_parameters", "optional_parameters"):
        params = entry.get(group) or []
        if not isinstance(params, list):
            raise CatalogError(source, index, f"{group!r} must be a list")
        for param in params:
            if not isinstance(param, dict) or not isinstance(param.get("name"), str):
                raise CatalogError(source, index, f"a parameter in {group!r} has no name")
            spec = {"type": _TYPE_MAP.get(str(param.get("type", "string")).lower(), "string"),
                    "description": str(param.get("description") or "")}
            if param.get("default") not in (None, ""):
                spec["default"] = param["default"]
            properties[param["name"]] = spec
            if group == "required_parameters":
                required.append(param["name"])
    tool_name, api_name = entry["tool_name"], entry["api_name"]
    return Tool(
        id=f"{tool_name}&&{api_name}",
        category=str(entry.get("category_name") or ""),
        tool_name=tool_name,
        api_name=api_name,
        description=str(entry.get("api_description") or ""),
        parameters={"type": "object", "properties": properties, "required": required},
        response=entry.get("template_response"),
        source="toolbench",
    )


def load_toolbench_corpus(path: Path | str) -> ToolCatalog:
    """Load a ToolBench corpus (a JSON list of `api_list` entries) into a catalog."""
    data = read_json(path)
    if not isinstance(data, list):
        raise CatalogError(str(path), "-", "expected a JSON list of api_list entries")
    catalog = ToolCatalog()
    for index, entry in enumerate(data):
        catalog.add(api_to_tool(entry, str(path), index), source=str(path), entry=index)
    return catalog


def load_toolbench_queries(path: Path | str, catalog: ToolCatalog | None = None) -> list[Query]:
    """Load a StableToolBench solvable-queries file.

    Gold tools come from `relevant APIs`, the pool from `api_list`. With a catalog, every named API must be in it
    (an unknown one raises CatalogError).
    """
    data = read_json(path)
    if not isinstance(data, list):
        raise CatalogError(str(path), "-", "expected a JSON list of queries")
    group = Path(path).stem
    queries, seen = [], set()
    for index, row in enumerate(data):
        if not isinstance(row, dict):
            raise CatalogError(str(path), index, "expected an object")
        for name in ("query_id", "query", "relevant APIs"):
            if name not in row:
                raise CatalogError(str(path), index, f"missing field {name!r}")
        if not isinstance(row["query"], str) or not row["query"].strip():
            raise CatalogError(str(path), index, "empty query text")
        query_id = str(row["query_id"])
        if query_id in seen:
            raise CatalogError(str(path), index, f"duplicate query_id {query_id!r}")
        seen.add(query_id)
        gold = []
        for pair in row["relevant APIs"]:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                raise CatalogError(str(path), index, f"relevant API {pair!r} is not a [tool_name, api_name] pair")
            gold.append(f"{pair[0]}&&{pair[1]}")
        pool = [api_to_tool(api, str(path), index).id for api in row.get("api_list") or []]
        if catalog is not None:
            unknown = [t for t in gold + pool if t not in catalog]
            if unknown:
                raise CatalogError(str(path), index, f"unknown tool {unknown[0]!r} (not in the corpus)")
        queries.append(Query(id=query_id, text=row["query"], gold=tuple(dict.fromkeys(gold)),
                             pool=tuple(dict.fromkeys(pool)), source=f"toolbench:{group}"))
    return queries
