"""The tool catalog: one `Tool` record per API, a `Query` record per user request, and `ToolCatalog`.

Everything else (indexing, training, decoding, evaluation, the app) speaks in terms of these records.
A tool's `id` is stable across runs and unique within a catalog; for ToolBench it is
`tool_name&&api_name`, the same text the official ToolGen token wraps in `<<…>>`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field


class CatalogError(ValueError):
    """Malformed tool or query input. The message names the file, the entry and the problem."""

    def __init__(self, source: str, entry: object, problem: str):
        super().__init__(f"{source}: entry {entry}: {problem}")
        self.source, self.entry, self.problem = source, entry, problem


@dataclass(frozen=True)
class Tool:
    """One callable API. `parameters` is a JSON schema object; `response` the shape of a typical reply."""

    id: str
    category: str
    tool_name: str
    api_name: str
    description: str
    parameters: dict = field(default_factory=lambda: {"type": "object", "properties": {}, "required": []})
    response: dict | list | str | None = None
    source: str = ""

    def __hash__(self) -> int:
        return hash(self.id)

    def document(self) -> str:
        """The tool's documentation in the ToolGen paper's memorization format."""
        lines = [
            f"Tool Name: {self.tool_name}",
            f"Tool Category: {self.category}",
            f"Api Name: {self.api_name}",
            f"Api Description: {self.description}",
        ]
        props = self.parameters.get("properties", {}) if isinstance(self.parameters, dict) else {}
        required = set(self.parameters.get("required", [])) if isinstance(self.parameters, dict) else set()
        for name, spec in props.items():
            kind = spec.get("type", "any") if isinstance(spec, dict) else "any"
            desc = spec.get("description", "") if isinstance(spec, dict) else ""
            flag = "required" if name in required else "optional"
            lines.append(f"Parameter: {name} ({kind}, {flag}) {desc}".rstrip())
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Tool:
        return cls(**data)


@dataclass(frozen=True)
class Query:
    """A user request with its gold tools (tool ids) and, optionally, the candidate pool offered with it."""

    id: str
    text: str
    gold: tuple[str, ...] = ()
    pool: tuple[str, ...] = ()
    source: str = ""


class ToolCatalog:
    """An ordered, id-indexed collection of tools. Adding a second tool with an existing id is an error."""

    def __init__(self, tools: Iterable[Tool] = (), source: str = "catalog"):
        self._tools: dict[str, Tool] = {}
        self._by_name: dict[tuple[str, str], str] = {}
        for index, tool in enumerate(tools):
            self.add(tool, source=source, entry=index)

    def add(self, tool: Tool, source: str = "catalog", entry: object = "?") -> None:
        """Add `tool`; raise `CatalogError` if its id is already taken."""
        if tool.id in self._tools:
            raise CatalogError(source, entry, f"duplicate tool id {tool.id!r}")
        self._tools[tool.id] = tool
        self._by_name.setdefault((tool.tool_name, tool.api_name), tool.id)

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __contains__(self, tool_id: object) -> bool:
        return tool_id in self._tools

    def __getitem__(self, tool_id: str) -> Tool:
        try:
            return self._tools[tool_id]
        except KeyError:
            raise KeyError(f"unknown tool id {tool_id!r}") from None

    def get(self, tool_id: str) -> Tool | None:
        return self._tools.get(tool_id)

    @property
    def ids(self) -> list[str]:
        return list(self._tools)

    def find(self, tool_name: str, api_name: str) -> Tool | None:
        """The tool with this (tool_name, api_name), or None."""
        tool_id = self._by_name.get((tool_name, api_name))
        return self._tools[tool_id] if tool_id else None

    def subset(self, tool_ids: Iterable[str]) -> ToolCatalog:
        """A catalog holding only `tool_ids` (in catalog order); unknown ids raise KeyError."""
        wanted = set(tool_ids)
        missing = wanted - self._tools.keys()
        if missing:
            raise KeyError(f"unknown tool ids: {sorted(missing)[:5]}")
        return ToolCatalog(t for t in self if t.id in wanted)

    def merge(self, other: ToolCatalog) -> ToolCatalog:
        """A new catalog with this catalog's tools followed by `other`'s; clashing ids raise CatalogError."""
        merged = ToolCatalog(self)
        for index, tool in enumerate(other):
            merged.add(tool, source="merge", entry=index)
        return merged

    def to_json(self, path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump([t.to_dict() for t in self], f, ensure_ascii=False)

    @classmethod
    def from_json(cls, path) -> ToolCatalog:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return cls((Tool.from_dict(d) for d in data), source=str(path))
