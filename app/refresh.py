"""A slow value served at once: `Refreshed(compute, min_interval).get(key)` returns `compute(key)` when it is
ready, and while a newer key is being computed (in one background thread), the last value with the key it was
computed for. A new computation starts at most every `min_interval` seconds.

The leaderboard uses it so that a request never waits on the bootstrap once a board exists, and so that votes
arriving all the time do not keep a bootstrap running (it holds the GIL much of the time, slowing every other
request): the board shown is at most `min_interval` plus one computation behind, and says so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
log = logging.getLogger("workbench")


class Refreshed(Generic[K, V]):
    """The latest value of `compute(key)`, recomputed in the background when asked for another key."""

    def __init__(
        self, compute: Callable[[K], V], min_interval: float = 0.0, clock: Callable[[], float] = time.monotonic
    ):
        self._compute, self._min_interval, self._clock = compute, min_interval, clock
        self._started = -float("inf")  # when the last computation started
        self._lock = threading.Lock()
        self._value: tuple[K, V] | None = None
        self._pending: K | None = None  # the key being computed in the background
        self._failed: tuple[K, Exception] | None = None

    def get(self, key: K) -> tuple[K, V]:
        """(the key the value was computed for, the value). Computes in this thread when there is no value yet;
        otherwise returns at once, starting a background computation for `key` if none is running and the last
        one started `min_interval` seconds ago or more."""
        with self._lock:
            if self._value is None:
                self._started = self._clock()
                self._value = (key, self._compute(key))
                return self._value
            if self._value[0] == key:
                return self._value
            if self._failed is not None and self._failed[0] == key:  # do not retry a key that failed
                raise self._failed[1]
            if self._pending is None and self._clock() - self._started >= self._min_interval:
                self._pending, self._started = key, self._clock()
                threading.Thread(target=self._refresh, args=(key,), name="refresh", daemon=True).start()
            return self._value

    def _refresh(self, key: K) -> None:
        try:
            value = self._compute(key)
        except Exception as error:  # the next get() for this key reports it
            log.exception("background refresh failed")
            with self._lock:
                self._failed, self._pending = (key, error), None
            return
        with self._lock:
            self._value, self._pending, self._failed = (key, value), None, None
