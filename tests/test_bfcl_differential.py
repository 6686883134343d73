"""Our BFCL AST checker (eval/bfcl_checker.py) against bfcl_eval's own `ast_checker`, on the packaged ground truth.

Both checkers judge the ground truth itself (every entry of every AST category; both must accept it) and
systematically perturbed calls (wrong value or type, dropped or extra parameter, other function, call count, ...)
on an evenly spread sample of each category; the verdicts must be the same.
"""

from __future__ import annotations

import json
import sys
from functools import partial
from types import ModuleType, SimpleNamespace
from unittest import mock

import pytest

from core.bfcl import AST_CATEGORIES, default_data_dir, function_name, load_bfcl_catalog, load_bfcl_entries
from core.splits import spread
from eval.bfcl_checker import check_ast

SAMPLE_PER_CATEGORY = 40
MODEL_NAME = "differential-test"
# Entries whose ground truth (each parameter at its first acceptable value) bfcl_eval's checker rejects, and ours
# with it: defects of the packaged data, not of either checker.
REJECTED_GROUND_TRUTH = {
    "parallel_multiple_12": "names 'permeability', which calculate_voltage_difference does not define",
    "parallel_multiple_26": "names 'type', which bank.calculate_balance does not define",
    "live_simple_106-63-0": "leaves out the required 'auto_loan_payment_start'",
    "live_simple_112-68-0": "leaves out the required 'acc_routing_start'",
    "live_multiple_507-149-4": "leaves out the required 'origin_airport'",
    "live_multiple_862-181-3": "names 'journey_start_time', which Trains_1_FindTrains does not define",
    "live_multiple_964-207-0": "leaves out the required 'statement'",
}


@pytest.fixture(scope="module")
def bfcl_ast_checker():
    """bfcl_eval's `ast_checker`, imported with one stub module.

    Its module imports `bfcl_eval.constants.model_config`, which imports every API model handler and with them
    client packages we do not install (anthropic, openai, ...). The checker reads that module's
    MODEL_CONFIG_MAPPING only in `convert_func_name`, to learn whether the model's API turns "." in function
    names into "_"; the stub answers "no" for our model name. sys.modules is restored afterwards, so no other
    test sees the stub (the imported checker keeps its own reference to it).
    """
    stub = ModuleType("bfcl_eval.constants.model_config")
    stub.MODEL_CONFIG_MAPPING = {MODEL_NAME: SimpleNamespace(underscore_to_dot=False)}
    with mock.patch.dict(sys.modules, {"bfcl_eval.constants.model_config": stub}):
        from bfcl_eval.constants.enums import Language
        from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker

    def check(functions, calls, ground_truth, category) -> bool:
        output = [{name: arguments} for name, arguments in calls]
        return ast_checker(functions, output, ground_truth, Language.PYTHON, category, MODEL_NAME)["valid"]

    return check


@pytest.fixture(scope="module")
def catalog():
    return load_bfcl_catalog()


def raw_functions(category: str) -> dict[str, list]:
    """Entry id -> the function documents exactly as the packaged file gives them (what bfcl_eval checks with)."""
    path = default_data_dir() / f"BFCL_v4_{category}.json"
    rows = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return {row["id"]: row["function"] for row in rows}


LEFT_OUT = object()


def first_acceptable(options: list):
    """The first acceptable value that is not "" (may be left out), else LEFT_OUT."""
    return next((option for option in options if option != ""), LEFT_OUT)


def call_arguments(acceptable: dict) -> dict:
    """Arguments at their first acceptable values. A dict's (or a list of dicts') acceptable value lists the
    acceptable values of each key, one level deep, as bfcl_eval's dict checkers read it: resolved the same way."""

    def resolve(value):
        if isinstance(value, dict):
            return {key: v for key, options in value.items() if (v := first_acceptable(options)) is not LEFT_OUT}
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            return [resolve(item) for item in value]
        return value

    return {
        param: resolve(value)
        for param, options in acceptable.items()
        if (value := first_acceptable(options)) is not LEFT_OUT
    }


def ground_truth_calls(ground_truth: list[dict]) -> list[tuple[str, dict]]:
    """One call per ground-truth item, each parameter at its first acceptable value."""
    return [(name, call_arguments(params)) for item in ground_truth for name, params in item.items()]


