"""BFCL v4 (Berkeley Function Calling Leaderboard) loaders, reading the data shipped in the `bfcl_eval` package.

Data files are JSON *lines*: `data/BFCL_v4_<category>.json` (questions and offered functions),
`data/possible_answer/BFCL_v4_<category>.json` (ground truth) and `data/multi_turn_func_doc/<stem>.json`
(documentation of the executable backend classes used by the multi-turn and agentic categories).

Included categories (`CATEGORIES`):
- AST, single turn: simple_python, multiple, parallel, parallel_multiple and their live_* versions;
  ground truth is a list of `{function_name: {param: [acceptable values]}}` ("" = may be left out).
- relevance: irrelevance, live_irrelevance (no call is correct), live_relevance (any call is correct).
- multi turn: multi_turn_base, multi_turn_miss_func, multi_turn_miss_param, multi_turn_long_context;
  ground truth is, per turn, a list of call strings such as `cd(folder='document')`.
- agentic: web_search and memory_kv / memory_vector / memory_rec_sum (BFCL's memory questions with one
  memory backend each); ground truth is a list of acceptable final answers.
Left out: simple_java and simple_javascript (their values are Java/JS source strings with their own type
system) and format_sensitivity (re-prompts of the entries above).

Tool ids follow ARCHITECTURE.md: `tool_name` is the namespace of the function name (text before the last
`.`), the backend class name for multi-turn docs (e.g. `GorillaFileSystem`), else `bfcl`; `api_name` is the
function name, suffixed `#<sha1(doc)[:6]>` on *every* variant when one (tool_name, name) has several
documentations. Variants are decided over all included data at once, so ids do not depend on which
categories a caller loads. A tool shared by several categories is listed under the first one in
`CATEGORIES` order.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

from .tools import CatalogError, Query, Tool, ToolCatalog

AST_CATEGORIES = (
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
)
RELEVANCE_CATEGORIES = ("irrelevance", "live_irrelevance", "live_relevance")
MULTI_TURN_CATEGORIES = ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context")
AGENTIC_CATEGORIES = ("web_search", "memory_kv", "memory_vector", "memory_rec_sum")
CATEGORIES = AST_CATEGORIES + RELEVANCE_CATEGORIES + MULTI_TURN_CATEGORIES + AGENTIC_CATEGORIES

# Backend class name -> stem of its documentation file (and of its source module in bfcl_eval).
BACKEND_DOCS = {
    "GorillaFileSystem": "gorilla_file_system",
    "MathAPI": "math_api",
    "MessageAPI": "message_api",
    "TwitterAPI": "posting_api",
    "TicketAPI": "ticket_api",
    "TradingBot": "trading_bot",
    "TravelAPI": "travel_booking",
    "VehicleControlAPI": "vehicle_control",
    "WebSearchAPI": "web_search",
    "MemoryAPI_kv": "memory_kv",
    "MemoryAPI_vector": "memory_vector",
    "MemoryAPI_rec_sum": "memory_rec_sum",
}

# BFCL parameter types -> JSON schema types; "any" becomes a schema without "type".
_SCHEMA_TYPES = {
    "dict": "object",
    "object": "object",
    "float": "number",
    "number": "number",
    "integer": "integer",
    "string": "string",
    "boolean": "boolean",
    "array": "array",
    "tuple": "array",
    "any": None,
}


def default_data_dir() -> Path:
    """The `data/` folder of the installed `bfcl_eval` package (found without importing it)."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise CatalogError("bfcl_eval", "-", "package not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def entry_kind(category: str) -> str:
    """'ast', 'irrelevance', 'relevance', 'multi_turn' or 'agentic'; ValueError for other categories."""
    if category in AST_CATEGORIES:
        return "ast"
    if category in RELEVANCE_CATEGORIES:
        return "relevance" if category == "live_relevance" else "irrelevance"
    if category in MULTI_TURN_CATEGORIES:
        return "multi_turn"
    if category in AGENTIC_CATEGORIES:
        return "agentic"
    raise ValueError(f"unknown BFCL category {category!r}; known: {', '.join(CATEGORIES)}")


def function_name(tool: Tool) -> str:
    """The BFCL function name of a tool: its api_name without the `#hash` variant suffix."""
    return tool.api_name.split("#", 1)[0]


# ---------------------------------------------------------------- reading files


def _question_file(data_dir: Path, category: str) -> Path:
    stem = "memory" if category.startswith("memory_") else category
    return data_dir / f"BFCL_v4_{stem}.json"


