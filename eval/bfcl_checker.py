"""BFCL v4 correctness checks, following the definitions of the `bfcl_eval` checkers (own code).

- AST (single turn): right function name(s); every required parameter present; no parameter outside the
  schema or the ground truth; every value one of the acceptable values, with BFCL's rules: an int is
  accepted for a float, strings compare after `standardize_string`, lists and dicts compare element-wise
  (strings standardised), "" among the acceptable values means "may be left out" (and, as in BFCL, an
  empty list then also matches). Parallel categories match calls in any order; "multiple" and simple
  categories need exactly the ground truth's number of calls. Arguments are JSON values: a Python tuple is
  not a list here (BFCL accepts tuples only for its "tuple" parameters, which the JSON schema calls arrays).
- relevance: irrelevance categories are correct when no call is made, live_relevance when one is.
- multi turn: model and ground-truth calls run on two fresh backend sets with the same initial config;
  after every turn with ground-truth calls, the model must have made a call in that turn, the backends'
  public attributes must be equal, and every ground-truth result of the turn must appear among the
  model's results so far (as a multiset). Task accuracy = every turn passes.
- agentic: one acceptable answer must appear (standardised, as a whole word) in the final answer.
Calls are `(function_name, arguments)` pairs; function names are BFCL names (see `core.bfcl.function_name`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.bfcl import BfclEntry, function_name, parse_call
from core.executors.bfcl import BfclExecutor
from core.tools import Tool, ToolCatalog

Call = tuple[str, dict]

_PYTHON_TYPES = {"string": str, "integer": int, "number": float, "boolean": bool, "array": list, "object": dict}


@dataclass(frozen=True)
class CheckResult:
    """valid, and when not: a readable error and BFCL-style error type such as 'value_error:string'."""

    valid: bool
    error: str = ""
    error_type: str = ""


_OK = CheckResult(True)


def standardize_string(text: str) -> str:
    """BFCL's string normalisation: drop spaces and ,./-_*^ characters, lower-case, ' -> "."""
    return re.sub(r"[ ,./\-_*^]", "", text).lower().replace("'", '"')


def _std(value: object) -> object:
    return standardize_string(value) if isinstance(value, str) else value


# ---------------------------------------------------------------- AST


def _python_type(spec: dict | None) -> type:
    """The Python type BFCL expects; a schema without a known type is BFCL's "any", checked as str."""
    return _PYTHON_TYPES.get((spec or {}).get("type"), str)


def _items_typed(value: list, answers: list, item_type: type) -> bool:
    """BFCL's one-level nested type check: all items have the item type or that of some answer's items."""
    for answer in answers:
        if not isinstance(answer, list):  # a non-list answer ("" = optional) imposes no item type
            return True
        answer_type = next((type(a) for a in answer if a != ""), None)
        if all(type(item) is item_type or type(item) is answer_type for item in value):
            return True
    return False


def _dict_matches(value: object, answer: object) -> bool:
    if not isinstance(value, dict) or not isinstance(answer, dict):
        return False
    for key, item in value.items():
        if key not in answer or _std(item) not in [_std(a) for a in answer[key]]:
            return False
    return all(key in value or "" in options for key, options in answer.items())


def _as_list(answer: object) -> list | None:
    """An acceptable list value; "" (optional) counts as the empty list, as in BFCL."""
    return [] if answer == "" else answer if isinstance(answer, list) else None


