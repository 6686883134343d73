"""Paths and defaults of the whole project, in one place; every module reads them from here.

Each value can be moved by an environment variable, read when the module is imported:

| name | env | default |
|---|---|---|
| `REPO_ROOT` | — | the checkout's root folder |
| `CACHE_DIR` | `TOOLGEN_CACHE` | `<repo>/cache` (dequantized base model, embedding caches) |
| `MODELS_DIR` | `TOOLGEN_MODELS` | `<repo>/models` |
| `DEFAULT_MODEL_DIR` | `TOOLGEN_MODEL` | `<MODELS_DIR>/toolgen-bfcl` |
| `DEFAULT_DB` | `TOOLGEN_DB` | `<repo>/results/workbench.duckdb` (`/data/…` on a Space with persistent storage) |
| `SHIPPED_MODEL_DIR` | — | `<repo>/assets/model` (the compact default model kept in the repository) |
| `SNAPSHOT_DIR` | — | `<repo>/assets/results` (the results snapshot a new results file is loaded from) |
| `SHARED_DATA_DIR` | `TOOLGEN_DATA` | `<repo>/../shared/data` |
| `PORT` | `PORT` | 7860 |

Nothing here writes to `os.environ`: code that must stay offline passes `local_files_only=True` itself.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _path(env: str, default: Path) -> Path:
    value = os.environ.get(env)
    return Path(value) if value else default


CACHE_DIR = _path("TOOLGEN_CACHE", REPO_ROOT / "cache")
EMBEDDING_CACHE_DIR = CACHE_DIR / "embeddings"
BASE_MODEL_CACHE_DIR = CACHE_DIR / "smollm2-135m-instruct"
MODELS_DIR = _path("TOOLGEN_MODELS", REPO_ROOT / "models")
DEFAULT_MODEL_DIR = _path("TOOLGEN_MODEL", MODELS_DIR / "toolgen-bfcl")
SPACE_DATA_DIR = Path("/data")  # a Hugging Face Space's persistent storage, when the Space has it
_ON_SPACE_STORAGE = bool(os.environ.get("SPACE_ID")) and os.access(SPACE_DATA_DIR, os.W_OK)
DEFAULT_DB = _path("TOOLGEN_DB", (SPACE_DATA_DIR if _ON_SPACE_STORAGE else REPO_ROOT / "results") / "workbench.duckdb")
SHIPPED_MODEL_DIR = REPO_ROOT / "assets" / "model"
SNAPSHOT_DIR = REPO_ROOT / "assets" / "results"
SHARED_DATA_DIR = _path("TOOLGEN_DATA", REPO_ROOT.parent / "shared" / "data")
TOOLBENCH_DATA_DIR = SHARED_DATA_DIR / "toolbench"
TOOLGEN_VOCAB_FILE = SHARED_DATA_DIR / "toolgen" / "virtual_tokens.txt"
PORT = int(os.environ.get("PORT") or 7860)


def model_dir(corpus: str) -> Path:
    """The default checkpoint folder of a corpus's ToolGen model (`models/toolgen-<corpus>`)."""
    return DEFAULT_MODEL_DIR if corpus == "bfcl" else MODELS_DIR / f"toolgen-{corpus}"


def served_model_dir() -> Path:
    """The model the workbench serves by default: `DEFAULT_MODEL_DIR` when it holds a checkpoint (or TOOLGEN_MODEL
    names one), else the compact model shipped in the repository."""
    if "TOOLGEN_MODEL" in os.environ or (DEFAULT_MODEL_DIR / "toolgen.json").exists():
        return DEFAULT_MODEL_DIR
    return SHIPPED_MODEL_DIR


def baseline_dir(name: str, corpus: str) -> Path:
    """The default folder of a trained baseline (`models/<name>-<corpus>`, e.g. `embedding-ft-bfcl`)."""
    return MODELS_DIR / f"{name}-{corpus}"
