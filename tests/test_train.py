"""The trainer on a tiny random model: three stages learn, checkpoints reload, interrupted builds resume."""

import argparse
import json

import pytest
import torch

from core.build import (
    Corpus,
    Preset,
    _preset,
    add_arguments,
    build_stages,
    load_retrieval_pairs,
    retrieval_checkpoint,
    retrieval_quality,
)
from core.doc_rows import DocRows
from core.examples import (
    AGENT,
    FINISH_THOUGHT,
    MEMORIZATION,
    RETRIEVAL,
    STAGES,
    TrainingTrajectory,
    memorization_examples,
    retrieval_examples,
    trajectory_example,
)
from core.indexing import FINISH
from core.model import ToolGenModel
from core.prompts import Step, retrieval_prompt
from core.tiny import tiny_llama
from core.tools import Query
from core.train import PROGRESS_FILE, StageConfig, Trainer
from tests.helpers import tiny_toolgen

FAST = dict(lr=3e-3, rows_lr=3e-2, batch_tokens=1024)
STAGE_CONFIGS = {
    MEMORIZATION: StageConfig(epochs=8, head="codes", **FAST),
    RETRIEVAL: StageConfig(epochs=8, head="codes", **FAST),
    AGENT: StageConfig(epochs=4, **FAST),
}


def training_accuracy(trainer, toolgen, examples):
    """Share of retrieval examples whose gold tool has the highest logit among all tools."""
    ids = toolgen.catalog.ids
    prompts = [retrieval_prompt(toolgen.tokenizer, e.text) for e in examples]
    logits = trainer.code_logits(prompts, [toolgen.code_ids(t)[0] for t in ids])
    gold = torch.tensor([ids.index(e.tool_id) for e in examples])
    return (logits.argmax(dim=1) == gold).float().mean().item()


def toy_trajectories(catalog):
    return [
        TrainingTrajectory(
            (
                (
                    f"Please give me the {tool.api_name} for Rome.",
                    (
                        Step(f"I should use {tool.api_name}.", tool.id, {"q": "Rome"}, f"{tool.api_name}: ok"),
                        Step(FINISH_THOUGHT, FINISH, {"final_answer": "ok"}),
                    ),
                ),
            )
        )
        for tool in catalog
    ]


@pytest.mark.slow
def test_three_stages_learn_and_the_checkpoint_reloads(tmp_path, smollm2_tokenizer, toy_catalog):
    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog)
    trainer = Trainer(toolgen, train_layers=1, bf16=False)
    retrieval = retrieval_examples(toolgen, [], synthetic_per_tool=3, synthetic_for="all")
    before = training_accuracy(trainer, toolgen, retrieval)
    reports = [
        trainer.train(memorization_examples(toolgen), STAGE_CONFIGS[MEMORIZATION], MEMORIZATION),
        trainer.train(retrieval, STAGE_CONFIGS[RETRIEVAL], RETRIEVAL),
    ]
    after = training_accuracy(trainer, toolgen, retrieval)
    agent = [trajectory_example(toolgen, t) for t in toy_trajectories(toy_catalog)]
    reports.append(trainer.train(agent, STAGE_CONFIGS[AGENT], AGENT))
    for report in reports:
        assert report["probe_loss_after"] < report["probe_loss_before"], report
        assert report["tokens_per_s"] > 0
    assert after > max(0.5, before + 0.3), (before, after)  # chance is 1/20
    final = training_accuracy(trainer, toolgen, retrieval)
    assert final > 0.2  # stage 3 does not wipe retrieval out
    toolgen.info["stages"] = list(STAGES)
    toolgen.save(tmp_path / "model")
    again = ToolGenModel.load(tmp_path / "model")
    assert again.info["stages"] == list(STAGES)
    reloaded = Trainer(again, train_layers=1, bf16=False)
    assert training_accuracy(reloaded, again, retrieval) == pytest.approx(final, abs=0.02)


