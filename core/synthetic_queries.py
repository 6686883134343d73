"""Template queries made from tool documentation, for the retrieval stage's tools that lack real queries.

- `synthetic_queries(tool, n)`: one-intent requests ("I need to retrieve the stock price.") filled from the
  tool's description, api and tool names and parameter names.
- `paired_queries(catalog, per_tool)`: two-intent requests joining two related tools, like the real
  multi-tool requests.
- `tool_task(tool)`: what the tool does, as an imperative (also the templated thought of training trajectories).

Everything is seeded by the tool id, so a tool's queries do not depend on the rest of the catalog.
"""

from __future__ import annotations

import hashlib
import random
import re

from .tools import Query, Tool


def _words(name: str) -> str:
    """An identifier as plain words: `get_stock_price` / `getStockPrice` / `/v1/stock` -> `get stock price`."""
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name.split("#", 1)[0].rsplit(".", 1)[-1])
    return " ".join(re.sub(r"[^0-9A-Za-z]+", " ", name).split()).lower()


def _first_sentence(text: str, max_words: int = 24) -> str:
    sentence = re.split(r"(?<=[.!?])\s", " ".join(text.split()), maxsplit=1)[0].rstrip(".!? ")
    return " ".join(sentence.split()[:max_words])


def _task(tool: Tool, max_words: int = 24) -> str:
    """What the tool does: the first sentence of its description (after BFCL's "Tool description:"), without
    a leading "This function/tool/API"."""
    task = _first_sentence(tool.description.split("Tool description:", 1)[-1], max_words)
    return _SUBJECT.sub("", task)


_SUBJECT = re.compile(r"^(this|the) (function|tool|api|endpoint|method) (will )?", re.IGNORECASE)


_NOT_VERBS = {"this", "is", "was", "has", "its", "news", "status", "access", "process", "analysis"}


def _imperative(task: str) -> str:
    """`Retrieves the list` -> `retrieve the list`: lower-case first letter, third-person verb to base form."""
    if not task:
        return task
    first, _, rest = task.partition(" ")
    word = first.lower() if not first[1:2].isupper() else first
    if word.isalpha() and word not in _NOT_VERBS and len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        if word.endswith("ies"):
            word = word[:-3] + "y"
        elif word.endswith(("ches", "shes", "sses", "xes")):
            word = word[:-2]
        else:
            word = word[:-1]
    return f"{word} {rest}".strip()


# Templates over: {Task} what the tool does, {task} the same as an imperative, {api} and {tool} the api
# and tool names as words (a leading get/fetch/retrieve dropped from {api}), {params} up to two parameter
# names as words. BFCL's catch-all namespace "bfcl" says nothing, so the {tool} templates skip it.
_TEMPLATES_WITH_TASK = (
    "{Task}.",
    "I need to {task}.",
    "Can you {task}?",
    "Please help me: {task}.",
    "I want to use {tool} to {task}.",
    "{Task}. My {params} {are} given.",
)
_TEMPLATES_WITHOUT_TASK = (
    "Use {tool} to get the {api}.",
    "I need the {api} from {tool}.",
    "Can you get me the {api}?",
    "Find the {api} for my {params}.",
)


def synthetic_queries(tool: Tool, n: int, seed: int = 0) -> list[str]:
    """Up to `n` distinct template queries for `tool`, made from its documentation.

    Method: fill the templates above with what the tool does (`_task`: the description's first sentence, at
    most 24 words; as an imperative in "to {task}" positions), its
    api and tool names as words and up to two parameter names; the templates needing a description are used
    only when it has one, the parameter templates only when it has parameters. `n` templates are drawn
    without replacement with `random.Random(sha1(f"{seed}:{tool.id}"))`, so a tool's queries do not depend
    on the rest of the catalog.
    """
    task = _task(tool)
    params = [_words(p) for p in (tool.parameters.get("properties") or {})][:2]
    fields = {
        "task": _imperative(task),
        "Task": task[:1].upper() + task[1:],
        "api": re.sub(r"^(get|fetch|retrieve) ", "", _words(tool.api_name)),
        "tool": _words(tool.tool_name) or tool.tool_name,
        "params": " and ".join(params),
        "are": "are" if len(params) > 1 else "is",
    }
    templates = [
        t
        for t in (_TEMPLATES_WITH_TASK if task else ()) + _TEMPLATES_WITHOUT_TASK
        if (params or "{params}" not in t) and (tool.tool_name != "bfcl" or "{tool}" not in t)
    ]
    rng = random.Random(hashlib.sha1(f"{seed}:{tool.id}".encode()).hexdigest())
    chosen = rng.sample(templates, min(n, len(templates)))
    return list(dict.fromkeys(template.format(**fields) for template in chosen))


_PAIR_TEMPLATES = (
    "Can you {a}? Additionally, I would like to {b}.",
    "I need to {a} and {b}.",
    "Please {a}. Also, {b}.",
    "Help me {a}, then {b}.",
)


def tool_task(tool: Tool, max_words: int = 16) -> str:
    """What the tool does as an imperative ("retrieve the list of …"); "" when it has no description."""
    return _imperative(_task(tool, max_words))


def _request(tool: Tool) -> str:
    """What the tool does as an imperative, or "get the <api name>" when it has no description."""
    return tool_task(tool) or f"get the {_words(tool.api_name)}"


def paired_queries(catalog, per_tool: int, seed: int = 0) -> list[Query]:
    """Two-intent synthetic queries like the real multi-tool requests: each tool is asked for together with
    `per_tool` partners, drawn (seeded by the tool id) from the tools sharing its tool name, else its
    category, else the whole catalog; one of the templates above joins the two requests. Gold: both tools."""
    groups: dict[str, list[str]] = {}
    for tool in catalog:
        groups.setdefault(f"tool:{tool.tool_name}", []).append(tool.id)
        groups.setdefault(f"category:{tool.category}", []).append(tool.id)
    queries = []
    for tool in catalog:
        rng = random.Random(hashlib.sha1(f"pair:{seed}:{tool.id}".encode()).hexdigest())
        partners = next(
            (
                ids
                for ids in (groups[f"tool:{tool.tool_name}"], groups[f"category:{tool.category}"], catalog.ids)
                if len(ids) > 1
            ),
            [],
        )
        for number in range(per_tool if len(partners) > 1 else 0):
            partner = catalog[rng.choice([p for p in partners if p != tool.id])]
            text = rng.choice(_PAIR_TEMPLATES).format(a=_request(tool), b=_request(partner))
            queries.append(
                Query(id=f"pair:{tool.id}:{number}", text=text, gold=(tool.id, partner.id), source="synthetic")
            )
    return queries
