"""Fast paths against the plain float32 path: the number-format choice by CPU flags (core/runtime.py), the cached
prompt prefix and length-sorted batches (core/retrieval.py), bf16 serving; and the benchmark's stage breakdown."""

import pytest
import torch

from core import runtime
from core.tiny import tiny_llama


@pytest.fixture
def cpu_with(monkeypatch):
    """Pretend the CPU has exactly the given flags."""

    def set_flags(*flags):
        monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset(flags))

    return set_flags


def test_cpu_flags_are_read_from_proc_cpuinfo():
    flags = runtime.cpu_flags()
    assert isinstance(flags, frozenset)
    if runtime.Path("/proc/cpuinfo").exists():
        assert "fpu" in flags  # every x86 CPU lists it; the parse found the flags line


def test_bf16_only_where_native(cpu_with, monkeypatch):
    monkeypatch.delenv(runtime.PRECISION_ENV, raising=False)
    cpu_with("avx2", "fma", "avx512f")
    assert not runtime.train_bf16("cpu") and runtime.serving_precision() == "float32"
    for flag in ("avx512_bf16", "amx_bf16"):
        cpu_with("avx2", flag)
        assert runtime.train_bf16("cpu") and runtime.serving_precision() == "bfloat16"


def test_precision_is_forced_by_argument_or_environment(cpu_with, monkeypatch):
    cpu_with("avx2")
    monkeypatch.setenv(runtime.PRECISION_ENV, "bfloat16")
    assert runtime.serving_precision() == "bfloat16"
    assert runtime.serving_precision("float32") == "float32"
    monkeypatch.setenv(runtime.PRECISION_ENV, "int4")
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        runtime.serving_precision()
    with pytest.raises(ValueError, match="resolved"):
        runtime.apply_precision(tiny_llama(64), "auto")


def test_trainer_default_follows_the_cpu(cpu_with, smollm2_tokenizer, toy_catalog):
    from core.model import ToolGenModel
    from core.train import Trainer

    toolgen = ToolGenModel.from_base(toy_catalog, model=tiny_llama(len(smollm2_tokenizer)), tokenizer=smollm2_tokenizer)
    cpu_with("avx2")
    assert Trainer(toolgen, train_layers=1).bf16 is False
    cpu_with("avx2", "amx_bf16")
    assert Trainer(toolgen, train_layers=1).bf16 is True
    assert Trainer(toolgen, train_layers=1, bf16=False).bf16 is False


def test_bfloat16_serving_keeps_the_head_in_float32():
    model = runtime.apply_precision(tiny_llama(300, layers=2), "bfloat16")
    assert {p.dtype for p in model.model.layers.parameters()} == {torch.bfloat16}
    assert model.lm_head.weight.dtype == torch.float32
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert logits.dtype == torch.float32


# ---------------------------------------------------------------- fast retrieval paths against the plain one

QUERIES = [
    "what is the weather in Paris",
    "book a flight to Rome next week",
    "lyrics of a song",
    "convert 10 USD to EUR",
    "hotel",
    "is it going to storm tonight in the mountains near Denver, and should I cancel my hike?",
    "which trains leave Berlin for Prague tomorrow morning",
    "crypto price of bitcoin right now",
]


def plain_ranking(toolgen, retriever, query: str, k: int) -> list[tuple[str, float]]:
    """The oracle: the float32 model, the whole prompt through every layer, one query, no cached prefix."""
    from core.decoding import constrained_beam_search

    result = constrained_beam_search(
        toolgen.model,
        retriever.prompt_ids(query),
        retriever.trie,
        num_beams=retriever.num_beams,
        top_k=k,
        record_steps=False,
    )
    return [(c.tool_id, c.log_prob) for c in result.candidates]


