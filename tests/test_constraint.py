"""CodeTrie, the masking step, ToolConstraintLogitsProcessor under HF `generate`, and the check-constraint CLI."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LogitsProcessorList

from core.check_constraint import main as check_main
from core.check_constraint import run_check
from core.constraint import NEG_INF, CodeTrie, ToolConstraintLogitsProcessor
from core.indexing import build_indexing
from core.vocab import read_lines_verbatim, read_token_lines
from tests.helpers import peaked_llama

pytestmark = pytest.mark.usefixtures("one_thread")

CODES = {"a": (1, 2, 3), "b": (1, 2, 4), "c": (1, 5), "d": (7,)}
END = 0
SMALL_CODES = {f"t{i}": (10 + i % 4, 20 + i // 4) + ((30,) if i % 3 else (31, 32)) for i in range(12)}


def generated_codes(trie: CodeTrie, sequences: torch.Tensor, prompt_length: int) -> list[str | None]:
    """The tool named by each generated continuation if it is exactly a code followed by END tokens."""
    tools = []
    for row in sequences[:, prompt_length:].tolist():
        found = trie.leading_code(row)
        valid = found is not None and all(t == END for t in row[found[1] :]) and len(row) > found[1]
        tools.append(found[0] if valid else None)
    return tools


def test_allowed_next_tokens_and_completion():
    trie = CodeTrie(CODES)
    assert len(trie) == 4 and "c" in trie and trie.depth == 3
    assert trie.allowed(()).tolist() == [1, 7]
    assert trie.allowed((1,)).tolist() == [2, 5]
    assert trie.allowed((1, 2)).tolist() == [3, 4]
    assert trie.allowed((1, 2, 3)).tolist() == []
    assert trie.tool_at((1, 2, 3)) == "a" and trie.tool_at((7,)) == "d"
    assert trie.tool_at((1, 2)) is None and trie.tool_at((9,)) is None and trie.tool_at(()) is None
    assert trie.leading_code((1, 5, 0, 0)) == ("c", 2)
    assert trie.leading_code((1, 2)) is None and trie.leading_code((8, 1)) is None
    with pytest.raises(KeyError, match=r"\(9,\) does not begin any code"):
        trie.allowed((9,))


def test_duplicate_code_is_rejected():
    with pytest.raises(ValueError, match="tools 'x' and 'y' share the code"):
        CodeTrie({"x": (1, 2), "y": (1, 2)})


@pytest.mark.parametrize("codes", [{"short": (1, 2), "long": (1, 2, 3)}, {"long": (1, 2, 3), "short": (1, 2)}])
def test_code_that_is_a_prefix_of_another_is_rejected(codes):
    with pytest.raises(ValueError, match="prefix of another") as error:
        CodeTrie(codes)
    assert "'short'" in str(error.value) and "'long'" in str(error.value)


@pytest.mark.parametrize("code, problem", [((), "empty code"), ((1, -2), "negative"), ((1, 2.5), "integer")])
def test_bad_code_names_the_tool(code, problem):
    with pytest.raises(ValueError, match=problem) as error:
        CodeTrie({"ok": (5,), "broken": code})
    assert "'broken'" in str(error.value)


def test_restrict_keeps_only_the_pool():
    trie = CodeTrie(CODES)
    pool = trie.restrict(["b", "d"])
    assert sorted(pool.codes) == ["b", "d"]
    assert pool.allowed((1, 2)).tolist() == [4]
    assert pool.allowed((1,)).tolist() == [2]
    assert pool.tool_at((1, 2, 3)) is None
    assert len(trie) == 4 and trie.allowed((1, 2)).tolist() == [3, 4]  # the full trie is untouched
    with pytest.raises(KeyError, match="not in this trie"):
        trie.restrict(["b", "nope"])


def test_mask_keeps_only_allowed_tokens():
    trie = CodeTrie(CODES)
    scores = torch.randn(4, 10)
    masked = trie.mask(scores, [(), (1, 2), (1, 5), (9,)])
    finite = [torch.nonzero(row > NEG_INF).flatten().tolist() for row in masked]
    assert finite == [[1, 7], [3, 4], [], []]  # complete and off-trie rows allow nothing
    assert torch.equal(masked[0, [1, 7]], scores[0, [1, 7]])
    with pytest.raises(ValueError, match="token id 7 but scores have only 6 columns"):
        trie.mask(torch.zeros(1, 6), [()])
    with pytest.raises(ValueError, match="do not match 2 prefixes"):
        trie.mask(torch.zeros(1, 10), [(), ()])


def test_dense_and_sparse_masks_agree():
    """A node with many children is masked with a cached additive row; the result is the same."""
    wide = CodeTrie({f"t{i}": (i, 5000) for i in range(3000)} | {"x": (4000, 1, 2)})
    assert len(wide.allowed(())) >= CodeTrie.DENSE_MIN_CHILDREN
    scores = torch.randn(3, 5001)
    masked = wide.mask(scores, [(), (4000,), ()])
    for row, prefix in enumerate([(), (4000,), ()]):
        expected = torch.full((5001,), NEG_INF)
        ids = wide.allowed(prefix)
        expected[ids] = scores[row, ids]
        assert torch.equal(masked[row], expected)


def test_processor_forces_end_after_a_complete_code():
    trie = CodeTrie(CODES)
    processor = ToolConstraintLogitsProcessor(trie, prompt_length=2, end_token_id=END)
    input_ids = torch.tensor([[9, 9, 1, 2], [9, 9, 1, 5], [9, 9, 8, 8], [9, 9, 7, END]])
    out = processor(input_ids, torch.randn(4, 10))
    finite = [torch.nonzero(row > NEG_INF).flatten().tolist() for row in out]
    assert finite == [[3, 4], [END], [], [END]]
    assert out[1, END] == 0 and out[3, END] == 0
    with pytest.raises(ValueError, match="no codes"):
        ToolConstraintLogitsProcessor(CodeTrie({}), 2, END)


def test_generate_beam_search_emits_only_codes():
    trie = CodeTrie(SMALL_CODES)
    model = peaked_llama(64)
    prompts = [[40 + i, 50 - i, 45] for i in range(6)]
    unconstrained_invalid = 0
    for prompt in prompts:
        inputs = torch.tensor([prompt])
        out = model.generate(
            inputs,
            logits_processor=LogitsProcessorList([ToolConstraintLogitsProcessor(trie, inputs.shape[1], END)]),
            num_beams=4,
            num_return_sequences=4,
            do_sample=False,
            max_new_tokens=trie.depth + 1,
            eos_token_id=END,
            pad_token_id=END,
        )
        tools = generated_codes(trie, out, inputs.shape[1])
        assert None not in tools and len(set(tools)) == 4
        free = model.generate(
            inputs, do_sample=False, max_new_tokens=trie.depth + 1, eos_token_id=END, pad_token_id=END
        )
        unconstrained_invalid += generated_codes(trie, free, inputs.shape[1]) == [None]
    assert unconstrained_invalid > 0  # without the constraint the same model leaves the code space


def test_generate_sampling_with_left_padding_emits_only_codes():
    trie = CodeTrie(SMALL_CODES)
    model = peaked_llama(64, seed=1)
    inputs = torch.tensor([[END, END, 41, 42, 43], [44, 45, 46, 47, 48]] * 4)
    attention = (torch.arange(5) >= torch.tensor([[2], [0]] * 4)).long()
    processor = ToolConstraintLogitsProcessor(trie, inputs.shape[1], END)
    for seed in range(5):
        torch.manual_seed(seed)
        out = model.generate(
            inputs,
            attention_mask=attention,
            logits_processor=LogitsProcessorList([processor]),
            do_sample=True,
            max_new_tokens=trie.depth + 2,
            eos_token_id=END,
            pad_token_id=END,
        )
        assert None not in generated_codes(trie, out, inputs.shape[1])


@pytest.mark.parametrize("scheme", ["numeric", "semantic"])
def test_generate_with_indexed_multi_token_codes_and_a_pool(scheme, toy_catalog, smollm2_tokenizer):
    tokenizer = smollm2_tokenizer
    indexing = build_indexing(scheme, toy_catalog)
    tokenizer.add_tokens(indexing.new_tokens())
    codes = {t: tuple(tokenizer.encode(indexing.code(t), add_special_tokens=False)) for t in toy_catalog.ids}
    trie = CodeTrie(codes)
    assert trie.depth > 1
    model = peaked_llama(len(tokenizer))
    end = tokenizer.eos_token_id
    pool = toy_catalog.ids[3:7]
    for pool_trie, expected in [(trie, set(toy_catalog.ids)), (trie.restrict(pool), set(pool))]:
        inputs = torch.tensor([tokenizer.encode("Pick the tool for the weather", add_special_tokens=False)])
        out = model.generate(
            inputs,
            logits_processor=LogitsProcessorList([ToolConstraintLogitsProcessor(pool_trie, inputs.shape[1], end)]),
            num_beams=4,
            num_return_sequences=4,
            do_sample=False,
            max_new_tokens=pool_trie.depth + 1,
            eos_token_id=end,
            pad_token_id=end,
        )
        for row in out[:, inputs.shape[1] :].tolist():
            tool_id, length = pool_trie.leading_code(row)
            assert tool_id in expected and row[length] == end
            assert tokenizer.decode(row[:length]) == indexing.code(tool_id)


def test_read_token_lines_keeps_tokens_verbatim_and_names_bad_lines(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("<<A\t&&b>>\n<<Driver's  License&&x>>\n <<🌤 Weather&&now>> \n", encoding="utf-8")
    assert read_token_lines(str(path)) == ["<<A\t&&b>>", "<<Driver's  License&&x>>", " <<🌤 Weather&&now>> "]
    path.write_text("<<a&&b>>\n\n<<c&&d>>\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab.txt: entry line 2: empty token"):
        read_token_lines(str(path))
    path.write_text("<<a&&b>>\n<<c&&d>>\n<<a&&b>>", encoding="utf-8")
    with pytest.raises(ValueError, match=r"entry line 3: duplicate token '<<a&&b>>' \(first on line 1\)"):
        read_token_lines(str(path))


@pytest.mark.slow
def test_check_constraint_cli_on_awkward_tokens(tmp_path, capsys):
    tokens = ["<<A\t&&b>>", "<<Driver's  License&&x>>", " <<🌤 Weather&&now>> ", "<<Finish>>", "plain"]
    vocab, out = tmp_path / "vocab.txt", tmp_path / "out.txt"
    vocab.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    assert check_main(["--vocab", str(vocab), "--decodes", "40", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    written = read_lines_verbatim(str(out))
    assert len(written) == 40 and set(written) <= set(tokens)
    assert report["invalid_constrained"] == 0 and report["tokens"] == 5
    assert check_main(["--vocab", str(tmp_path / "missing.txt"), "--decodes", "4", "--out", str(out)]) == 2
    assert "missing.txt" in capsys.readouterr().err


@pytest.mark.slow
def test_zero_invalid_tools_over_2000_decodes_at_full_vocabulary(shared_data, tmp_path, smollm2_tokenizer):
    vocab = shared_data / "toolgen" / "virtual_tokens.txt"
    if not vocab.exists():
        pytest.skip(f"{vocab} not found")
    out = tmp_path / "out.txt"
    report = run_check(str(vocab), 2000, str(out), tokenizer=smollm2_tokenizer)
    tokens = set(read_token_lines(str(vocab)))
    written = read_lines_verbatim(str(out))
    assert report["tokens"] == len(tokens) == 46985
    assert report["beam_decodes"] == report["sampled_decodes"] == 1000
    assert len(written) == report["lines_written"] == 2000
    assert sum(line not in tokens for line in written) == report["invalid_constrained"] == 0
    assert report["invalid_unconstrained"] > 0  # the same model without the constraint does emit invalid tokens