def _answer_file(data_dir: Path, category: str) -> Path:
    return data_dir / "possible_answer" / _question_file(data_dir, category).name


def _doc_file(data_dir: Path, class_name: str) -> Path:
    return data_dir / "multi_turn_func_doc" / f"{BACKEND_DOCS[class_name]}.json"


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) pairs of a JSON-lines file; CatalogError naming the file and line on a bad line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CatalogError(str(path), "-", "file not found") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise CatalogError(str(path), f"line {number}", f"invalid JSON: {e.msg}") from None
        if not isinstance(row, dict):
            raise CatalogError(str(path), f"line {number}", "expected a JSON object")
        rows.append((number, row))
    return rows


# ---------------------------------------------------------------- schemas and tools


def to_json_schema(spec: object, source: str, entry: object, where: str) -> dict:
    """Convert one BFCL parameter schema (recursively) to JSON schema; CatalogError on unknown types."""
    if not isinstance(spec, dict):
        raise CatalogError(source, entry, f"{where}: schema must be an object, got {type(spec).__name__}")
    kind = spec.get("type")
    if kind not in _SCHEMA_TYPES:
        raise CatalogError(source, entry, f"{where}: unknown parameter type {kind!r}")
    out = {
        key: value
        for key, value in spec.items()
        if key not in ("type", "properties", "items", "additionalProperties", "optional")
    }
    if _SCHEMA_TYPES[kind] is not None:
        out = {"type": _SCHEMA_TYPES[kind], **out}
    if "properties" in spec:
        if not isinstance(spec["properties"], dict):
            raise CatalogError(source, entry, f"{where}: 'properties' must be an object")
        out["properties"] = {
            name: to_json_schema(sub, source, entry, f"{where}.{name}") for name, sub in spec["properties"].items()
        }
    for key in ("items", "additionalProperties"):
        if isinstance(spec.get(key), dict):
            out[key] = to_json_schema(spec[key], source, entry, f"{where}[{key}]")
    return out


def _check_function_doc(doc: object, source: str, entry: object) -> None:
    if not isinstance(doc, dict):
        raise CatalogError(source, entry, "function documentation must be an object")
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip() or "#" in name or "&&" in name:
        raise CatalogError(source, entry, f"bad function name {name!r}")
    if not isinstance(doc.get("description", ""), str):
        raise CatalogError(source, entry, f"{name}: description must be a string")
    params = doc.get("parameters")
    if not isinstance(params, dict) or not isinstance(params.get("properties", {}), dict):
        raise CatalogError(source, entry, f"{name}: 'parameters' must be an object with 'properties'")
    required = params.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise CatalogError(source, entry, f"{name}: 'required' must be a list of parameter names")


def _digest(doc: dict) -> str:
    text = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:6]


