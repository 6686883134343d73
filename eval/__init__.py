"""Evaluation: ranking metrics, statistics, the DuckDB results store and the baseline retrievers."""
