"""Model work away from the web server: in a worker process when one is started, else on a low-priority thread.

The handlers of model events (chat, beam inspector, live ranking; `shared.MODEL_EVENTS` runs them one at a time)
are wrapped by `on_model_worker`. `start_worker()` forks a worker process (app.py does so once the model is loaded
and the demo built, before the server starts, so the worker shares the model's memory copy-on-write and knows
every handler). A wrapped call is then sent to the worker over a pipe and its result, or every step of a
generator, comes back; the worker runs at nice + 10. The web process keeps its own interpreter lock and the
core the kernel gives it first, so votes and page loads never wait behind a forward pass (README, Responsiveness).

Without a worker (tests, a demo embedded in another program) the same handlers run in-process on one thread whose
priority is lowered the same way. Errors come back as the same kinds (`ValueError`, `ModelUnavailable`, Gradio's
`Error`); a `gr.Progress` argument is relayed; closing a streamed call early closes the generator in the worker.
If the worker dies, the request says so and the next one starts a new worker.
"""

from __future__ import annotations

import functools
import inspect
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import gradio as gr

NICE_INCREMENT = 10
log = logging.getLogger("workbench")

_handlers: dict[str, Callable] = {}  # every wrapped handler by name: what the worker may be asked to run
_PROGRESS = "<gr.Progress>"  # stands for a gr.Progress argument on its way to the worker
_CLOSE = "close"  # parent -> worker: stop the streamed call


def _lower_priority() -> None:
    """Lower the calling thread's scheduling priority by NICE_INCREMENT (on Linux a thread has its own)."""
    thread_id = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread_id, os.getpriority(os.PRIO_PROCESS, thread_id) + NICE_INCREMENT)
    except (AttributeError, OSError) as error:  # not Linux, or not allowed: run at normal priority
        log.warning("model work keeps normal priority: %s", error)


_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model", initializer=_lower_priority)
_DONE = object()


# ---------------------------------------------------------------- the worker process


def _error_message(error: BaseException) -> tuple[str, str]:
    """(kind, message) of an exception, for the parent to raise again (`_raise`)."""
    from .shared import ModelUnavailable

    if isinstance(error, gr.Error):
        return "gradio", error.message
    if isinstance(error, ModelUnavailable):
        return "unavailable", str(error)
    if isinstance(error, ValueError):
        return "value", str(error)
    log.exception("model work failed")
    return "other", f"{type(error).__name__}: {error}"


def _raise(kind: str, message: str):
    from .shared import ModelUnavailable

    raise {"gradio": gr.Error, "unavailable": ModelUnavailable, "value": ValueError}.get(kind, RuntimeError)(message)


class _RelayedProgress:
    """Stands in for `gr.Progress` in the worker: each call goes back to the parent's real one."""

    def __init__(self, connection):
        self._connection = connection

    def __call__(self, *args, **kwargs):
        self._connection.send(("progress", args, kwargs))


def _serve(connection, threads: int | None) -> None:
    """The worker's loop: run each requested handler and send back its result, steps, progress or error."""
    _lower_priority()
    if threads:
        import torch

        torch.set_num_threads(threads)
    while True:
        try:
            name, args, kwargs = connection.recv()
        except EOFError:  # the web process is gone
            return
        args = [_RelayedProgress(connection) if a == _PROGRESS else a for a in args]
        kwargs = {k: _RelayedProgress(connection) if v == _PROGRESS else v for k, v in kwargs.items()}
        fn = _handlers[name]
        try:
            if not inspect.isgeneratorfunction(fn):
                connection.send(("result", fn(*args, **kwargs)))
                continue
            steps = fn(*args, **kwargs)
            try:
                for item in steps:
                    connection.send(("item", item))
                    if connection.poll() and connection.recv() == _CLOSE:
                        break
            finally:
                steps.close()
            connection.send(("done", None))
        except Exception as error:
            connection.send(("error", *_error_message(error)))


class ModelWorker:
    """The forked worker process and the parent's end of its pipe; one call at a time."""

    def __init__(self, threads: int | None = None):
        self.threads = threads
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        context = multiprocessing.get_context("fork")
        self._connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, self.threads), name="model-worker", daemon=True)
        self.process.start()
        child.close()
        log.info("model worker started (pid %d)", self.process.pid)

    def stop(self) -> None:
        self._connection.close()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()

    def call(self, name: str, args: tuple, kwargs: dict):
        """Run handler `name` in the worker; a generator handler's steps are yielded as they arrive."""
        progress = [a for a in (*args, *kwargs.values()) if isinstance(a, gr.Progress)]
        args = tuple(_PROGRESS if isinstance(a, gr.Progress) else a for a in args)
        kwargs = {k: _PROGRESS if isinstance(v, gr.Progress) else v for k, v in kwargs.items()}
        with self._lock:
            if not self.process.is_alive():
                self._start()
            finished = False
            try:
                self._connection.send((name, args, kwargs))
                while True:
                    kind, *payload = self._connection.recv()
                    if kind == "progress":
                        if progress:
                            progress[0](*payload[0], **payload[1])
                    elif kind == "item":
                        yield payload[0]
                    elif kind == "error":
                        finished = True
                        _raise(*payload)
                    else:
                        finished = True
                        if kind == "result":
                            yield payload[0]
                        return
            except (EOFError, BrokenPipeError, ConnectionResetError) as error:
                finished = True
                self.process.kill()
                self.process.join()
                raise RuntimeError("the model worker stopped; the next request starts a new one") from error
            finally:
                if not finished:  # the caller closed the stream early: stop the worker's generator, drain it
                    self._connection.send(_CLOSE)
                    while self._connection.recv()[0] not in ("done", "error"):
                        pass


_worker: ModelWorker | None = None


def start_worker(threads: int | None = None) -> ModelWorker:
    """Fork the model worker (torch limited to `threads`); wrapped handlers run there from now on."""
    global _worker
    if _worker is None:
        _worker = ModelWorker(threads)
    return _worker


def stop_worker() -> None:
    """Stop the worker; wrapped handlers run in-process again."""
    global _worker
    if _worker is not None:
        _worker.stop()
        _worker = None


# ---------------------------------------------------------------- the wrapper


def on_model_worker(fn: Callable) -> Callable:
    """Wrap a Gradio handler (function or generator) so its work runs in the model worker, or on the low-priority
    model thread when no worker runs. The signature is kept, so Gradio still injects `gr.Request` and `gr.Progress`.
    """
    name = f"{fn.__module__}.{fn.__qualname__}"
    _handlers[name] = fn

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args, **kwargs):
            if _worker is not None:
                yield from _worker.call(name, args, kwargs)
                return
            steps = fn(*args, **kwargs)
            try:
                while (item := _thread.submit(next, steps, _DONE).result()) is not _DONE:
                    yield item
            finally:
                _thread.submit(steps.close).result()

        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if _worker is not None:
            return list(_worker.call(name, args, kwargs))[0]
        return _thread.submit(fn, *args, **kwargs).result()

    return call
