"""What every tab shares: HTML escaping, turning failures into in-tab errors, and the `Workbench`.

The `Workbench` owns the process's single `ResultsStore` (one DuckDB connection, a cursor per thread) and
loads the ToolGen model and the baseline retrievers once, on first use, under a lock.
"""

from __future__ import annotations

import functools
import html
import inspect
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from core.model import ToolGenModel
from core.retrieval import TOOLGEN_SYSTEMS, ToolGenRetriever, lexical_weight_of
from core.settings import DEFAULT_DB
from core.tools import ToolCatalog
from eval.retrievers import BASELINES, baseline_retriever
from eval.store import ResultsStore

# Events that run a model (chat, beam inspector, live ranking) share one concurrency group and run one at a time,
# on all cores but one (app.py caps torch's threads): the spare core keeps votes and pages quick, and the queue shows
# waiting users their position and an estimate.
MODEL_EVENTS = {"concurrency_id": "model", "concurrency_limit": 1}
log = logging.getLogger("workbench")


def esc(value: object) -> str:
    """`value` as text that is safe inside HTML (element content or a quoted attribute)."""
    return html.escape(str(value), quote=True)


def _user_error(error: Exception) -> gr.Error:
    if isinstance(error, gr.Error):
        return error
    if isinstance(error, (ValueError, ModelUnavailable)):  # bad input or no model: the message says it all
        log.warning("request refused: %s", error)
    else:
        log.exception("request failed")
    message = str(error) or type(error).__name__
    return gr.Error(esc(message), print_exception=False)


def user_errors(fn: Callable) -> Callable:
    """Wrap a Gradio handler (function or generator) so any failure shows as an error in its tab.

    The signature is kept, so Gradio still injects `gr.Request`, `gr.OAuthProfile` and `gr.Progress`.
    """
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as error:
                raise _user_error(error) from error

        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            raise _user_error(error) from error

    return call


class ModelUnavailable(RuntimeError):
    """No ToolGen checkpoint could be loaded; the message says where it was looked for and how to build one."""


class Workbench:
    """The app's shared backends: the results store, the ToolGen model, and the baseline retrievers."""

    def __init__(self, model_dir: str | Path, db_path: str | Path = DEFAULT_DB):
        self.model_dir = Path(model_dir)
        self.store = ResultsStore(db_path)
        self._model_lock = threading.Lock()
        self._toolgen: ToolGenModel | None = None
        self._retrievers: dict[str, ToolGenRetriever] = {}
        self._baselines: dict[str, object] = {}
        self._baseline_locks = {system: threading.Lock() for system in BASELINES}  # one slow build blocks no other

    def toolgen(self) -> ToolGenModel:
        """The ToolGen model, loaded on first use; `ModelUnavailable` if the checkpoint is missing or broken."""
        with self._model_lock:
            if self._toolgen is None:
                try:
                    self._toolgen = ToolGenModel.load(self.model_dir)
                except (OSError, ValueError) as error:
                    raise ModelUnavailable(
                        f"no ToolGen model could be loaded from {self.model_dir}: {error}. "
                        "Build one with `make build` or start with --model DIR."
                    ) from error
                self._toolgen.model.eval()
            return self._toolgen

    def retriever(self, system: str = "toolgen") -> ToolGenRetriever:
        """ToolGen retrieval over the loaded model's whole catalog: the model alone (`toolgen`) or with the lexical
        prior at the model's weight (`toolgen+bm25`, core/retrieval.py)."""
        if system not in TOOLGEN_SYSTEMS:
            raise ValueError(f"unknown ToolGen system {system!r}; choose from {', '.join(TOOLGEN_SYSTEMS)}")
        toolgen = self.toolgen()
        with self._model_lock:
            if system not in self._retrievers:
                weight = lexical_weight_of(toolgen) if system == "toolgen+bm25" else 0.0
                self._retrievers[system] = ToolGenRetriever(toolgen, lexical_weight=weight)
            return self._retrievers[system]

    @property
    def catalog(self) -> ToolCatalog:
        return self.toolgen().catalog

    def corpus(self) -> str:
        """The loaded catalog's source ('bfcl', 'toolbench', …), which names the matching fine-tuned baseline."""
        return next((t.source for t in self.catalog), "")

    def baseline(self, system: str):
        """A baseline retriever (`bm25`, `embedding` or `embedding-ft`) over the model's catalog, built once."""
        if system not in BASELINES:
            raise ValueError(f"unknown baseline {system!r}; choose from {', '.join(BASELINES)}")
        catalog = self.catalog
        with self._baseline_locks[system]:
            if system not in self._baselines:
                self._baselines[system] = baseline_retriever(system, catalog, self.corpus())
            return self._baselines[system]

    def close(self) -> None:
        self.store.close()