@pytest.mark.slow
def test_a_shared_prompt_prefix_changes_no_result(smollm2_tokenizer, toy_catalog):
    toolgen = ToolGenModel.from_base(
        toy_catalog, model=tiny_llama(len(smollm2_tokenizer), layers=3), tokenizer=smollm2_tokenizer
    )
    prompts = [
        retrieval_prompt(smollm2_tokenizer, f"I need the {t.api_name} please" + " now" * i)
        for i, t in enumerate(toy_catalog)
    ]
    codes = [toolgen.code_ids(t)[0] for t in toy_catalog.ids]
    batched = Trainer(toolgen, train_layers=1, bf16=False, cache_dtype=torch.float32).code_logits(prompts, codes)
    one_by_one = Trainer(toolgen, train_layers=1, bf16=False, cache_dtype=torch.float32)
    single = torch.cat([one_by_one.code_logits([p], codes) for p in prompts])
    assert torch.allclose(batched, single, atol=1e-4)


def test_trained_rows_are_tied_and_only_top_layers_change(smollm2_tokenizer, toy_catalog):
    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog)
    model = toolgen.model
    lower_before = [p.clone() for p in model.model.layers[0].parameters()]
    base_rows_before = model.get_input_embeddings().weight[:1000].clone()
    trainer = Trainer(toolgen, train_layers=1, bf16=False)
    new_rows_before = model.get_input_embeddings().weight[trainer.first_new :].clone()
    trainer.train(memorization_examples(toolgen), StageConfig(epochs=2, **FAST), MEMORIZATION)
    assert all(torch.equal(a, b) for a, b in zip(lower_before, model.model.layers[0].parameters()))
    assert torch.equal(model.get_input_embeddings().weight[:1000], base_rows_before)
    rows = trainer.accelerator.unwrap_model(trainer.top).rows
    assert torch.equal(model.get_output_embeddings().weight[trainer.first_new :], rows.detach())
    assert not torch.allclose(rows.detach(), new_rows_before)


def toy_corpus(catalog):
    train = [
        Query(id=str(i), text=f"I need the {t.api_name} from {t.tool_name} now", gold=(t.id,))
        for i, t in enumerate(catalog)
    ]
    test = [Query(id=f"t{i}", text=f"What is the {t.api_name}?", gold=(t.id,)) for i, t in enumerate(catalog)]
    return Corpus("toy", catalog, train, test, trajectories=toy_trajectories(catalog))


@pytest.mark.slow
def test_an_interrupted_build_resumes_after_the_last_finished_stage(tmp_path, smollm2_tokenizer, toy_catalog):
    preset = Preset(
        train_layers=1,
        max_doc_tokens=None,
        agent_examples=20,
        agent_replay=10,
        eval_queries=20,
        stages={
            s: StageConfig(epochs=1, head="codes" if s != AGENT else "full", doc_rows=s == RETRIEVAL, **FAST)
            for s in STAGES
        },
    )
    corpus, out = toy_corpus(toy_catalog), tmp_path / "build"
    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog)
    build_stages(Trainer(toolgen, train_layers=1, bf16=False), corpus, preset, out, [MEMORIZATION])  # "interrupted"
    saved = ToolGenModel.load(out)
    assert saved.info["stages"] == [MEMORIZATION] and set(saved.info["metrics"]) == {"untrained", MEMORIZATION}
    first_report = saved.info["reports"][MEMORIZATION]
    assert DocRows.load(out) is None  # memorization ran with free rows
    build_stages(Trainer(saved, train_layers=1, bf16=False), corpus, preset, out)
    final = ToolGenModel.load(out)
    assert final.info["stages"] == list(STAGES)
    assert final.info["reports"][MEMORIZATION] == first_report  # not trained again
    assert set(final.info["metrics"]) == {"untrained", *STAGES}
    assert 0 <= final.info["metrics"][AGENT]["ndcg@1"] <= 100
    snapshot = ToolGenModel.load(retrieval_checkpoint(out))  # what retrieval is evaluated on
    assert snapshot.info["stages"] == [MEMORIZATION, RETRIEVAL]
    assert DocRows.load(out) is not None and DocRows.load(retrieval_checkpoint(out)) is not None
    assert load_retrieval_pairs(retrieval_checkpoint(out)) == load_retrieval_pairs(out)
    pairs = load_retrieval_pairs(out)  # what the fine-tuned embedding baseline will train on
    trained_queries = {(q.text, tool_id) for q in corpus.train for tool_id in q.gold}
    assert trained_queries <= set(pairs) and {tool for _, tool in pairs} <= set(toy_catalog.ids)


