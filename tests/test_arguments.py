"""Schema-guided Action Input decoding against a scripted "model" that wants to write a given text."""

import torch

from core.arguments import FINISH_SCHEMA, decode_arguments
from core.prompts import encode

PROMPT_TEXT = "\nAction Input:"
FALLBACK_VALUE = " 7}"  # what the scripted model writes after a key it did not plan


def scripted(tokenizer, wanted: str):
    """next_logits that continue `wanted` while the text after the prompt is a prefix of it; after any other key
    it writes FALLBACK_VALUE; otherwise it prefers the end-of-text token."""
    prompt = encode(tokenizer, PROMPT_TEXT)

    def next_logits(ids):
        text = tokenizer.decode(list(ids)[len(prompt) :])
        if wanted.startswith(text) and wanted != text:
            target = encode(tokenizer, wanted[len(text) :])[0]
        elif '":' in text and FALLBACK_VALUE.startswith(after := text.rsplit('":', 1)[1]) and after != FALLBACK_VALUE:
            target = encode(tokenizer, FALLBACK_VALUE[len(after) :])[0]
        else:
            target = tokenizer.eos_token_id
        logits = torch.zeros(len(tokenizer))
        logits[target] = 10.0
        return logits

    return prompt, next_logits


def decode(tokenizer, wanted, schema, max_tokens=64):
    prompt, next_logits = scripted(tokenizer, wanted)
    return decode_arguments(next_logits, tokenizer, prompt, schema, max_tokens, frozenset({tokenizer.eos_token_id}))


def schema(required, optional=()):
    return {
        "type": "object",
        "required": list(required),
        "properties": {name: {"type": "string"} for name in [*required, *optional]},
    }


def test_the_model_writes_the_values(smollm2_tokenizer):
    decoded = decode(smollm2_tokenizer, ' {"items": [1, 2], "name": "a, b}"}', schema(["name"], ["items"]))
    assert decoded.arguments == {"items": [1, 2], "name": "a, b}"} and decoded.problem is None
    assert decoded.text == ' {"items": [1, 2], "name": "a, b}"}'


def test_keys_come_only_from_the_schema(smollm2_tokenizer):
    decoded = decode(smollm2_tokenizer, ' {"final_answer": "I cannot help."}', schema(["symbol"]))
    assert decoded.arguments == {"symbol": 7}  # the key was forced; the value is the model's


def test_closing_early_still_gives_every_required_parameter(smollm2_tokenizer):
    decoded = decode(smollm2_tokenizer, ' {"a": "x"}', schema(["a", "b"], ["c"]))
    assert decoded.arguments == {"a": "x", "b": 7}


def test_empty_objects(smollm2_tokenizer):
    assert decode(smollm2_tokenizer, ' {"a": "x"}', {"type": "object", "properties": {}}).arguments == {}
    assert decode(smollm2_tokenizer, " {}", schema([], ["a"])).arguments == {}
    assert decode(smollm2_tokenizer, ' {"a": "x"}', schema([], ["a"])).arguments == {"a": "x"}


def test_a_value_out_of_budget_is_reported_and_a_cut_string_kept(smollm2_tokenizer):
    answer = "word " * 40
    decoded = decode(smollm2_tokenizer, ' {"final_answer": "' + answer + '"}', FINISH_SCHEMA, max_tokens=8)
    assert decoded.problem and "final_answer" in decoded.problem and "kept" in decoded.problem
    assert answer.startswith(decoded.arguments["final_answer"]) and len(decoded.arguments["final_answer"]) > 5
    stopped = decode(smollm2_tokenizer, ' {"n": 12', schema(["n"]))  # then the end-of-text token
    assert stopped.arguments == {} and "'n'" in stopped.problem
