"""Model work runs on one lower-priority thread; results, streamed steps and errors come back unchanged."""

import os
import threading

import pytest

from app.model_thread import NICE_INCREMENT, on_model_thread


def _where():
    native = threading.get_native_id()
    return native, os.getpriority(os.PRIO_PROCESS, native)


def test_function_runs_on_one_lower_priority_thread():
    here = _where()
    first, second = on_model_thread(_where)(), on_model_thread(_where)()
    assert first == second  # the same thread every time
    assert first[0] != here[0]
    assert first[1] == min(here[1] + NICE_INCREMENT, 19)


def test_generator_streams_every_step_from_the_model_thread():
    @on_model_thread
    def steps(n):
        for i in range(n):
            yield i, threading.current_thread().name

    out = list(steps(3))
    assert [i for i, _ in out] == [0, 1, 2]
    assert all(name.startswith("model") for _, name in out)


def test_errors_reach_the_caller_and_the_generator_is_closed():
    closed = []

    @on_model_thread
    def failing():
        try:
            yield 1
            raise ValueError("bad query")
        finally:
            closed.append(True)

    stream = failing()
    assert next(stream) == 1
    with pytest.raises(ValueError, match="bad query"):
        next(stream)
    assert closed == [True]

    @on_model_thread
    def early_stop():
        try:
            yield from range(10)
        finally:
            closed.append("stopped")

    stream = early_stop()
    next(stream)
    stream.close()  # the client went away: the model-side generator is closed on its thread
    assert closed[-1] == "stopped"
