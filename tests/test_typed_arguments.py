"""Typed Action Input decoding: against a "model" that would rather write a string (or random tokens), integer,
number, boolean and enum parameters only get values of their type; valid values pass unchanged; the result always
parses as JSON matching the schema's types."""

import hashlib
import json

import pytest
import torch

from core.agent import AgentConfig, ArgumentsEvent, run_agent
from core.arguments import decode_arguments
from core.executors.base import validate_arguments
from core.prompts import encode
from core.tools import Tool
from core.typed_values import (
    BOOLEAN,
    INTEGER,
    JSON_STRING,
    MISSING,
    NUMBER,
    CopyBias,
    Literals,
    OneOf,
    ValueConstraint,
    value_grammar,
)
from tests.scripted_agent import WEATHER, RecordingExecutor, scripted

PROMPT_TEXT = "\nAction Input:"
SCHEMA = {
    "type": "object",
    "required": ["count", "flag", "ratio", "unit"],
    "properties": {
        "count": {"type": "integer"},
        "flag": {"type": "boolean"},
        "name": {"type": "string"},
        "ratio": {"type": "number"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
}
STRINGS_EVERYWHERE = ' {"count": "five", "flag": "yes", "name": "Oslo", "ratio": "half", "unit": "kelvin"}'
VALID = ' {"count": -12, "flag": false, "name": "a, b}", "ratio": 2.5e-3, "unit": "fahrenheit"}'


def seeded_noise(ids, size):
    seed = int(hashlib.sha1(str(list(ids)).encode()).hexdigest()[:8], 16)
    return torch.randn(size, generator=torch.Generator().manual_seed(seed))


def model_wanting(tokenizer, wanted: str | None):
    """next_logits: random (seeded by the ids), with a large bonus for continuing `wanted` while the text after
    the prompt is a prefix of it."""
    prompt = encode(tokenizer, PROMPT_TEXT)

    def next_logits(ids):
        logits = seeded_noise(ids, len(tokenizer))
        text = tokenizer.decode(list(ids)[len(prompt) :])
        if wanted is not None and wanted.startswith(text) and wanted != text:
            logits[encode(tokenizer, wanted[len(text) :])[0]] += 30.0
        return logits

    return prompt, next_logits


def decode(tokenizer, wanted, schema=SCHEMA, typed=True, max_tokens=96):
    prompt, next_logits = model_wanting(tokenizer, wanted)
    stop = frozenset({tokenizer.eos_token_id})
    return decode_arguments(next_logits, tokenizer, prompt, schema, max_tokens, stop, typed=typed)


def type_problems(arguments, schema=SCHEMA):
    tool = Tool(id="t&&t", category="", tool_name="t", api_name="t", description="", parameters=schema)
    return [p for p in validate_arguments(tool, arguments) if "missing" not in p]


def test_typed_parameters_never_receive_a_string(smollm2_tokenizer):
    untyped = decode(smollm2_tokenizer, STRINGS_EVERYWHERE, typed=False).arguments
    assert untyped["count"] == "five" and untyped["unit"] == "kelvin"  # what the model wants, unconstrained
    decoded = decode(smollm2_tokenizer, STRINGS_EVERYWHERE)
    arguments = decoded.arguments
    assert type(arguments["count"]) is int
    assert type(arguments["flag"]) is bool
    assert type(arguments["ratio"]) in (int, float)
    assert arguments["unit"] in ("celsius", "fahrenheit")
    assert type(arguments.get("name", "")) is str
    assert json.loads(decoded.text) == arguments and type_problems(arguments) == []


def test_valid_values_pass_unchanged(smollm2_tokenizer):
    for typed in (False, True):
        decoded = decode(smollm2_tokenizer, VALID, typed=typed)
        assert decoded.arguments == json.loads(VALID) and decoded.problem is None


@pytest.mark.parametrize("seed", range(12))
def test_a_random_model_always_gets_json_of_the_schemas_types(smollm2_tokenizer, seed):
    wanted = None if seed % 2 else STRINGS_EVERYWHERE[: 8 + seed * 6]  # random from the start, or after a while
    prompt, next_logits = model_wanting(smollm2_tokenizer, wanted)
    noisy = lambda ids: next_logits(ids) + seeded_noise([seed, *ids], len(smollm2_tokenizer))  # noqa: E731
    model = next_logits if seed < 6 else noisy
    decoded = decode_arguments(model, smollm2_tokenizer, prompt, SCHEMA, 96, typed=True)
    assert json.loads(decoded.text) == decoded.arguments and type_problems(decoded.arguments) == []
    # without a free string to spend the budget on, every typed value ends in a few tokens: all are there
    typed_only = {**SCHEMA, "properties": {k: v for k, v in SCHEMA["properties"].items() if k != "name"}}
    decoded = decode_arguments(model, smollm2_tokenizer, prompt, typed_only, 96, typed=True)
    assert decoded.problem is None and sorted(decoded.arguments) == ["count", "flag", "ratio", "unit"]
    assert json.loads(decoded.text) == decoded.arguments and type_problems(decoded.arguments, typed_only) == []


def test_grammars_accept_prefixes_and_parse_complete_values():
    assert all(INTEGER.accepts(t) for t in ("", " ", " -", " -1", "0", " 123456789012345"))
    assert not any(INTEGER.accepts(t) for t in (' "', "1.5", "01", "1e3", "true", " 1234567890123456"))
    assert [INTEGER.parse(t) for t in (" 7", "-0", " -", "")] == [7, 0, MISSING, MISSING]
    assert all(NUMBER.accepts(t) for t in (" -", " 2.", " 2.5e", " 2.5e-", " 2.5E+10", "0.0"))
    assert not any(NUMBER.accepts(t) for t in (" .5", " 2.5.1", " e3", " 1x"))
    assert [NUMBER.parse(t) for t in (" 2.5e-3", " 2.", " 3")] == [0.0025, MISSING, 3]
    assert BOOLEAN.accepts(" tr") and not BOOLEAN.accepts(" yes") and BOOLEAN.parse(" false") is False
    assert JSON_STRING.accepts(' "a, b\\') and JSON_STRING.accepts(' "a\\u00') and not JSON_STRING.accepts(' "a" x')
    assert JSON_STRING.parse(' "a\\nb"') == "a\nb" and JSON_STRING.parse(' "a') is MISSING
    assert value_grammar({"type": "string", "enum": ["a", "b"]}) == Literals(("a", "b"))
    union = value_grammar({"type": ["integer", "null"]})
    assert isinstance(union, OneOf) and union.parse(" null") is None and union.parse(" 4") == 4
    assert value_grammar({"type": "array"}).accepts("[1, ") and value_grammar({}).parse(' {"a": 1}') == {"a": 1}


def test_the_constraint_never_picks_special_or_tool_tokens(smollm2_tokenizer):
    tokenizer = smollm2_tokenizer
    tokenizer.add_tokens(["<<Weather&&current weather>>"])
    logits = torch.zeros(len(tokenizer))
    logits[len(tokenizer) - 1] = 50.0  # the added token
    logits[tokenizer.eos_token_id] = 40.0
    logits[encode(tokenizer, ' "')[0]] = 30.0
    logits[encode(tokenizer, "4")[0]] = 20.0
    assert ValueConstraint(INTEGER, tokenizer, frozenset()).choose([], logits) == encode(tokenizer, "4")[0]
    assert ValueConstraint(JSON_STRING, tokenizer, frozenset()).choose([], logits) == encode(tokenizer, ' "')[0]


def test_the_agent_option_types_the_arguments(setup):
    _, build = setup
    script = [("Weather.", WEATHER, {"q": 5})]  # the toy tools' "q" is a string
    runs = [
        list(run_agent(scripted(build, script), "Weather?", RecordingExecutor(), [WEATHER], config))
        for config in (AgentConfig(max_steps=1), AgentConfig(max_steps=1, typed_arguments=True, max_argument_tokens=12))
    ]
    plain, typed = runs
    untyped_call = next(e for e in plain if isinstance(e, ArgumentsEvent))
    typed_call = next(e for e in typed if isinstance(e, ArgumentsEvent))
    assert untyped_call.arguments == {"q": 5} and untyped_call.problems
    assert isinstance(typed_call.arguments["q"], str) and typed_call.problems == []


def test_the_copy_bias_leans_string_values_toward_the_request(smollm2_tokenizer):
    tokenizer = smollm2_tokenizer
    schema = {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}
    wanted, prompt = ' {"city": "Paris"}', encode(tokenizer, PROMPT_TEXT)
    request = "What is the weather in Oslo?"

    def model(ids):  # mild noise; a preference of 3 for "Paris"
        logits = seeded_noise(ids, len(tokenizer)) * 0.3
        text = tokenizer.decode(list(ids)[len(prompt) :])
        if wanted.startswith(text) and wanted != text:
            logits[encode(tokenizer, wanted[len(text) :])[0]] += 30.0 if '"P' not in wanted[len(text) - 1 :] else 3.0
        return logits

    def decode_with(bonus):
        copy = CopyBias(tokenizer, request, bonus) if bonus else None
        return decode_arguments(model, tokenizer, prompt, schema, 24, typed=True, copy=copy)

    assert decode_with(0).arguments == {"city": "Paris"}
    copied = decode_with(6.0)
    assert copied.problem is None and copied.arguments["city"] and copied.arguments["city"] in request  # a span, closed
    logits = torch.zeros(len(tokenizer))
    bias = CopyBias(tokenizer, request, 5.0)
    assert torch.equal(bias(" 12", logits), logits) and torch.equal(bias(' "Oslo"', logits), logits)
    inside = bias(' "Os', logits)
    assert inside[encode(tokenizer, "lo")[0]] == 5.0 and inside[encode(tokenizer, "car")[0]] == 0.0
    with pytest.raises(ValueError):
        AgentConfig(copy_bonus=2.0)  # needs typed_arguments
