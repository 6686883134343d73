"""Distillation's soft targets: the teacher's weights, their file, and `python -m eval teacher` on BFCL."""

import argparse
import json
import math

import pytest

from core.build import _preset, add_arguments
from core.examples import RETRIEVAL
from core.soft_targets import read_soft_targets, write_soft_targets
from core.tools import CatalogError
from eval.__main__ import main
from eval.teacher import fuse, teacher_distribution


def test_teacher_weights_fall_from_the_best_tool_to_the_kth_by_the_temperature():
    ranked = [("a", 12.0), ("b", 9.0), ("c", 4.0)]
    distribution = teacher_distribution(ranked, temperature=0.5)
    probs = dict(distribution)
    assert math.isclose(sum(probs.values()), 1.0) and probs["a"] > probs["b"] > probs["c"]
    assert math.isclose(probs["c"] / probs["a"], math.exp(-1 / 0.5))  # the k-th weighs exp(-1/T) of the best
    scaled = dict(teacher_distribution([(t, 0.01 * s) for t, s in ranked], temperature=0.5))
    assert all(math.isclose(scaled[t], probs[t]) for t in probs)  # scale-free: cosine and BM25 scores mix
    assert teacher_distribution([("a", 1.0), ("b", 1.0)], 0.5) == [] and teacher_distribution([("a", 3.0)], 0.5) == []
    assert fuse([[("a", 1.0)], [("a", 0.5), ("b", 0.5)], []]) == [("a", 0.75), ("b", 0.25)]


def test_soft_targets_round_trip_and_bad_files_name_the_line(tmp_path):
    path = write_soft_targets(tmp_path / "t.jsonl", {"weather in Rome": [("w&&now", 0.6), ("w&&later", 0.2)]})
    read = read_soft_targets(path, {"w&&now", "w&&later"})
    assert read.keys() == {"weather in Rome"}
    assert [(t, round(p, 6)) for t, p in read["weather in Rome"]] == [("w&&now", 0.75), ("w&&later", 0.25)]
    for line, problem in [
        ('{"query": "q", "tools": [["w&&now", -1]]}', "non-negative"),
        ('{"query": "q", "tools": [["w&&now", 0]]}', "not all 0"),
        ('{"query": "q", "tools": [["other&&api", 1]]}', "not in the catalog: other&&api"),
        ('{"query": "q"}', "expected"),
        ("not json", "expected"),
        ('{"query": "q", "tools": [["w&&now", 1]]}\n{"query": "q", "tools": [["w&&now", 1]]}', "line 2: query"),
    ]:
        (tmp_path / "bad.jsonl").write_text(line + "\n")
        with pytest.raises(CatalogError, match=problem):
            read_soft_targets(tmp_path / "bad.jsonl", {"w&&now"})


def test_eval_teacher_writes_bm25_targets_for_every_training_query(tmp_path, capsys):
    out = tmp_path / "teacher.jsonl"
    command = ["teacher", "--corpus", "bfcl", "--preset", "tiny", "--systems", "bm25", "--k", "8"]
    assert main([*command, "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    targets = read_soft_targets(out)
    assert summary["with_targets"] == len(targets) > 0 and summary["queries"] >= len(targets)
    assert all(len(tools) == 8 and math.isclose(sum(p for _, p in tools), 1.0) for tools in targets.values())
    assert main(["teacher", "--systems", "grep", "--out", str(out)]) == 2


def test_distill_needs_a_teacher_and_defaults_to_weight_one():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert _preset(parser.parse_args(["--teacher", "t.jsonl"])).stages[RETRIEVAL].distill == 1.0
    assert _preset(parser.parse_args(["--teacher", "t.jsonl", "--distill", "0.5"])).stages[RETRIEVAL].distill == 0.5
    assert _preset(parser.parse_args([])).stages[RETRIEVAL].distill == 0.0
    with pytest.raises(SystemExit, match="--teacher"):
        _preset(parser.parse_args(["--distill", "2"]))
