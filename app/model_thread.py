"""Model work on one low-priority thread, so that votes and page loads preempt it on a busy CPU.

Model events already run one at a time (`shared.MODEL_EVENTS`); `on_model_thread` moves their work onto a single
thread whose scheduling priority is lowered (`nice` + 10) when it starts. With torch's threads capped below the
core count a light request still competes with the model for CPU time (the web server, other processes); at a
lower priority the kernel gives it the core first. A generator handler runs each step there, so streaming keeps
working. Where the priority cannot be changed the work runs unchanged on that thread.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

NICE_INCREMENT = 10
log = logging.getLogger("workbench")


def _lower_priority() -> None:
    thread_id = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread_id, os.getpriority(os.PRIO_PROCESS, thread_id) + NICE_INCREMENT)
    except (AttributeError, OSError) as error:  # not Linux, or not allowed: run at normal priority
        log.warning("model thread keeps normal priority: %s", error)


_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model", initializer=_lower_priority)
_DONE = object()


def on_model_thread(fn: Callable) -> Callable:
    """Wrap a Gradio handler (function or generator) so its work runs on the low-priority model thread.

    The signature is kept, so Gradio still injects `gr.Request` and `gr.Progress`.
    """
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args, **kwargs):
            steps = fn(*args, **kwargs)
            try:
                while (item := _executor.submit(next, steps, _DONE).result()) is not _DONE:
                    yield item
            finally:
                _executor.submit(steps.close).result()

        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        return _executor.submit(fn, *args, **kwargs).result()

    return call
