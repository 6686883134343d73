"""Tool executors: the `Executor` interface and its BFCL backend implementation."""
from .base import Executor, Observation, safe_call, validate_arguments
from .bfcl import BfclExecutor

__all__ = ["BfclExecutor", "Executor", "Observation", "safe_call", "validate_arguments"]