@pytest.mark.slow
def test_a_stage_resumes_mid_way_from_its_state_file(tmp_path, smollm2_tokenizer, toy_catalog, monkeypatch):
    config = StageConfig(epochs=3, head="codes", **FAST)
    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog)
    toolgen.save(tmp_path / "start")
    examples = memorization_examples(toolgen)
    steps = Trainer(toolgen, train_layers=1, bf16=False).train(examples, config, MEMORIZATION)["steps"]
    uninterrupted = toolgen.model.state_dict()

    resumed = ToolGenModel.load(tmp_path / "start")
    trainer = Trainer(resumed, train_layers=1, bf16=False, checkpoint_every_s=0)
    calls = {"n": 0}
    original = Trainer._set_lr

    def crash_at_step_four(optimizer, step, total, warmup):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        original(optimizer, step, total, warmup)

    monkeypatch.setattr(Trainer, "_set_lr", staticmethod(crash_at_step_four))
    state = tmp_path / "state"
    with pytest.raises(KeyboardInterrupt):
        trainer.train(examples, config, MEMORIZATION, state_path=state)
    assert json.loads((state / PROGRESS_FILE).read_text())["step"] == 3
    monkeypatch.setattr(Trainer, "_set_lr", staticmethod(original))
    again = ToolGenModel.load(tmp_path / "start")  # the process died: start over from the last checkpoint
    report = Trainer(again, train_layers=1, bf16=False).train(examples, config, MEMORIZATION, state_path=state)
    assert not state.exists() and report["steps"] == steps > 4
    for name, value in again.model.state_dict().items():
        assert torch.allclose(value, uninterrupted[name], atol=1e-5), name


def test_retrieval_quality_reports_ndcg(smollm2_tokenizer, toy_catalog):
    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog)
    scores = retrieval_quality(Trainer(toolgen, train_layers=0, bf16=False), toolgen, toy_corpus(toy_catalog).test)
    assert scores["queries"] == 20 and 0 <= scores["ndcg@1"] <= scores["ndcg@5"] <= 100


def _teacher_probability(toolgen, soft_targets, distill):
    """Train retrieval on the toy queries with `soft_targets`; the mean softmax probability of each query's teacher
    tool afterwards."""
    trainer = Trainer(toolgen, train_layers=1, bf16=False)
    examples = retrieval_examples(toolgen, [], synthetic_per_tool=1, synthetic_for="all")
    config = StageConfig(epochs=12, head="codes", distill=distill, **FAST)
    trainer.train(examples, config, RETRIEVAL, soft_targets=soft_targets)
    ids = toolgen.catalog.ids
    prompts = [retrieval_prompt(toolgen.tokenizer, e.text) for e in examples]
    probs = trainer.code_logits(prompts, [toolgen.code_ids(t)[0] for t in ids]).softmax(dim=1)
    teacher = [ids.index(soft_targets[e.text][0][0]) for e in examples]
    return probs[torch.arange(len(examples)), teacher].mean().item()