@pytest.mark.parametrize("scheme", ["atomic", "semantic", "numeric"])
def test_cached_prefix_and_length_batches_rank_like_the_plain_path(scheme, smollm2_tokenizer, toy_catalog, one_thread):
    from core.retrieval import ToolGenRetriever
    from tests.helpers import tiny_toolgen

    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog, scheme)
    retriever = ToolGenRetriever(toolgen)
    assert retriever.prefix is not None and all(retriever.prefix.starts(retriever.prompt_ids(q)) for q in QUERIES)
    oracle = [plain_ranking(toolgen, retriever, q, 5) for q in QUERIES]
    single = [retriever.retrieve(q, k=5) for q in QUERIES]
    batched = retriever.retrieve_batch(QUERIES, k=5, batch_tokens=64)  # several batches of similar length
    for fast in (single, batched):
        for got, want in zip(fast, oracle):
            assert [t for t, _ in got] == [t for t, _ in want]
            assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-4)


def test_bfloat16_serving_scores_stay_within_tolerance(smollm2_tokenizer, toy_catalog, one_thread):
    """bf16 decoder layers (float32 head): every tool's log P within 0.05 nats of float32's, so rankings can only
    differ between tools whose float32 scores are within 0.1 nats of each other."""
    from core.retrieval import ToolGenRetriever
    from tests.helpers import tiny_toolgen

    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog)
    reference = ToolGenRetriever(toolgen)
    want = {q: dict(plain_ranking(toolgen, reference, q, len(toy_catalog))) for q in QUERIES}
    runtime.apply_precision(toolgen.model, "bfloat16")
    fast = ToolGenRetriever(toolgen)
    for query in QUERIES:
        got = fast.retrieve(query, k=len(toy_catalog))
        assert max(abs(score - want[query][tool]) for tool, score in got) <= 0.05
        best = max(want[query].values())
        assert want[query][got[0][0]] >= best - 0.1


def test_prefix_is_used_only_where_every_prompt_starts_with_it(smollm2_tokenizer, toy_catalog):
    from core.decoding import PromptPrefix, constrained_beam_search
    from core.retrieval import ToolGenRetriever
    from tests.helpers import tiny_toolgen

    retriever = ToolGenRetriever(tiny_toolgen(smollm2_tokenizer, toy_catalog))
    prompt = retriever.prompt_ids("weather")
    assert retriever._prefix_for([prompt]) is retriever.prefix
    assert retriever._prefix_for([prompt, [7] + prompt]) is None
    with pytest.raises(ValueError, match="begin with the prefix"):
        constrained_beam_search(
            retriever.toolgen.model, list(retriever.prefix.ids), retriever.trie, prefix=retriever.prefix
        )
    with pytest.raises(ValueError, match="at least one token"):
        PromptPrefix.of(retriever.toolgen.model, [])


def test_length_batches_cover_every_query_once_within_the_budget():
    from core.retrieval import _length_batches

    lengths = [40, 12, 90, 33, 35, 12, 300, 41]
    batches = _length_batches(lengths, 100)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert [6] in batches  # longer than the budget: alone
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 100
    order = [lengths[i] for b in batches for i in b]
    assert order == sorted(order)


def test_stage_breakdown_splits_a_query_into_its_stages(smollm2_tokenizer, toy_catalog, one_thread):
    from core.retrieval import ToolGenRetriever
    from eval.bench_speed import stage_breakdown
    from tests.helpers import tiny_toolgen

    retriever = ToolGenRetriever(tiny_toolgen(smollm2_tokenizer, toy_catalog))
    stages = stage_breakdown(retriever, QUERIES[:3])
    assert list(stages) == [
        "prompt",
        "embedding_and_setup",
        "lower_layers",
        "top_layers",
        "norm_and_lm_head",
        "decode_rest",
    ]
    assert all(value >= 0 for value in stages.values()) and stages["prompt"] > 0 and stages["top_layers"] > 0
    assert retriever.prompt_ids("x") == retriever.prompt_ids("x")  # the timing wrapper is gone again
    assert "prompt_ids" not in vars(retriever)