def _check_value(param: str, value: object, spec: dict, answers: list) -> CheckResult:
    expected = _python_type(spec)
    item_type = _python_type(spec["items"]) if expected is list and isinstance(spec.get("items"), dict) else None
    if expected is float and type(value) is int:
        value = float(value)
    answer_type = next((type(a) for a in answers if a != ""), None)
    # BFCL: when the answers' type differs from the schema type, values are "variables" compared as-is
    is_variable = answer_type is not None and answer_type is not expected
    if type(value) is expected:
        if item_type is not None and not _items_typed(value, answers, item_type):
            return CheckResult(
                False, f"items of {param!r} should be {item_type.__name__}: {value!r}", "type_error:nested"
            )
    elif answer_type is not None and type(value) is answer_type:
        is_variable = True
    else:
        return CheckResult(
            False,
            f"{param!r} should be {expected.__name__}, got {type(value).__name__}: {value!r}",
            "type_error:simple",
        )
    if is_variable:
        matched, kind = value in answers, "others"
    elif expected is dict:
        matched, kind = any(_dict_matches(value, a) for a in answers if a != ""), "dict_value"
    elif expected is list and item_type is dict:
        matched, kind = (
            any(
                len(a) == len(value) and all(_dict_matches(v, d) for v, d in zip(value, a))
                for a in map(_as_list, answers)
                if a is not None
            ),
            "list_dict",
        )
    elif expected is str:
        options = [standardize_string(a) for a in answers if isinstance(a, str)]
        matched, kind = standardize_string(value) in options, "string"
    elif expected is list:
        matched, kind = (
            [_std(v) for v in value] in [[_std(x) for x in a] for a in map(_as_list, answers) if a is not None],
            "list",
        )
    else:
        matched, kind = value in answers, "others"
    if matched:
        return _OK
    return CheckResult(False, f"{param!r}={value!r} is not one of {answers!r}", f"value_error:{kind}")


def check_call(call: Call, expected: dict, schema: dict) -> CheckResult:
    """Check one call against one ground-truth item `{function_name: {param: [acceptable values]}}`."""
    ((name, answers),) = expected.items()
    if not (isinstance(call, (tuple, list)) and len(call) == 2):
        return CheckResult(False, f"not a (name, arguments) pair: {call!r}", "simple_function_checker:bad_call")
    called, arguments = call
    if called != name:
        return CheckResult(False, f"called {called!r}, expected {name!r}", "simple_function_checker:wrong_func_name")
    if not isinstance(arguments, dict):
        return CheckResult(False, f"arguments of {name} are not an object", "simple_function_checker:bad_arguments")
    properties = schema.get("properties", {})
    for param in schema.get("required", []):
        if param not in arguments:
            return CheckResult(
                False, f"{name}: missing required parameter {param!r}", "simple_function_checker:missing_required"
            )
    for param, value in arguments.items():
        if param not in properties or param not in answers:
            return CheckResult(
                False, f"{name}: unexpected parameter {param!r}", "simple_function_checker:unexpected_param"
            )
        result = _check_value(param, value, properties[param], answers[param])
        if not result.valid:
            return result
    for param, options in answers.items():
        if param not in arguments and "" not in options:
            return CheckResult(
                False, f"{name}: parameter {param!r} must be given", "simple_function_checker:missing_optional"
            )
    return _OK


def check_ast(calls: Sequence[Call], ground_truth: list[dict], tools: Iterable[Tool], category: str) -> CheckResult:
    """BFCL AST check of one single-turn answer; `tools` are the functions the entry offered."""
    schemas = {function_name(tool): tool.parameters for tool in tools}
    for item in ground_truth:
        if next(iter(item)) not in schemas:
            raise ValueError(f"ground truth function {next(iter(item))!r} is not among the offered tools")
    if len(calls) != len(ground_truth):
        return CheckResult(False, f"{len(calls)} calls, expected {len(ground_truth)}", "ast:wrong_count")
    if "parallel" not in category:
        return check_call(calls[0], ground_truth[0], schemas[next(iter(ground_truth[0]))])
    unmatched = list(range(len(calls)))
    for item in ground_truth:  # greedy, in ground-truth order, like BFCL
        schema = schemas[next(iter(item))]
        match = next((i for i in unmatched if check_call(calls[i], item, schema).valid), None)
        if match is None:
            return CheckResult(False, f"no call matches {item!r}", "parallel:cannot_find_match")
        unmatched.remove(match)
    return _OK


