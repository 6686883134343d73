"""`python -m core add-tools`: new tools get tokens at the end of the vocabulary, are trained on (with a replay of
the old ones) and become retrievable; the old tools keep their tokens; bad requests are refused before anything
is written."""

import json

import pytest
import torch

from core.__main__ import main
from core.add_tools import add_tools, read_tools_file
from core.doc_rows import DocRows
from core.model import ToolGenModel
from core.retrieval import ToolGenRetriever
from core.tools import CatalogError
from core.train import Trainer
from tests.helpers import tiny_toolgen, toolbench_api

NEW_APIS = [
    toolbench_api("Cooking", "recipe search", required=["dish"], description="Finds recipes for a dish."),
    toolbench_api("Cooking", "nutrition facts", required=["food"], description="Calories and nutrients of a food."),
]
NEW_FUNCTION = {
    "name": "garden.watering_schedule",
    "description": "Plan when to water each plant.",
    "parameters": {"type": "dict", "properties": {"plant": {"type": "string"}}, "required": ["plant"]},
}


@pytest.fixture
def built(tmp_path, smollm2_tokenizer, toy_catalog):
    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog)
    toolgen.info["preset"] = "tiny"  # the build settings add-tools trains with
    toolgen.save(tmp_path / "model")
    return tmp_path / "model", toolgen


def test_added_tools_are_trained_and_retrievable_and_old_tokens_stay(tmp_path, built, toy_catalog):
    source, before = built
    tools_file = tmp_path / "new.json"
    tools_file.write_text(json.dumps(NEW_APIS))
    (tmp_path / "function.json").write_text(json.dumps([NEW_FUNCTION]))
    assert main(["add-tools", "--model", str(source), "--tools", str(tools_file), "--out", str(tmp_path / "more")]) == 0
    more = ToolGenModel.load(tmp_path / "more")
    new_ids = ["Cooking&&recipe search", "Cooking&&nutrition facts"]
    assert more.catalog.ids == [*toy_catalog.ids, *new_ids] and more.info["added_tools"] == new_ids
    assert all(more.code_ids(t) == before.code_ids(t) for t in toy_catalog.ids)  # old tokens keep their ids
    assert min(more.code_ids(t)[0] for t in new_ids) >= len(before.tokenizer)  # new rows at the end
    reports = more.info["reports"]["add-tools"]
    for stage in ("memorization", "retrieval"):
        assert reports[stage]["probe_loss_after"] < reports[stage]["probe_loss_before"], stage
    old = ToolGenModel.load(source).model
    rows, old_rows = more.model.get_input_embeddings().weight, old.get_input_embeddings().weight
    assert torch.equal(rows[: len(old_rows)], old_rows)  # every old row stays as built: nothing to forget
    layers = [(n, p) for n, p in more.model.named_parameters() if "embed" not in n]
    assert layers and all(torch.equal(p, dict(old.named_parameters())[n]) for n, p in layers)
    retrieved = [t for t, _ in ToolGenRetriever(more, num_beams=30).retrieve("recipes", k=len(more.catalog))]
    assert set(new_ids) <= set(retrieved)  # the constraint knows the new tokens
    assert ToolGenModel.load(source).catalog.ids == toy_catalog.ids  # --out left the source alone

    assert main(["add-tools", "--model", str(tmp_path / "more"), "--tools", str(tmp_path / "function.json")]) == 0
    again = ToolGenModel.load(tmp_path / "more")  # in place
    assert again.catalog.ids[-1] == "garden&&garden.watering_schedule"
    assert again.info["added_tools"] == [*new_ids, "garden&&garden.watering_schedule"]


def test_bad_requests_are_refused_before_anything_is_written(tmp_path, built, toy_catalog, capsys):
    source, before = built
    with pytest.raises(ValueError, match="already in the model: Weather&&forecast"):
        add_tools(before, [toy_catalog["Weather&&forecast"]])
    present = tmp_path / "present.json"
    present.write_text(json.dumps([toolbench_api("Weather", "forecast")]))
    assert main(["add-tools", "--model", str(source), "--tools", str(present), "--out", str(tmp_path / "out")]) == 2
    assert "already in the model: Weather&&forecast" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    for content, problem in [
        ("[]", "non-empty JSON list"),
        ('[{"name": "f"}]', "'parameters' must be an object"),
        (json.dumps([NEW_APIS[0], NEW_APIS[0]]), "duplicate tool id"),
        ("{not json", "JSON"),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        with pytest.raises(CatalogError, match=problem):
            read_tools_file(bad)
    assert main(["add-tools", "--model", str(source), "--tools", str(present), "--replay", "-1"]) == 2
    assert "--replay must be at least 0" in capsys.readouterr().err
    assert ToolGenModel.load(source).catalog.ids == toy_catalog.ids


def test_a_model_with_doc_rows_places_new_tools_by_their_documentation(tmp_path, built, capsys):
    source, before = built
    tools_file = tmp_path / "new.json"
    tools_file.write_text(json.dumps(NEW_APIS))
    args = ["add-tools", "--model", str(source), "--tools", str(tools_file), "--no-train"]
    assert main(args + ["--out", str(tmp_path / "refused")]) == 2
    assert "--no-train needs a model built with --doc-rows" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()

    hidden = before.model.config.hidden_size
    torch.manual_seed(0)
    doc_rows = DocRows(torch.randn(2 * hidden), 3.0, torch.randn(hidden, 2 * hidden))
    doc_rows.save(source)
    assert main(args + ["--out", str(tmp_path / "placed")]) == 0
    placed = ToolGenModel.load(tmp_path / "placed")
    new_ids = [f"Cooking&&{api['api_name']}" for api in NEW_APIS]
    initial = add_tools(ToolGenModel.load(source), read_tools_file(tools_file))  # rows from the names only
    token = [initial.code_ids(t)[0] for t in new_ids]
    features = Trainer(initial, train_layers=-1, bf16=False).documentation_features(new_ids)
    expected = initial.model.get_input_embeddings().weight[token] + doc_rows.offsets(features)
    assert torch.allclose(placed.model.get_input_embeddings().weight[token], expected, atol=1e-4)
    assert placed.info["reports"]["add-tools"] == {}  # nothing trained
    assert DocRows.load(tmp_path / "placed") is not None  # the next add-tools can place tools too
