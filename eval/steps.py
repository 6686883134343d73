"""Benchmark steps run as `python -m …` subprocesses: measured (wall time, peak RSS of that process alone), and
recorded (a command's JSON report kept in a file, so a rerun of the benchmark skips the step)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def run_measured(command: list[str]) -> tuple[str, float, float]:
    """Run `python -m <command>`; its stdout, wall seconds and peak RSS in MB (of that process alone)."""
    started = time.time()
    process = subprocess.Popen([sys.executable, "-m", *command], stdout=subprocess.PIPE, text=True)
    stdout = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"`python -m {' '.join(command)}` failed with exit status {process.returncode}")
    return stdout, round(time.time() - started, 1), round(usage.ru_maxrss / 1024)


def run_step(command: list[str], report: Path) -> dict:
    """The JSON report `python -m <command>` prints last (builds and add-tools print wall_s and peak_rss_mb), kept
    in `report`: read from there when the step already ran."""
    if not report.exists():
        stdout, _, _ = run_measured(command)
        report.write_text(stdout[stdout.index("{") :], encoding="utf-8")
    return json.loads(report.read_text(encoding="utf-8"))
