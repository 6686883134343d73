"""Compact checkpoints (core/adapter.py): only the tensors training changed, over a hash-checked base, reload to
the same logits as the full model."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import AddedToken

from core.__main__ import main as core_main
from core.adapter import ADAPTER_CONFIG, ADAPTER_WEIGHTS, is_repo_id, load_compact, save_compact
from core.doc_rows import DocRows
from core.model import ToolGenModel
from core.tiny import tiny_llama


@pytest.fixture
def base_dir(tmp_path, smollm2_tokenizer):
    """A tiny random 3-layer Llama with the SmolLM2 tokenizer, saved as a base model folder."""
    base = tmp_path / "base"
    tiny_llama(len(smollm2_tokenizer), layers=3).save_pretrained(base)
    smollm2_tokenizer.save_pretrained(base)
    return base


def trained(base_dir, catalog, scheme: str = "atomic") -> ToolGenModel:
    """A ToolGen model on the base whose top layer, final norm and added rows moved, as ToolGen training moves them."""
    toolgen = ToolGenModel.from_base(catalog, scheme=scheme, base=str(base_dir))
    toolgen.tokenizer.add_tokens([AddedToken("<<sep>>", special=True, normalized=False)], special_tokens=True)
    toolgen.model.resize_token_embeddings(len(toolgen.tokenizer), mean_resizing=False)
    generator = torch.Generator().manual_seed(1)
    model = toolgen.model.model
    with torch.no_grad():
        for parameter in [*model.layers[-1].parameters(), model.norm.weight]:
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
        rows = model.embed_tokens.weight[49152:]
        rows.add_(0.05 * torch.randn(rows.shape, generator=generator))
    return toolgen


def logits(toolgen: ToolGenModel, catalog) -> torch.Tensor:
    prompt = toolgen.tokenizer("Which tool gives the forecast?")["input_ids"]
    codes = [token for tool_id in catalog.ids[:3] for token in toolgen.code_ids(tool_id)]
    with torch.no_grad():
        return toolgen.model(torch.tensor([prompt + codes + [toolgen.finish_token_id]])).logits


@pytest.mark.parametrize("scheme", ["atomic", "numeric"])
def test_compact_checkpoint_keeps_only_changed_tensors_and_reloads_to_identical_logits(
    tmp_path, base_dir, toy_catalog, scheme, one_thread
):
    toolgen = trained(base_dir, toy_catalog, scheme)
    summary = save_compact(toolgen, tmp_path / "compact")
    config = json.loads((tmp_path / "compact" / ADAPTER_CONFIG).read_text())
    top = {f"model.layers.2.{name}" for name, _ in toolgen.model.model.layers[2].named_parameters()}
    assert config["tensors"] == {
        **dict.fromkeys(sorted(top), "whole"),
        "model.norm.weight": "whole",
        "model.embed_tokens.weight": "added_rows",
    }
    added = len(toolgen.tokenizer) - 49152
    assert summary["parameters"] == sum(p.numel() for p in toolgen.model.model.layers[2].parameters()) + 64 + added * 64
    assert [t["id"] for t in config["added_tokens"]] == list(range(49152, 49152 + added))
    assert not (tmp_path / "compact" / "model.safetensors").exists()

    again = ToolGenModel.load(tmp_path / "compact")
    assert torch.equal(logits(again, toy_catalog), logits(toolgen, toy_catalog))
    assert again.tokenizer.get_vocab() == toolgen.tokenizer.get_vocab()
    assert {i: str(t) for i, t in again.tokenizer.added_tokens_decoder.items()} == {
        i: str(t) for i, t in toolgen.tokenizer.added_tokens_decoder.items()
    }  # with their flags (<<sep>> special)
    assert again.code_sequences(include_finish=True) == toolgen.code_sequences(include_finish=True)
    assert [t.to_dict() for t in again.catalog] == [t.to_dict() for t in toy_catalog]
    assert again.info == toolgen.info and again.indexing.to_dict() == toolgen.indexing.to_dict()


def test_export_compact_command_matches_the_full_checkpoint(tmp_path, base_dir, toy_catalog, one_thread, capsys):
    toolgen = trained(base_dir, toy_catalog)
    hidden = toolgen.model.config.hidden_size
    toolgen.doc_rows = DocRows(torch.randn(2 * hidden), 2.0, torch.randn(hidden, 2 * hidden))
    full = toolgen.save(tmp_path / "full")
    assert core_main(["export-compact", "--model", str(full), "--out", str(tmp_path / "compact")]) == 0
    assert "tensors" in capsys.readouterr().out
    compact = ToolGenModel.load(tmp_path / "compact")
    assert torch.equal(logits(compact, toy_catalog), logits(ToolGenModel.load(full), toy_catalog))
    assert torch.equal(compact.doc_rows.projection, toolgen.doc_rows.projection)  # add-tools can still place tools
    assert core_main(["export-compact", "--model", str(full), "--out", str(tmp_path / "compact")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_a_base_other_than_the_recorded_one_is_refused(tmp_path, base_dir, smollm2_tokenizer, toy_catalog, one_thread):
    save_compact(trained(base_dir, toy_catalog), tmp_path / "compact")
    tiny_llama(len(smollm2_tokenizer), layers=3, seed=7).save_pretrained(base_dir)  # same name, other weights
    with pytest.raises(ValueError, match="has sha256 .* but this checkpoint was made on"):
        load_compact(tmp_path / "compact")


def test_untrained_model_keeps_only_its_added_rows(tmp_path, base_dir, toy_catalog, one_thread):
    toolgen = ToolGenModel.from_base(toy_catalog, base=str(base_dir))
    save_compact(toolgen, tmp_path / "compact")
    config = json.loads((tmp_path / "compact" / ADAPTER_CONFIG).read_text())
    assert config["tensors"] == {"model.embed_tokens.weight": "added_rows"}
    assert (tmp_path / "compact" / ADAPTER_WEIGHTS).stat().st_size < 64 * 4 * 100  # 21 rows of 64 floats + header


def test_repo_ids_are_told_from_local_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert is_repo_id("user/toolgen-bfcl")
    assert not is_repo_id("models/toolgen-bfcl")  # a missing folder under an existing one is a local path
    assert not is_repo_id("/abs/path") and not is_repo_id("a/b/c") and not is_repo_id("plain")
