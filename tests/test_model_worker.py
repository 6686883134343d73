"""Model work runs in the forked worker process, or without one on a lower-priority thread; results, streamed steps,
progress and errors come back unchanged, and a dead worker is replaced."""

import os
import signal
import threading

import gradio as gr
import pytest

from app import model_worker
from app.model_worker import NICE_INCREMENT, on_model_worker
from app.shared import ModelUnavailable

closed = []  # in the process that ran the handler


def _where():
    native = threading.get_native_id()
    return os.getpid(), native, os.getpriority(os.PRIO_PROCESS, native)


where = on_model_worker(_where)


@on_model_worker
def steps(n):
    for i in range(n):
        yield i, os.getpid()


@on_model_worker
def failing(kind):
    try:
        yield 1
        raise {"value": ValueError("bad query"), "gradio": gr.Error("shown as is"), "model": ModelUnavailable("no")}[
            kind
        ]
    finally:
        closed.append(kind)


@on_model_worker
def endless():
    try:
        yield from range(10**9)
    finally:
        closed.append("stopped")


@on_model_worker
def closed_so_far():
    return list(closed)


@on_model_worker
def with_progress(progress=gr.Progress()):
    progress(0.5, desc="half way")
    return "ok"


@on_model_worker
def die():
    os.kill(os.getpid(), signal.SIGKILL)


def _check_errors_and_close():
    stream = failing("value")
    assert next(stream) == 1
    with pytest.raises(ValueError, match="bad query"):
        next(stream)
    with pytest.raises(gr.Error, match="shown as is"):
        list(failing("gradio"))
    with pytest.raises(ModelUnavailable):
        list(failing("model"))
    stream = endless()
    next(stream)
    stream.close()  # the client went away: the generator is closed where it runs
    assert closed_so_far()[-4:] == ["value", "gradio", "model", "stopped"]


def test_without_a_worker_work_runs_on_one_lower_priority_thread():
    here = _where()
    first, second = where(), where()
    assert first == second and first[0] == here[0]  # this process, the same thread every time
    assert first[1] != here[1] and first[2] == min(here[2] + NICE_INCREMENT, 19)
    assert [i for i, _ in steps(3)] == [0, 1, 2]
    _check_errors_and_close()


@pytest.fixture
def worker():
    closed.clear()
    yield model_worker.start_worker(threads=1)
    model_worker.stop_worker()


def test_with_a_worker_work_runs_in_another_lower_priority_process(worker):
    pid, native, priority = where()
    assert pid == worker.process.pid != os.getpid()
    assert priority == min(os.getpriority(os.PRIO_PROCESS, 0) + NICE_INCREMENT, 19)
    assert list(steps(3)) == [(0, pid), (1, pid), (2, pid)]
    _check_errors_and_close()
    assert closed == []  # all of it happened in the worker


def test_progress_is_relayed_to_the_callers_tracker(worker):
    calls = []

    class Tracker(gr.Progress):
        def __call__(self, *args, **kwargs):
            calls.append((args, kwargs))

    assert with_progress(Tracker()) == "ok"
    assert calls == [((0.5,), {"desc": "half way"})]


def test_a_dead_worker_is_reported_and_replaced(worker):
    first = worker.process.pid
    with pytest.raises(RuntimeError, match="model worker stopped"):
        die()
    assert where()[0] not in (first, os.getpid())  # a new worker answers
