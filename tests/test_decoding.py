"""Constrained beam search and sampling: real log-probs, exactness, batching, pools, traces, HF agreement."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LogitsProcessorList

from core.constraint import CodeTrie, ToolConstraintLogitsProcessor
from core.decoding import (
    constrained_beam_search,
    constrained_beam_search_batch,
    constrained_sample,
    top_single_token_codes,
)
from core.indexing import build_indexing
from tests.helpers import peaked_llama

pytestmark = pytest.mark.usefixtures("one_thread")

END = 0
VOCAB = 64
MIXED_CODES = {f"t{i}": (10 + i % 4, 20 + i // 4) + ((30,) if i % 3 else (31, 32)) for i in range(12)}
EQUAL_CODES = {f"t{i}": (10 + i % 5, 20 + i // 5, 30) for i in range(20)}
ATOMIC_CODES = {f"t{i}": (20 + i,) for i in range(40)}
PROMPT = [41, 42, 43, 44]


@pytest.fixture(scope="module")
def model():
    return peaked_llama(VOCAB)


def teacher_forced_log_prob(model, prompt: list[int], code: tuple[int, ...] | list[int]) -> float:
    """log P(code | prompt) from one full forward pass without cache, log-softmax over the full vocabulary."""
    with torch.no_grad():
        logits = model(torch.tensor([list(prompt) + list(code)])).logits[0].float()
    log_probs = torch.log_softmax(logits, dim=-1)
    return float(sum(log_probs[len(prompt) - 1 + i, t] for i, t in enumerate(code)))


def test_scores_are_teacher_forced_log_probs(model):
    trie = CodeTrie(MIXED_CODES)
    result = constrained_beam_search(model, PROMPT, trie, num_beams=3, top_k=5)
    assert len(result.candidates) == 5
    scores = [c.log_prob for c in result.candidates]
    assert scores == sorted(scores, reverse=True)
    assert len(set(result.tool_ids)) == 5
    for c in result.candidates:
        assert tuple(c.token_ids) == trie.codes[c.tool_id]
        assert c.log_prob == pytest.approx(teacher_forced_log_prob(model, PROMPT, c.token_ids), abs=1e-4)


def test_wide_beam_returns_the_exact_top_k(model):
    trie = CodeTrie(MIXED_CODES)
    exact = sorted(trie.codes, key=lambda t: -teacher_forced_log_prob(model, PROMPT, trie.codes[t]))
    result = constrained_beam_search(model, PROMPT, trie, num_beams=len(trie), top_k=6)
    assert result.tool_ids == exact[:6]


def test_atomic_top_k_beyond_num_beams_is_exact_in_one_forward(model):
    trie = CodeTrie(ATOMIC_CODES)
    result = constrained_beam_search(model, PROMPT, trie, num_beams=3, top_k=15)
    assert result.forward_passes == 1 and len(result.steps) == 1
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.tensor([PROMPT])).logits[0, -1], dim=-1)
    ids = trie.allowed(())
    best = ids[log_probs[ids].topk(15).indices].tolist()
    assert [c.token_ids[0] for c in result.candidates] == best
    assert [c.log_prob for c in result.candidates] == pytest.approx(log_probs[best].tolist(), abs=1e-5)
    ranked = top_single_token_codes(log_probs, trie, 15)  # the same ranking from log-probs a caller already has
    assert [(c.tool_id, c.token_ids) for c in ranked] == [(c.tool_id, c.token_ids) for c in result.candidates]
    assert [c.log_prob for c in ranked] == pytest.approx([c.log_prob for c in result.candidates], abs=1e-5)
    with pytest.raises(ValueError, match="constrained_beam_search"):
        top_single_token_codes(log_probs, CodeTrie(EQUAL_CODES), 5)


def test_agrees_with_hf_generate_beam_search(model):
    trie = CodeTrie(EQUAL_CODES)
    for prompt in ([41, 42, 43], [50, 51], [33, 34, 35, 36, 37]):
        inputs = torch.tensor([prompt])
        out = model.generate(
            inputs,
            logits_processor=LogitsProcessorList([ToolConstraintLogitsProcessor(trie, len(prompt), END)]),
            num_beams=4,
            num_return_sequences=4,
            do_sample=False,
            max_new_tokens=trie.depth + 1,
            eos_token_id=END,
            pad_token_id=END,
            length_penalty=0.0,
            output_scores=True,
            return_dict_in_generate=True,
        )
        hf_tools = [trie.tool_at(tuple(row[len(prompt) : len(prompt) + trie.depth])) for row in out.sequences.tolist()]
        ours = constrained_beam_search(model, prompt, trie, num_beams=4, record_steps=False)
        assert ours.tool_ids == hf_tools
        assert [c.log_prob for c in ours.candidates] == pytest.approx(out.sequences_scores.tolist(), abs=1e-4)


def test_batch_with_left_padding_matches_single_prompts(model):
    trie = CodeTrie(MIXED_CODES)
    prompts = [[41, 42], [50, 51, 52, 53, 54, 55, 56], [33], [41, 42]]
    batch = constrained_beam_search_batch(model, prompts, trie, num_beams=3, top_k=4)
    for prompt, result in zip(prompts, batch):
        single = constrained_beam_search(model, prompt, trie, num_beams=3, top_k=4)
        assert result.tool_ids == single.tool_ids
        expected = [c.log_prob for c in single.candidates]
        assert [c.log_prob for c in result.candidates] == pytest.approx(expected, abs=1e-4)
        assert len(result.steps) == len(single.steps)


def test_pool_restriction_is_respected(model):
    trie = CodeTrie(ATOMIC_CODES)
    pool = ["t3", "t17", "t30"]
    result = constrained_beam_search(model, PROMPT, trie.restrict(pool), num_beams=5, top_k=10)
    assert sorted(result.tool_ids) == sorted(pool)  # all of the pool, nothing else
    multi = CodeTrie(MIXED_CODES).restrict(["t1", "t2", "t9"])
    assert set(constrained_beam_search(model, PROMPT, multi, num_beams=2, top_k=3).tool_ids) <= {"t1", "t2", "t9"}
    for seed in range(10):
        sample = constrained_sample(model, PROMPT, multi, generator=torch.Generator().manual_seed(seed))
        assert sample.best.tool_id in {"t1", "t2", "t9"}


class DigitTokenizer:
    """Stands in for a tokenizer in traces: token id 7 reads as '<7>'."""

    def decode(self, ids: list[int]) -> str:
        return "".join(f"<{i}>" for i in ids)


def test_step_traces_show_what_the_constraint_removed(model):
    trie = CodeTrie(MIXED_CODES)
    result = constrained_beam_search(
        model, PROMPT, trie, num_beams=3, top_k=3, tokenizer=DigitTokenizer(), step_top_n=8
    )
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.tensor([PROMPT])).logits[0, -1], dim=-1)
    first = result.steps[0].beams[0]
    allowed = set(trie.allowed(()).tolist())
    assert first.prefix == [] and first.allowed_count == len(allowed)
    assert first.allowed_mass == pytest.approx(float(log_probs[list(allowed)].exp().sum()), abs=1e-5)
    assert [o.token_id for o in first.before_mask] == log_probs.topk(8).indices.tolist()
    assert [o.allowed for o in first.before_mask] == [o.token_id in allowed for o in first.before_mask]
    assert not all(o.allowed for o in first.before_mask)  # the model's favourites include forbidden tokens
    assert {o.token_id for o in first.after_mask} == allowed  # 4 allowed tokens, fewer than step_top_n
    assert first.after_mask[0].text == f"<{first.after_mask[0].token_id}>"
    assert [len(p) for p in result.steps[0].kept] == [1] * len(result.steps[0].kept)
    assert {t for step in result.steps for t in step.completed} >= set(result.tool_ids)
    assert len(result.mask_ms) == len(result.steps) == result.forward_passes
    json.dumps(result.to_dict())
    assert constrained_beam_search(model, PROMPT, trie, record_steps=False).steps == []


def test_sampling_is_valid_seeded_and_follows_the_model(model):
    trie = CodeTrie(MIXED_CODES)
    first = [constrained_sample(model, PROMPT, trie, generator=torch.Generator().manual_seed(s)) for s in range(5)]
    again = [constrained_sample(model, PROMPT, trie, generator=torch.Generator().manual_seed(s)) for s in range(5)]
    assert [r.best.tool_id for r in first] == [r.best.tool_id for r in again]
    for r in first:
        assert r.best.log_prob == pytest.approx(teacher_forced_log_prob(model, PROMPT, r.best.token_ids), abs=1e-4)
    three = CodeTrie({"x": (20,), "y": (21,), "z": (22,)})
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([PROMPT])).logits[0, -1, 20:23], dim=-1).tolist()
    generator = torch.Generator().manual_seed(0)
    draws = [constrained_sample(model, PROMPT, three, generator=generator).best.tool_id for _ in range(400)]
    for tool, p in zip("xyz", probs):
        assert draws.count(tool) / 400 == pytest.approx(p, abs=0.08)
    with pytest.raises(ValueError, match="temperature"):
        constrained_sample(model, PROMPT, trie, temperature=0)


@pytest.mark.parametrize("scheme", ["numeric", "semantic", "hierarchical"])
def test_indexed_multi_token_codes(scheme, toy_catalog, smollm2_tokenizer):
    tokenizer = smollm2_tokenizer
    indexing = build_indexing(scheme, toy_catalog)
    tokenizer.add_tokens(indexing.new_tokens())
    trie = CodeTrie({t: tuple(tokenizer.encode(indexing.code(t), add_special_tokens=False)) for t in toy_catalog.ids})
    model = peaked_llama(len(tokenizer))
    prompt = tokenizer.encode("Which tool gives the weather forecast?", add_special_tokens=False)
    result = constrained_beam_search(model, prompt, trie, num_beams=4, top_k=4, tokenizer=tokenizer)
    assert len(result.candidates) == 4 and result.forward_passes > 1
    for c in result.candidates:
        assert tokenizer.decode(c.token_ids) == indexing.code(c.tool_id)
        assert c.log_prob == pytest.approx(teacher_forced_log_prob(model, prompt, c.token_ids), abs=1e-3)
    sample = constrained_sample(model, prompt, trie, generator=torch.Generator().manual_seed(0))
    assert tokenizer.decode(sample.best.token_ids) == indexing.code(sample.best.tool_id)


def test_bad_requests_raise_clear_errors(model):
    trie = CodeTrie(MIXED_CODES)
    with pytest.raises(ValueError, match="no codes"):
        constrained_beam_search(model, PROMPT, CodeTrie({}))
    with pytest.raises(ValueError, match="at least one token"):
        constrained_beam_search(model, [], trie)
    with pytest.raises(ValueError, match="must be at least 1"):
        constrained_beam_search(model, PROMPT, trie, num_beams=0)
    with pytest.raises(ValueError, match="columns"):
        constrained_beam_search(model, PROMPT, CodeTrie({"far": (VOCAB + 5,)}))
