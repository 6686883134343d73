"""Rate limits on annotation, per annotator and per client address, in sliding windows.

`RateLimits.parse("annotator_votes=10/60,client_names=off")` reads the operator's settings (COUNT/SECONDS per
limit, `off` for none); `RateLimiter.take((limit, key), …)` counts one use of each or raises `RateLimited` with a
message that says which limit was hit and when to try again. `client_names` counts distinct names per address.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Rate:
    """At most `count` uses per `seconds`."""

    count: int
    seconds: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        count, slash, seconds = text.partition("/")
        try:
            rate = cls(int(count), float(seconds)) if slash else None
        except ValueError:
            rate = None
        if rate is None or rate.count < 1 or not 0 < rate.seconds < float("inf"):
            raise ValueError(f"rate {text!r}: expected COUNT/SECONDS with COUNT >= 1, e.g. 10/60")
        return rate

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds:g}"

    def describe(self) -> str:
        """'10 per minute', '3 per day', '5 per 90 s'."""
        spans = {60: "minute", 3600: "hour", 86400: "day"}
        return f"{self.count} per {spans.get(self.seconds, f'{self.seconds:g} s')}"


@dataclass(frozen=True)
class RateLimits:
    """The annotation limits (None: unlimited). Defaults suit people reading two trajectories per vote."""

    annotator_votes: Rate | None = Rate(10, 60)  # votes per annotator
    client_votes: Rate | None = Rate(30, 60)  # votes per client address (a few people behind one NAT)
    client_names: Rate | None = Rate(3, 86400)  # distinct annotator names per client address
    client_draws: Rate | None = Rate(120, 60)  # "Next pair" requests per client address

    @classmethod
    def parse(cls, text: str) -> RateLimits:
        """Defaults changed by `name=COUNT/SECONDS` or `name=off` items, comma-separated; `off` alone: no limits."""
        text = text.strip()
        if text == "off":
            return cls.off()
        limits, names = cls(), {f.name for f in fields(cls)}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, equals, value = item.partition("=")
            if not equals or name.strip() not in names:
                raise ValueError(
                    f"rate limit {item!r}: expected NAME=COUNT/SECONDS or NAME=off, "
                    f"NAME one of {', '.join(sorted(names))}"
                )
            value = value.strip()
            limits = replace(limits, **{name.strip(): None if value == "off" else Rate.parse(value)})
        return limits

    @classmethod
    def off(cls) -> RateLimits:
        return cls(**{f.name: None for f in fields(cls)})

    def __str__(self) -> str:
        return ",".join(f"{f.name}={getattr(self, f.name) or 'off'}" for f in fields(self))


_WHAT = {
    "annotator_votes": "votes by one annotator",
    "client_votes": "votes from one address",
    "client_names": "annotator names from one address",
    "client_draws": "pairs drawn from one address",
}


class RateLimited(ValueError):
    """A rate limit was hit; the message says which and when to try again."""


class RateLimiter:
    """Sliding-window use counters for the limits of a `RateLimits`, safe to share between threads."""

    def __init__(self, limits: RateLimits, clock: Callable[[], float] = time.monotonic):
        self.limits, self._clock = limits, clock
        self._uses: dict[tuple[str, Hashable], deque] = {}
        self._lock = threading.Lock()

    def take(self, *uses: tuple) -> None:
        """Count one use of each `(limit, key)` or `(limit, key, item)`, all or none: raise `RateLimited` for the
        first limit that is spent. With an item, the limit counts distinct items (a repeated item is always
        allowed and refreshes its time)."""
        now = self._clock()
        with self._lock:
            granted = []
            for limit, key, *item in uses:
                rate: Rate | None = getattr(self.limits, limit)
                if rate is None:
                    continue
                item = item[0] if item else None
                window = self._uses.setdefault((limit, key), deque())
                while window and window[0][0] <= now - rate.seconds:
                    window.popleft()
                repeated = item is not None and any(used == item for _, used in window)
                if not repeated and len(window) >= rate.count:
                    wait = max(1, round(window[0][0] + rate.seconds - now))
                    raise RateLimited(f"too many {_WHAT[limit]}: at most {rate.describe()}. Try again in {wait} s.")
                granted.append((window, item, repeated))
            for window, item, repeated in granted:
                if repeated:
                    for _ in range(len(window)):  # drop the item's old entry, keeping the others in time order
                        entry = window.popleft()
                        if entry[1] != item:
                            window.append(entry)
                window.append((now, item))
            if len(self._uses) > 10_000:  # forget idle keys now and then
                self._uses = {k: v for k, v in self._uses.items() if v and v[-1][0] > now - 86400}