def _namespace(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else "bfcl"


def _make_tool(tool_name: str, api_name: str, category: str, doc: dict, source: str, entry: object) -> Tool:
    params = to_json_schema(doc["parameters"], source, entry, doc["name"])
    params = {
        **params,
        "type": "object",
        "properties": params.get("properties", {}),
        "required": list(params.get("required", [])),
    }
    response = doc.get("response")
    if isinstance(response, dict):
        response = to_json_schema(response, source, entry, f"{doc['name']} response")
    return Tool(
        id=f"{tool_name}&&{api_name}",
        category=category,
        tool_name=tool_name,
        api_name=api_name,
        description=doc.get("description", ""),
        parameters=params,
        response=response,
        source="bfcl",
    )


def function_to_tool(doc: object, source: str, entry: object, category: str = "added") -> Tool:
    """One BFCL function document (`{"name", "description", "parameters"}`) as a Tool with id `<namespace>&&<name>`
    (namespace: the name's dotted prefix, else `bfcl`); CatalogError when it is malformed."""
    _check_function_doc(doc, source, entry)
    return _make_tool(_namespace(doc["name"]), doc["name"], category, doc, source, entry)


@dataclass(frozen=True)
class _Occurrence:
    """One function documentation as found in one file."""

    tool_name: str
    category: str
    doc: dict
    source: str
    entry: object

    @cached_property
    def key(self) -> tuple[str, str, str]:
        return self.tool_name, self.doc["name"], _digest(self.doc)


@dataclass(frozen=True)
class _Index:
    tools: dict[str, Tool]  # tool id -> tool, in first-seen order
    ids: dict[tuple[str, str, str], str]  # (tool_name, name, digest) -> tool id
    category_tools: dict[str, tuple[str, ...]]  # category -> ids of the tools its entries offer
    class_tools: dict[str, tuple[str, ...]]  # backend class -> ids of its documented functions


def _involved(row: dict, category: str) -> list[str]:
    if category.startswith("memory_"):
        return [f"MemoryAPI_{category.removeprefix('memory_')}"]
    return list(row.get("involved_classes", []))


def _occurrences(root: Path) -> tuple[dict[str, list[_Occurrence]], dict[str, list[_Occurrence]]]:
    """Every included documentation: per backend class (its doc file), and per category (what it offers)."""
    by_class: dict[str, list[_Occurrence]] = {}
    for class_name, stem in BACKEND_DOCS.items():
        path = _doc_file(root, class_name)
        for number, doc in _read_jsonl(path):
            _check_function_doc(doc, str(path), f"line {number}")
            by_class.setdefault(class_name, []).append(_Occurrence(class_name, stem, doc, str(path), f"line {number}"))
    by_category: dict[str, list[_Occurrence]] = {}
    for category in CATEGORIES:
        path = _question_file(root, category)
        found = by_category.setdefault(category, [])
        for number, row in _read_jsonl(path):
            entry = row.get("id", f"line {number}")
            for class_name in _involved(row, category):
                if class_name not in BACKEND_DOCS:
                    raise CatalogError(str(path), entry, f"unknown backend class {class_name!r}")
                found += by_class.get(class_name, [])
            if not isinstance(row.get("function", []), list):
                raise CatalogError(str(path), entry, "'function' must be a list")
            for doc in row.get("function", []):
                _check_function_doc(doc, str(path), entry)
                found.append(_Occurrence(_namespace(doc["name"]), category, doc, str(path), entry))
    return by_class, by_category


@lru_cache(maxsize=4)
def _index(data_dir: str) -> _Index:
    """Give each distinct (tool_name, name, doc) one tool id, deciding variants over all included data."""
    by_class, by_category = _occurrences(Path(data_dir))
    found = [o for group in (*by_class.values(), *by_category.values()) for o in group]
    variants: dict[tuple[str, str], set[str]] = {}
    for occurrence in found:
        tool_name, name, digest = occurrence.key
        variants.setdefault((tool_name, name), set()).add(digest)
    tools: dict[str, Tool] = {}
    ids: dict[tuple[str, str, str], str] = {}
    for o in found:
        tool_name, name, digest = o.key
        if o.key in ids:
            continue
        api_name = name if len(variants[tool_name, name]) == 1 else f"{name}#{digest}"
        tool = _make_tool(tool_name, api_name, o.category, o.doc, o.source, o.entry)
        if tool.id in tools:  # two docs of one name share a 6-hex digest prefix
            raise CatalogError(o.source, o.entry, f"tool id {tool.id!r} is ambiguous (digest collision)")
        tools[tool.id] = tool
        ids[tool_name, name, digest] = tool.id

    def tool_ids(group: list[_Occurrence]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(ids[o.key] for o in group))

    return _Index(
        tools, ids, {c: tool_ids(g) for c, g in by_category.items()}, {c: tool_ids(g) for c, g in by_class.items()}
    )


def _categories(categories: Iterable[str] | None) -> list[str]:
    chosen = list(CATEGORIES) if categories is None else list(categories)
    for category in chosen:
        entry_kind(category)  # ValueError for unknown categories
    return chosen


def load_bfcl_catalog(categories: Iterable[str] | None = None, data_dir: Path | str | None = None) -> ToolCatalog:
    """The BFCL tools offered by `categories` (default: all included categories plus every backend doc)."""
    index = _index(str(data_dir or default_data_dir()))
    if categories is None:
        return ToolCatalog(index.tools.values(), source="bfcl")
    wanted = {tool_id for c in _categories(categories) for tool_id in index.category_tools[c]}
    return ToolCatalog((t for t in index.tools.values() if t.id in wanted), source="bfcl")


# ---------------------------------------------------------------- ground-truth call strings


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def parse_call(text: str, param_order: Mapping[str, Sequence[str]] | None = None) -> list[tuple[str, dict]]:
    """Parse `f(a=1)` or `[f(a=1), g(b="x")]` into [(name, arguments)] without evaluating code.

    Argument values must be Python literals. Positional arguments are named with `param_order[name]`
    (the function's parameter names in order); without it they raise ValueError, as does anything else
    that is not a plain call with literal arguments.
    """
    if not isinstance(text, str):
        raise ValueError(f"a call must be text, got {type(text).__name__}")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"not a function call: {text!r} ({e.msg})") from None
    nodes = tree.elts if isinstance(tree, (ast.List, ast.Tuple)) else [tree]
    calls = []
    for node in nodes:
        name = _dotted(node.func) if isinstance(node, ast.Call) else None
        if name is None:
            raise ValueError(f"not a function call: {ast.unparse(node)!r} in {text!r}")
        arguments: dict = {}
        if node.args:
            names = (param_order or {}).get(name)
            if names is None or len(node.args) > len(names):
                raise ValueError(f"positional arguments of {name} need its parameter order: {text!r}")
            arguments.update(zip(names, (_literal(arg, name, text) for arg in node.args)))
        for keyword in node.keywords:
            if keyword.arg is None or keyword.arg in arguments:
                raise ValueError(f"bad or repeated keyword argument in {name}: {text!r}")
            arguments[keyword.arg] = _literal(keyword.value, name, text)
        calls.append((name, arguments))
    return calls


