"""benchmarks/compare_devices.py: the same cells on two devices, paired and summarised."""

from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compare_devices.py"
spec = importlib.util.spec_from_file_location("compare_devices", SCRIPT)
compare_devices = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_devices)


def cell(label: str, seed: int, top1: float, device: str, fingerprint: str = "f") -> dict:
    return {"label": label, "arch": "convnet", "arch_width": 32, "arch_depth": 3, "arch_feature": "flatten",
            "target": "cifar10",
            "mode": "finetune", "seed": seed, "top1": top1, "device": device, "set_fingerprint": fingerprint,
            "finetune_iterations": 1000, "pretrain_steps": 1000}


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text(json.dumps(rows))
    return path


def test_pairs_shared_cells_and_summarises(tmp_path: Path) -> None:
    a = write(tmp_path / "a.json", [cell("boost", 0, 60.0, "cpu"), cell("boost", 1, 62.0, "cpu"),
                                     cell("random", 0, 50.0, "cpu")])
    b = write(tmp_path / "b.json", [cell("boost", 0, 61.0, "gpu"), cell("boost", 1, 61.0, "gpu"),
                                     cell("boost", 2, 70.0, "gpu")])
    result = compare_devices.compare(compare_devices.read_cells(a), compare_devices.read_cells(b))
    assert result["n"] == 2  # only boost seeds 0 and 1 are on both
    assert result["mean_diff"] == pytest.approx(0.0)
    assert result["mean_abs_diff"] == pytest.approx(1.0)
    assert result["max_abs_diff"] == pytest.approx(1.0)
    assert result["b_higher"] == 1
    assert result["seed_spread_a"] == pytest.approx(2 ** 0.5)  # stdev of 60 and 62; random has one seed
    assert result["seed_spread_b_on_a_rows"] == pytest.approx(statistics.stdev([61.0, 61.0, 70.0]))


def test_cells_of_different_sets_do_not_pair_and_other_lengths_are_refused(tmp_path: Path) -> None:
    a = write(tmp_path / "a.json", [cell("boost", 0, 60.0, "cpu", fingerprint="x")])
    b = write(tmp_path / "b.json", [cell("boost", 0, 61.0, "gpu", fingerprint="y")])
    with pytest.raises(SystemExit, match="share no cell"):
        compare_devices.compare(compare_devices.read_cells(a), compare_devices.read_cells(b))
    longer = {**cell("boost", 0, 61.0, "gpu", fingerprint="x"), "finetune_iterations": 3000}
    longer = write(tmp_path / "c.json", [longer])
    with pytest.raises(SystemExit, match="finetune_iterations differs"):
        compare_devices.compare(compare_devices.read_cells(a), compare_devices.read_cells(longer))


def test_refuses_a_cell_twice_and_unreadable_files(tmp_path: Path) -> None:
    twice = write(tmp_path / "twice.json", [cell("boost", 0, 60.0, "cpu"), cell("boost", 0, 61.0, "cpu")])
    with pytest.raises(SystemExit, match="appears twice"):
        compare_devices.read_cells(twice)
    with pytest.raises(SystemExit, match="cannot read results"):
        compare_devices.read_cells(tmp_path / "missing.json")