def check_relevance(calls: Sequence[Call], category: str) -> CheckResult:
    """Irrelevance: correct when no call is made; live_relevance: correct when at least one is."""
    if "irrelevance" in category:
        return _OK if not calls else CheckResult(False, f"made {len(calls)} call(s)", "irrelevance_error")
    return _OK if calls else CheckResult(False, "made no call", "relevance_error")


# ---------------------------------------------------------------- multi turn


def _state_differences(model: BfclExecutor, gold: BfclExecutor) -> list[str]:
    differences = []
    model_state = model.state()
    for class_name, gold_attrs in gold.state().items():
        model_attrs = model_state.get(class_name, {})
        differences += [
            f"{class_name}.{attr}"
            for attr in gold_attrs.keys() | model_attrs.keys()
            if model_attrs.get(attr, ...) != gold_attrs.get(attr, ...)
        ]
    return sorted(differences)


def check_multi_turn(
    model_turns: Sequence[Sequence[Call]],
    ground_truth: Sequence[Sequence[str]],
    initial_config: dict | None,
    involved_classes: Sequence[str],
    long_context: bool = False,
) -> CheckResult:
    """BFCL multi-turn check: `model_turns[i]` are the model's calls in turn i (all steps, in order)."""
    if len(model_turns) != len(ground_truth):
        return CheckResult(
            False, f"{len(model_turns)} turns, expected {len(ground_truth)}", "multi_turn:force_terminated"
        )
    model, gold = (BfclExecutor(initial_config or {}, involved_classes, long_context, max_chars=None) for _ in range(2))
    order = gold.param_order
    model_results: list[str] = []
    for turn, (calls, gold_texts) in enumerate(zip(model_turns, ground_truth)):
        model_results += [model.execute(name, arguments).content for name, arguments in calls]
        gold_calls = [call for text in gold_texts for call in parse_call(text, order)]
        gold_results = [gold.execute(name, arguments).content for name, arguments in gold_calls]
        if not gold_texts:  # a turn where the request cannot be fulfilled; nothing to compare
            continue
        if not calls:
            return CheckResult(False, f"turn {turn}: no call made", "multi_turn:empty_turn_model_response")
        differences = _state_differences(model, gold)
        if differences:
            return CheckResult(
                False, f"turn {turn}: state differs in {', '.join(differences)}", "multi_turn:instance_state_mismatch"
            )
        missing = Counter(gold_results) - Counter(model_results)
        if missing:
            return CheckResult(
                False,
                f"turn {turn}: missing results {list(missing.elements())[:3]!r}",
                "multi_turn:execution_response_mismatch",
            )
    return _OK


# ---------------------------------------------------------------- agentic and dispatch


def _standardize_answer(text: str) -> str:
    """BFCL's agentic normalisation: like `standardize_string` but keeps spaces and also drops brackets."""
    return re.sub(r"[,./\-_*^()]", "", text).lower().replace("'", '"')


def check_agentic(answer: str, possible_answers: Sequence[str]) -> CheckResult:
    """Correct when a possible answer occurs, as whole words, in the standardised final answer."""
    response = _standardize_answer(str(answer))
    if any(re.search(rf"\b{re.escape(_standardize_answer(p))}\b", response) for p in possible_answers):
        return _OK
    return CheckResult(False, f"none of {list(possible_answers)!r} in the answer", "agentic:answer_not_found")


def check_entry(entry: BfclEntry, output, catalog: ToolCatalog) -> CheckResult:
    """Check a model's output for `entry`: calls (single turn), calls per turn (multi turn) or an answer text."""
    kind = entry.kind
    if kind == "ast":
        return check_ast(output, entry.ground_truth, (catalog[t] for t in entry.pool), entry.category)
    if kind in ("irrelevance", "relevance"):
        return check_relevance(output, entry.category)
    if kind == "multi_turn":
        return check_multi_turn(
            output,
            entry.ground_truth,
            entry.initial_config,
            entry.involved_classes,
            long_context=entry.category == "multi_turn_long_context",
        )
    return check_agentic(output, entry.ground_truth)
