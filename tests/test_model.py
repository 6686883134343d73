"""Tool virtualization and the model wrapper: every indexing scheme, token init, checkpoint round trips."""

import json

import pytest
import torch
from safetensors.torch import save_model

from core.indexing import END, FINISH, SCHEMES, build_indexing, indexing_from_dict
from core.model import ToolGenModel, update_info
from core.tiny import tiny_llama
from tests.helpers import tiny_toolgen


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_every_scheme_gives_unique_prefix_free_codes(scheme, smollm2_tokenizer, toy_catalog):
    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog, scheme)
    sequences = list(toolgen.code_sequences(include_finish=True).values())
    assert len(set(sequences)) == len(toy_catalog) + 1
    for a in sequences:
        for b in sequences:
            assert a == b or a != b[: len(a)], f"{a} is a prefix of {b}"
    if scheme == "atomic":
        assert all(len(s) == 1 for s in sequences)
    else:
        end_id = smollm2_tokenizer.convert_tokens_to_ids(END)
        assert all(s[-1] == end_id and end_id not in s[:-1] for s in toolgen.code_sequences().values())
    assert toolgen.model.get_input_embeddings().weight.shape[0] == len(smollm2_tokenizer)
    assert indexing_from_dict(toolgen.indexing.to_dict()).codes == toolgen.indexing.codes


def test_hierarchical_codes_group_similar_tools(toy_catalog):
    codes = build_indexing("hierarchical", toy_catalog).codes
    assert len(set(codes.values())) == len(toy_catalog) and all(c.endswith(END) for c in codes.values())
    first_level = {tool_id.split("&&")[0]: set() for tool_id in codes}
    for tool_id, code in codes.items():
        first_level[tool_id.split("&&")[0]].add(code[0])
    assert sum(len(v) for v in first_level.values()) < len(codes)  # tools of one service share top clusters


def test_unknown_scheme_is_a_clear_error(toy_catalog):
    with pytest.raises(ValueError, match="unknown indexing scheme 'zigzag'"):
        build_indexing("zigzag", toy_catalog)


def test_new_rows_start_at_mean_of_name_subtokens(smollm2_tokenizer, toy_catalog):
    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog)
    weights = toolgen.model.get_input_embeddings().weight
    tool = toy_catalog["Finance&&stock price"]
    sub_ids = smollm2_tokenizer(f"{tool.tool_name} {tool.api_name}", add_special_tokens=False)["input_ids"]
    assert torch.allclose(weights[toolgen.code_ids(tool.id)[0]], weights[sub_ids].mean(0))
    assert torch.equal(toolgen.model.get_output_embeddings().weight, weights)  # tied


@pytest.mark.parametrize("scheme", ["atomic", "numeric"])
def test_checkpoint_round_trip(tmp_path, smollm2_tokenizer, toy_catalog, scheme):
    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog, scheme)
    toolgen.info["stages"] = ["memorization"]
    toolgen.save(tmp_path / "ckpt")
    again = ToolGenModel.load(tmp_path / "ckpt")
    assert again.indexing.scheme == scheme and again.info["stages"] == ["memorization"]
    assert [t.to_dict() for t in again.catalog] == [t.to_dict() for t in toy_catalog]
    assert again.code_sequences() == toolgen.code_sequences() and again.finish_token_id == toolgen.finish_token_id
    ids = torch.tensor([[1, 2, 3, toolgen.code_ids(toy_catalog.ids[0])[-1]]])
    assert torch.allclose(again.model(ids).logits, toolgen.model(ids).logits, atol=1e-6)


def test_published_checkpoint_recovers_tool_map_from_vocabulary(tmp_path, smollm2_tokenizer):
    tokens = ["<<Weather&&forecast>>", "<<👋 Demo Project&&Login>>", FINISH]
    smollm2_tokenizer.add_tokens(tokens)
    model = tiny_llama(len(smollm2_tokenizer))
    save_model(model, str(tmp_path / "model.safetensors"))
    model.config.save_pretrained(tmp_path)
    smollm2_tokenizer.save_pretrained(tmp_path)
    toolgen = ToolGenModel.load(tmp_path)
    assert sorted(toolgen.catalog.ids) == ["Weather&&forecast", "👋 Demo Project&&Login"]
    assert toolgen.code_ids("Weather&&forecast") == (smollm2_tokenizer.convert_tokens_to_ids(tokens[0]),)


def test_loading_a_non_checkpoint_fails_clearly(tmp_path, smollm2_tokenizer, toy_catalog):
    with pytest.raises(FileNotFoundError, match="no ToolGen checkpoint"):
        ToolGenModel.load(tmp_path)
    plain = tmp_path / "plain"  # a causal LM without toolgen.json whose vocabulary has no <<tool&&api>> tokens
    tiny_llama(len(smollm2_tokenizer)).save_pretrained(plain)
    smollm2_tokenizer.save_pretrained(plain)
    with pytest.raises(ValueError, match="no toolgen.json and no <<tool&&api>> tokens"):
        ToolGenModel.load(plain)
    directory = tiny_toolgen(smollm2_tokenizer, toy_catalog).save(tmp_path / "ckpt")
    meta = json.loads((directory / "toolgen.json").read_text())
    (directory / "toolgen.json").write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(ValueError, match=r"toolgen\.json: unsupported checkpoint format 99"):
        ToolGenModel.load(directory)


def test_update_info_changes_only_the_info_of_a_saved_checkpoint(tmp_path, smollm2_tokenizer, toy_catalog):
    toolgen = tiny_toolgen(smollm2_tokenizer, toy_catalog)
    toolgen.save(tmp_path / "model")
    weights = (tmp_path / "model" / "model.safetensors").read_bytes()
    update_info(tmp_path / "model", {"finish_margin": 4.0})
    again = ToolGenModel.load(tmp_path / "model")
    assert again.info["finish_margin"] == 4.0 and again.catalog.ids == toy_catalog.ids
    assert (tmp_path / "model" / "model.safetensors").read_bytes() == weights
    assert not (tmp_path / "model" / "toolgen.json.partial").exists()
