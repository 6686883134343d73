"""Executes BFCL tools on the benchmark's own Python backends (file system, trading bot, travel, ...).

One `BfclExecutor` is one conversation: it holds fresh backend instances loaded with `initial_config`
the way BFCL does (`instance._load_scenario(deepcopy(config[class]), long_context=...)`), so state
persists between calls until `reset()`. Tools without a backend here (single-turn BFCL functions, or the
web-search and memory backends whose extra packages are not installed) are "call only": the arguments are
validated and the call is reported as not executed.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from functools import cache

from ..bfcl import BACKEND_DOCS, function_name
from ..tools import Tool
from .base import DEFAULT_MAX_CHARS, DEFAULT_TIMEOUT_S, Observation, error_observation, safe_call, validate_arguments

_BACKEND_PACKAGE = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code"
_STATELESS = {"MathAPI"}  # BFCL does not load a scenario into these

# Used when no initial_config is given: a small home folder and the trading backend's built-in account
# (balance 10,000 USD, one completed AAPL and one pending GOOG order, NVDA on the watch list).
# Classes not named here start from their backend's built-in default state.
DEMO_CONFIG = {
    "GorillaFileSystem": {
        "root": {
            "alex": {
                "type": "directory",
                "contents": {
                    "notes.txt": {"type": "file", "content": "Buy milk.\nCall Bob about the budget report."},
                    "projects": {
                        "type": "directory",
                        "contents": {
                            "report.md": {"type": "file", "content": "# Budget report\nQ3 spending rose 4% over plan."},
                            "todo.txt": {"type": "file", "content": "finish report\nsend report to Bob"},
                        },
                    },
                    "archive": {"type": "directory", "contents": {}},
                },
            }
        }
    },
    "TradingBot": {},
}


@cache
def backend_class(class_name: str) -> type | None:
    """The backend class named `class_name` from bfcl_eval, or None when its module cannot be imported."""
    if class_name not in BACKEND_DOCS:
        raise ValueError(f"unknown BFCL backend class {class_name!r}; known: {', '.join(BACKEND_DOCS)}")
    try:
        module = importlib.import_module(f"{_BACKEND_PACKAGE}.{BACKEND_DOCS[class_name]}")
    except Exception:  # e.g. web_search needs serpapi, the memory backends need faiss/rank_bm25
        return None
    return getattr(module, class_name, None)


class BfclExecutor:
    """Tool calls for one BFCL conversation on fresh backend instances.

    initial_config: BFCL `initial_config` ({class name: scenario}); None uses `DEMO_CONFIG`.
    involved_classes: the backend classes of the conversation; None means every backend class.
    """

    def __init__(
        self,
        initial_config: dict | None = None,
        involved_classes=None,
        long_context: bool = False,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_chars: int | None = DEFAULT_MAX_CHARS,
    ):
        if initial_config is not None and not isinstance(initial_config, dict):
            raise ValueError(f"initial_config must be a dict, got {type(initial_config).__name__}")
        self.initial_config = copy.deepcopy(DEMO_CONFIG if initial_config is None else initial_config)
        self.involved_classes = tuple(BACKEND_DOCS if involved_classes is None else involved_classes)
        self.long_context, self.timeout_s, self.max_chars = long_context, timeout_s, max_chars
        self.instances: dict[str, object] = {}
        self.reset()

    def reset(self) -> None:
        """Fresh backend instances loaded with the initial config (a new conversation)."""
        self.instances = {}
        for class_name in self.involved_classes:
            cls = backend_class(class_name)
            if cls is None:
                continue
            instance = cls()
            if class_name not in _STATELESS:
                scenario = copy.deepcopy(self.initial_config.get(class_name, {}))
                try:
                    instance._load_scenario(scenario, long_context=self.long_context)
                except Exception as e:
                    raise ValueError(f"initial_config for {class_name} is malformed: {type(e).__name__}: {e}") from e
            self.instances[class_name] = instance
        self._methods = {
            name: method
            for instance in self.instances.values()
            for name, method in inspect.getmembers(instance, inspect.ismethod)
            if not name.startswith("_")
        }

    @property
    def param_order(self) -> dict[str, tuple[str, ...]]:
        """Function name -> its parameter names in signature order (to name positional arguments)."""
        return {name: tuple(inspect.signature(method).parameters) for name, method in self._methods.items()}

    def state(self) -> dict[str, dict]:
        """Public attributes of every backend instance (live objects: read, don't mutate)."""
        return {
            name: {k: v for k, v in vars(instance).items() if not k.startswith("_")}
            for name, instance in self.instances.items()
        }

    def call(self, tool: Tool, arguments: dict) -> Observation:
        """Validate `arguments` against the tool's schema, then run it on its backend if it has one."""
        problems = validate_arguments(tool, arguments)
        if problems:
            return error_observation(f"invalid arguments for {tool.id}: " + "; ".join(problems), executed=False)
        backend = tool.tool_name in BACKEND_DOCS
        if backend and tool.tool_name not in self.involved_classes:
            return error_observation(f"{tool.tool_name} is not part of this conversation", executed=False)
        if tool.tool_name not in self.instances:
            reason = "its backend cannot be imported here" if backend else "no backend implements it"
            return Observation(
                content=f"The call to {tool.id} was validated but not executed: {reason}.", executed=False
            )
        return self.execute(function_name(tool), arguments)

    def execute(self, name: str, arguments: dict) -> Observation:
        """Run backend function `name` as BFCL's checker does: no schema validation, errors as observations."""
        method = self._methods.get(name) if isinstance(name, str) else None
        if method is None:
            return error_observation(
                f"no function {name!r} in {', '.join(self.instances) or 'no backend'}", executed=False
            )
        if not isinstance(arguments, dict):
            return error_observation(f"arguments must be a JSON object, got {type(arguments).__name__}", False)
        arguments = copy.deepcopy(arguments)  # backends keep and mutate argument objects; the caller's stay intact
        return safe_call(lambda: method(**arguments), self.timeout_s, self.max_chars)
