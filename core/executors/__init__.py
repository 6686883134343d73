"""Tool executors: the `Executor` interface, the BFCL backends and the simulated ToolBench environment."""

from .base import Executor, Observation, safe_call, validate_arguments
from .bfcl import BfclExecutor
from .toolbench import ResponseCache, ToolBenchSimulator

__all__ = [
    "BfclExecutor",
    "Executor",
    "Observation",
    "ResponseCache",
    "ToolBenchSimulator",
    "safe_call",
    "validate_arguments",
]
