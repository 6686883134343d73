"""The executor interface the agent talks to, and the pieces every executor shares.

An executor turns one tool call into an `Observation`; it never raises on a bad call. `safe_call` runs a
backend function under a time limit and turns exceptions, timeouts and unserialisable or oversized
results into error observations. `validate_arguments` checks call arguments against a tool's JSON schema.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..tools import Tool

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_CHARS = 100_000


@dataclass(frozen=True)
class Observation:
    """What a tool call gave back. `content` is text (JSON text for structured results).

    ok: the call raised no error; executed: a backend really ran it; simulated: the content was
    made up by a simulator rather than produced by a backend.
    """

    content: str
    ok: bool = True
    error: str | None = None
    simulated: bool = False
    executed: bool = True


class Executor(Protocol):
    """Runs tool calls for one conversation; `reset()` starts a fresh conversation."""

    def call(self, tool: Tool, arguments: dict) -> Observation: ...

    def reset(self) -> None: ...


def error_observation(message: str, executed: bool) -> Observation:
    """An observation reporting `message` as the call's error."""
    return Observation(content=f"Error: {message}", ok=False, error=message, executed=executed)


def format_result(value: object) -> str:
    """A backend result as text: strings verbatim, anything else as JSON, non-JSON leaves (sets, mpmath
    numbers, ...) written as their str(). TypeError/ValueError when impossible (e.g. a circular structure)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def safe_call(
    fn: Callable[[], object], timeout_s: float = DEFAULT_TIMEOUT_S, max_chars: int | None = DEFAULT_MAX_CHARS
) -> Observation:
    """Run `fn()` and wrap its result in an Observation; never raises.

    A call still running after `timeout_s` is abandoned (its daemon thread cannot be killed and may still
    change backend state) and reported as a timeout. `max_chars=None` disables the size limit.
    """
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # a backend may even call exit(); report it, don't die
            box["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return error_observation(f"timed out after {timeout_s:g} s", executed=True)
    if "error" in box:
        error = box["error"]
        return error_observation(f"{type(error).__name__}: {error}", executed=True)
    try:
        content = format_result(box["value"])
    except (TypeError, ValueError) as e:  # keep the value's text: callers may compare results
        text = _text(box["value"])
        return error_observation(f"result is not JSON-serialisable ({e}): {text[:max_chars]}", executed=True)
    if max_chars is not None and len(content) > max_chars:
        return error_observation(f"result too large ({len(content)} characters, limit {max_chars})", executed=True)
    return Observation(content=content)


def _text(value: object) -> str:
    try:
        return str(value)
    except Exception as e:
        return f"<unprintable {type(value).__name__}: {type(e).__name__}>"


_JSON_TYPES = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
    "null": (type(None),),
}


def _type_problems(value: object, schema: object, where: str) -> list[str]:
    """Type mismatches of `value` against `schema`, looking into array items and object properties."""
    if not isinstance(schema, dict):
        return []
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds if isinstance(kinds, list) else []
    known = [k.lower() for k in kinds if isinstance(k, str) and k.lower() in _JSON_TYPES]
    if known:
        matches = [
            k
            for k in known
            if isinstance(value, _JSON_TYPES[k]) and not (isinstance(value, bool) and k in ("integer", "number"))
        ]
        if not matches:
            return [f"{where}: expected {' or '.join(known)}, got {type(value).__name__}"]
    problems = []
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            problems += _type_problems(item, schema.get("items"), f"{where}[{i}]")
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        for key, item in value.items():
            problems += _type_problems(item, schema["properties"].get(key), f"{where}.{key}")
    return problems


def validate_arguments(tool: Tool, arguments: object) -> list[str]:
    """Problems of `arguments` for `tool`: missing required, unknown parameter, wrong type. [] means valid."""
    if not isinstance(arguments, dict):
        return [f"arguments must be a JSON object, got {type(arguments).__name__}"]
    schema = tool.parameters if isinstance(tool.parameters, dict) else {}
    properties = schema.get("properties") or {}
    problems = [
        f"missing required parameter {name!r}" for name in schema.get("required") or [] if name not in arguments
    ]
    for name, value in arguments.items():
        if name not in properties:
            problems.append(f"unknown parameter {name!r}")
        else:
            problems += _type_problems(value, properties[name], repr(name))
    return problems