def test_distillation_moves_the_tool_distribution_towards_the_teacher(smollm2_tokenizer, toy_catalog):
    probe = tiny_toolgen(smollm2_tokenizer, toy_catalog)
    examples = retrieval_examples(probe, [], synthetic_per_tool=1, synthetic_for="all")
    ids = toy_catalog.ids
    # the teacher prefers, for each query, the next tool in the catalog over the gold one
    soft = {e.text: [(ids[(ids.index(e.tool_id) + 1) % len(ids)], 0.9), (e.tool_id, 0.1)] for e in examples}
    torch.manual_seed(0)
    plain = _teacher_probability(tiny_toolgen(smollm2_tokenizer, toy_catalog), soft, distill=0.0)
    torch.manual_seed(0)
    taught = _teacher_probability(tiny_toolgen(smollm2_tokenizer, toy_catalog), soft, distill=2.0)
    assert taught > plain + 0.1, (plain, taught)
    with pytest.raises(ValueError, match="distill"):
        StageConfig(distill=-1.0)


def test_doc_rows_are_free_rows_plus_projected_documentation(tmp_path, smollm2_tokenizer, toy_catalog):
    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog)
    trainer = Trainer(toolgen, train_layers=1, bf16=False)
    named = toy_catalog.ids[:10]
    queries = [Query(id=t, text=f"I need the {toy_catalog[t].api_name} now", gold=(t,)) for t in named]
    examples = retrieval_examples(toolgen, queries, synthetic_per_tool=0, synthetic_for="none")
    assert trainer.doc_rows is None
    initial = toolgen.model.get_input_embeddings().weight[trainer.first_new :].detach().clone()
    report = trainer.train(examples, StageConfig(epochs=4, head="codes", doc_rows=True, **FAST), RETRIEVAL)
    assert report["probe_loss_after"] < report["probe_loss_before"]
    doc_rows = trainer.doc_rows
    assert doc_rows.projection.abs().sum() > 0
    # the written-back rows are the free rows plus P times features that a fresh trainer computes again
    fresh = Trainer(toolgen, train_layers=1, bf16=False)
    offsets = doc_rows.offsets(fresh.documentation_features(toy_catalog.ids))
    free = trainer.accelerator.unwrap_model(trainer.top).rows.detach()
    token = [toolgen.code_ids(t)[0] - trainer.first_new for t in toy_catalog.ids]
    rows = toolgen.model.get_input_embeddings().weight[trainer.first_new :].detach()
    assert torch.equal(free, initial)  # the free rows stay; documentation alone moves them
    assert torch.allclose(rows[token], free[token] + offsets, atol=1e-5)
    assert offsets[len(named) :].norm(dim=1).min() > 0  # tools no query names moved with their documentation
    # the projection travels with the model: save, load, a restricted view; saving without one removes a stale file
    again = ToolGenModel.load(toolgen.save(tmp_path / "saved")).doc_rows
    assert torch.equal(again.projection, doc_rows.projection) and again.scale == pytest.approx(doc_rows.scale)
    assert toolgen.restricted(named).doc_rows is toolgen.doc_rows
    toolgen.doc_rows = None
    assert ToolGenModel.load(toolgen.save(tmp_path / "saved")).doc_rows is None
    assert DocRows.load(tmp_path / "elsewhere") is None


def test_default_builds_use_doc_rows_in_retrieval_unless_told_otherwise():
    parser = argparse.ArgumentParser()
    add_arguments(parser)

    def doc_stages(*argv):
        return sorted(s for s, c in _preset(parser.parse_args(list(argv))).stages.items() if c.doc_rows)

    assert doc_stages() == doc_stages("--corpus", "toolbench") == [RETRIEVAL]
    assert doc_stages("--doc-rows", "none") == [] and doc_stages("--doc-rows", "memorization") == [MEMORIZATION]
    assert doc_stages("--scheme", "semantic") == []  # one row per tool is what the projection writes
    assert doc_stages("--preset", "tiny") == []