def wrong_value(value):
    """A value of the same JSON type that no ground truth accepts."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1000
    if isinstance(value, str):
        return value + "x9q"
    if isinstance(value, list):
        return value + value[:1] if value else ["x9q"]
    if isinstance(value, dict):
        return {**value, "x9q": 1}
    return "x9q"


def other_type(value):
    """The same value under another JSON type (what a model writes when it quotes a number, etc.)."""
    if isinstance(value, str):
        return 7
    return json.dumps(value)


def replaced(calls: list, i: int, name: str, arguments: dict) -> list:
    """`calls` with call i replaced by (name, arguments)."""
    return [*calls[:i], (name, arguments), *calls[i + 1 :]]


def perturbations(calls: list[tuple[str, dict]], ground_truth: list[dict], schemas: dict[str, dict]):
    """(kind, calls) pairs, each one systematic change of the ground-truth calls."""
    for i, (name, arguments) in enumerate(calls):
        replace = partial(replaced, calls, i)
        for param, value in arguments.items():
            rest = {k: v for k, v in arguments.items() if k != param}
            yield "wrong value", replace(name, {**rest, param: wrong_value(value)})
            yield "wrong type", replace(name, {**rest, param: other_type(value)})
            yield "parameter dropped", replace(name, rest)
            if isinstance(value, str):
                yield "case and spacing", replace(name, {**rest, param: value.upper() + " "})
            if isinstance(value, int) and not isinstance(value, bool):
                yield "float for int", replace(name, {**rest, param: float(value)})
            if isinstance(value, float) and value.is_integer():
                yield "int for float", replace(name, {**rest, param: int(value)})
            if isinstance(value, list) and value:
                yield "wrong item", replace(name, {**rest, param: [wrong_value(value[0]), *value[1:]]})
                yield "item types", replace(name, {**rest, param: [other_type(item) for item in value]})
            if isinstance(value, dict) and value:
                yield "dict key dropped", replace(name, {**rest, param: dict(list(value.items())[1:])})
            if isinstance(value, list) and value and isinstance(value[0], dict) and value[0]:
                yield "dict key dropped", replace(name, {**rest, param: [dict(list(value[0].items())[1:]), *value[1:]]})
        for param, options in ground_truth[i][name].items():
            for option in options:  # every acceptable value, "" meaning left out
                rest = {k: v for k, v in arguments.items() if k != param}
                yield "acceptable value", replace(name, {**rest, **call_arguments({param: [option]})})
        for param in schemas[name].get("required", []):
            yield "missing required", replace(name, {k: v for k, v in arguments.items() if k != param})
        yield "extra parameter", replace(name, {**arguments, "x9q_extra": 1})
        for other in sorted(set(schemas) - {name}):
            yield "other offered function", replace(other, arguments)
        yield "unknown function", replace("x9q_function", arguments)
    yield "no call", []
    yield "extra call", calls + calls[:1]
    if len(calls) > 1:
        yield "call dropped", calls[1:]
        yield "calls reversed", calls[::-1]


@pytest.mark.parametrize("category", AST_CATEGORIES)
def test_verdicts_match_bfcl_eval(category, catalog, bfcl_ast_checker):
    functions = raw_functions(category)
    entries = load_bfcl_entries([category])
    disagreements, rejected = [], []

    def compare(entry, kind, calls) -> None:
        tools = [catalog[t] for t in entry.pool]
        ours = check_ast(calls, entry.ground_truth, tools, category)
        theirs = bfcl_ast_checker(functions[entry.id], calls, entry.ground_truth, category)
        if not theirs:
            rejected.append(entry.id)
        if ours.valid != theirs:
            disagreements.append(
                f"{entry.id} ({kind}): ours {ours.valid} {ours.error_type}, bfcl_eval {theirs}: {calls!r}"
            )

    for entry in entries:
        compare(entry, "ground truth", ground_truth_calls(entry.ground_truth))
    assert not disagreements, "\n".join(disagreements[:10])
    assert set(rejected) == set(REJECTED_GROUND_TRUTH) & set(functions)  # both accept the rest of the truth
    checked, rejected = 0, []
    for entry in spread(entries, SAMPLE_PER_CATEGORY):
        schemas = {function_name(catalog[t]): catalog[t].parameters for t in entry.pool}
        for kind, calls in perturbations(ground_truth_calls(entry.ground_truth), entry.ground_truth, schemas):
            compare(entry, kind, calls)
            checked += 1
    assert not disagreements, "\n".join(disagreements[:10])
    assert len(rejected) > checked // 2  # most perturbations are wrong answers: the sample has teeth
