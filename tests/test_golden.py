"""The golden check: the demo study and three short distillations (benchmarks/golden.py) give bit-identical
tensors, stage folders (cache keys) and results to the fingerprints committed in tests/golden/."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "fingerprints.json"
pytestmark = pytest.mark.slow


def _golden_module():
    spec = importlib.util.spec_from_file_location("golden", REPO / "benchmarks" / "golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_finds_every_kind_of_change():
    golden = _golden_module()
    base = {"tensors": {"a/x.safetensors": {"w": "00"}},
            "results": {"e/results.json": [{"top1": 50.0, "method": "boost"}]}}
    assert golden.compare(base, json.loads(json.dumps(base))) == []
    changed = json.loads(json.dumps(base))
    changed["tensors"]["a/x.safetensors"]["w"] = "01"
    changed["results"]["e/results.json"][0]["top1"] = 50.01
    changed["results"]["e/results.json"][0]["pretrain_samples"] = 10  # a field added later is no difference
    problems = golden.compare(base, changed)
    assert len(problems) == 2 and "tensors: a/x.safetensors differs" in problems
    moved = {"tensors": {"a-2/x.safetensors": {"w": "00"}}, "results": base["results"]}
    assert golden.compare(base, moved) == ["tensors: a/x.safetensors is missing", "tensors: a-2/x.safetensors is new"]


def test_demo_study_and_short_runs_are_bit_identical(tmp_path):
    golden = _golden_module()
    committed = json.loads(GOLDEN.read_text())
    if committed["platform"] != golden.platform():
        pytest.skip(f"fingerprints taken on {committed['platform']}, this is {golden.platform()}")
    golden.run_all(tmp_path)
    assert golden.compare(committed, golden.fingerprint(tmp_path)) == []