def _literal(node: ast.expr, name: str, text: str) -> object:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(f"argument of {name} is not a literal: {ast.unparse(node)!r} in {text!r}") from None


# ---------------------------------------------------------------- entries


@dataclass
class BfclEntry:
    """One BFCL test case. `turns[i]` holds the messages of turn i (role/content dicts).

    `ground_truth`: AST -> [{function_name: {param: [acceptable values]}}]; relevance -> [];
    multi turn -> per turn, a list of call strings; agentic -> acceptable final answers.
    `held_out` (multi_turn_miss_func): turn index -> tool ids first offered at that turn (not in `pool`).
    """

    id: str
    category: str
    turns: list[list[dict]]
    pool: tuple[str, ...]
    ground_truth: list
    gold: tuple[str, ...] = ()
    initial_config: dict | None = None
    involved_classes: tuple[str, ...] = ()
    held_out: dict[int, tuple[str, ...]] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """'ast', 'irrelevance', 'relevance', 'multi_turn' or 'agentic'."""
        return entry_kind(self.category)


def load_bfcl_entries(categories: Iterable[str] | None = None, data_dir: Path | str | None = None) -> list[BfclEntry]:
    """The test entries of `categories` (default: all included), with pools and gold as tool ids."""
    root = Path(data_dir or default_data_dir())
    index = _index(str(root))
    entries: list[BfclEntry] = []
    for category in _categories(categories):
        path = _question_file(root, category)
        kind = entry_kind(category)
        has_answers = kind in ("ast", "multi_turn", "agentic")
        answers = {row.get("id"): row for _, row in _read_jsonl(_answer_file(root, category))} if has_answers else {}
        seen: set[str] = set()
        for number, row in _read_jsonl(path):
            entry_id = row.get("id")
            if not isinstance(entry_id, str) or entry_id in seen:
                raise CatalogError(str(path), f"line {number}", f"missing or repeated id {entry_id!r}")
            seen.add(entry_id)
            if has_answers and entry_id not in answers:
                raise CatalogError(str(path), entry_id, "no ground truth in possible_answer")
            entries.append(_BUILDERS[kind](row, category, answers.get(entry_id, {}), index, str(path)))
    return entries


def _turns(row: dict, source: str) -> list[list[dict]]:
    turns = row.get("question")
    if not isinstance(turns, list) or not all(isinstance(t, list) for t in turns):
        raise CatalogError(source, row["id"], "'question' must be a list of turns (lists of messages)")
    for turn in turns:
        for message in turn:
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                raise CatalogError(source, row["id"], "every message needs a string 'content'")
    return turns


def _single_turn(row: dict, category: str, answer: dict, index: _Index, source: str) -> BfclEntry:
    by_name = {
        doc["name"]: index.ids[(_namespace(doc["name"]), doc["name"], _digest(doc))] for doc in row.get("function", [])
    }
    ground_truth = answer.get("ground_truth", [])
    if not isinstance(ground_truth, list) or not all(isinstance(g, dict) and len(g) == 1 for g in ground_truth):
        raise CatalogError(source, row["id"], "ground truth must be a list of {function: {param: [values]}}")
    gold = []
    for item in ground_truth:
        ((name, params),) = item.items()
        if name not in by_name:
            raise CatalogError(source, row["id"], f"ground truth calls {name!r}, which the entry does not offer")
        if not isinstance(params, dict) or not all(isinstance(v, list) for v in params.values()):
            raise CatalogError(source, row["id"], f"ground truth of {name!r} must map parameters to value lists")
        gold.append(by_name[name])
    return BfclEntry(
        id=row["id"],
        category=category,
        turns=_turns(row, source),
        pool=tuple(by_name.values()),
        ground_truth=ground_truth,
        gold=tuple(dict.fromkeys(gold)),
    )


def _multi_turn(row: dict, category: str, answer: dict, index: _Index, source: str) -> BfclEntry:
    classes = _involved(row, category)
    offered = {function_name(index.tools[t]): t for c in classes for t in index.class_tools[c]}
    held_out: dict[int, tuple[str, ...]] = {}
    for turn, names in (row.get("missed_function") or {}).items():
        if not str(turn).isdigit() or not isinstance(names, list):
            raise CatalogError(source, row["id"], "missed_function must map turn numbers to function names")
        missing = [n for n in names if n not in offered]
        if missing:
            raise CatalogError(source, row["id"], f"missed_function names unknown functions {missing}")
        held_out[int(turn)] = tuple(offered[n] for n in names)
    hidden = {t for ids in held_out.values() for t in ids}
    ground_truth = answer.get("ground_truth")
    turns = _turns(row, source)
    if not isinstance(ground_truth, list) or not all(isinstance(t, list) for t in ground_truth):
        raise CatalogError(source, row["id"], "multi-turn ground truth must be a list of turns")
    if len(ground_truth) != len(turns):
        raise CatalogError(source, row["id"], f"{len(ground_truth)} ground-truth turns for {len(turns)} question turns")
    order = {name: list(index.tools[t].parameters["properties"]) for name, t in offered.items()}
    gold = []
    for turn in ground_truth:
        for text in turn:
            try:
                names = [name for name, _ in parse_call(text, order)]
            except ValueError as e:
                raise CatalogError(source, row["id"], str(e)) from None
            for name in names:
                if name not in offered:
                    raise CatalogError(source, row["id"], f"ground truth calls unknown function {name!r}")
                gold.append(offered[name])
    return BfclEntry(
        id=row["id"],
        category=category,
        turns=turns,
        pool=tuple(t for t in offered.values() if t not in hidden),
        ground_truth=ground_truth,
        gold=tuple(dict.fromkeys(gold)),
        initial_config=row.get("initial_config", {}),
        involved_classes=tuple(classes),
        held_out=held_out,
    )


def _agentic(row: dict, category: str, answer: dict, index: _Index, source: str) -> BfclEntry:
    (class_name,) = _involved(row, category)
    if category == "web_search":
        entry_id, config = row["id"], {class_name: {"show_snippet": True}}
    else:  # BFCL renames memory entries per backend: memory_0-customer-0 -> memory_kv_0-customer-0
        entry_id, config = row["id"].replace("memory", category, 1), {class_name: {"scenario": row.get("scenario")}}
    ground_truth = answer.get("ground_truth")
    if not isinstance(ground_truth, list) or not all(isinstance(a, str) for a in ground_truth):
        raise CatalogError(source, row["id"], "agentic ground truth must be a list of answer strings")
    return BfclEntry(
        id=entry_id,
        category=category,
        turns=_turns(row, source),
        pool=index.class_tools[class_name],
        ground_truth=ground_truth,
        initial_config=config,
        involved_classes=(class_name,),
    )


_BUILDERS = {
    "ast": _single_turn,
    "irrelevance": _single_turn,
    "relevance": _single_turn,
    "multi_turn": _multi_turn,
    "agentic": _agentic,
}


def entries_to_queries(entries: Iterable[BfclEntry]) -> list[Query]:
    """Retrieval queries: the first user message, gold and pool as tool ids (held-out tools included).

    Entries without gold tools (irrelevance, relevance and agentic categories) are skipped.
    """
    queries = []
    for entry in entries:
        if not entry.gold:
            continue
        text = next(m["content"] for turn in entry.turns for m in turn if m.get("role") == "user")
        pool = entry.pool + tuple(t for ids in entry.held_out.values() for t in ids)
        queries.append(Query(id=entry.id, text=text, gold=entry.gold, pool=pool, source=f"bfcl:{entry.category}"))
    return queries
