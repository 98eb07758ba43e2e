"""benchmarks/gpu/speed.py and its helpers: FLOP counting, the measuring helpers, JSON merging and the table.

The whole benchmark end to end takes over a minute on the CPU (`python benchmarks/gpu/speed.py --tiny --old src
--out /tmp/speed.json`); these tests cover its pure parts. The JSON below is a FIXTURE, not a measurement.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / "benchmarks" / "gpu"
TEACHER = ROOT / "artifacts" / "teachers" / "cifar100_convnet32_cpu"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, GPU / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


speed = load("speed")
speed_flops = load("speed_flops")
speed_table = load("speed_table")

SMALL = ["outer.batch_size=32", "outer.model.width=8", "outer.model.depth=2", "pool.size=2"]
TINY_TEACHER = ["model.name=convnet", "model.width=8", "model.depth=2", "projector=[32,32]"]

# A FIXTURE for the renderer (made-up numbers, not a result of any run)
FIXTURE = {
    "kind": "ssdd.speed", "date": "2000-01-01T00:00:00+00:00", "command": "python3 speed.py --fixture",
    "device": "FIXTURE GPU (not a measurement)", "torch": "0.0", "cuda": "0.0", "data": "synthetic, CIFAR shapes",
    "commit": {"old": "c04162e", "new": "abcdef0"}, "new_args": {"teacher": ["compile=on"], "distill": [],
                                                                  "evaluate": []},
    "bf16_matmul": {"n": 8192, "repeats": 20, "median_ms": 1.0, "tflops": 1000.0, "timer": "CUDA events"},
    "stages": {
        "teacher": {"unit": "images/s", "speedup": 2.0,
                    "old": {"value": 10_000.0, "tflops": 100.0, "fraction_of_bf16": 0.1,
                            "peak_allocated_bytes": 2 * 2**30, "gpu": {"util_mean": 50.0}},
                    "new": {"value": 20_000.0, "tflops": 200.0, "fraction_of_bf16": 0.2,
                            "peak_allocated_bytes": 3 * 2**30, "gpu": None}},
        "evaluate_cell": {"unit": "s", "speedup": 4.0, "old": {"value": 100.0}, "new": {"value": 25.0}},
    },
    "teacher_parts": {"result": {"batch": 256, "timer": "CUDA events", "steps": 60, "step_ms": 8.0,
                                 "images_per_s": 32_000.0, "verdict": "augment takes 4.00 ms (50 %)",
                                 "median_ms": {"augment": 4.0, "forward": 2.0, "backward": 1.5, "optimizer": 0.5},
                                 "plain": {"step_ms": 16.0, "images_per_s": 16_000.0, "verdict": "plain verdict",
                                           "median_ms": {"augment": 8.0, "forward": 2.0, "backward": 1.5,
                                                         "optimizer": 4.5}},
                                 "plain_over_fast": {"augment": 2.0, "forward": 1.0, "backward": 1.0,
                                                     "optimizer": 9.0, "step": 2.0},
                                 "sync_check": {"steps": 3, "synchronises": True, "part": "log",
                                                "error": "called a synchronizing CUDA operation"}}},
    "official_krr_st": {"ratio": {"min": 2.5, "median": 3.0, "max": 3.5}, "ssdd_steps_per_s": {"median": 30.0},
                        "official_steps_per_s": {"median": 10.0}, "pairs": 2, "partial": True,
                        "settings": {"preset": "distill_krr_st_cifar100"}, "official_aug": "kornia"},
    "protocol": {"statement": "9 of 45 (row, seed, target) cells finished in 180 s (stopped at the deadline)"},
    "parts_skipped": {"mkdt": "no time left (3 s)"},
}


def test_count_is_two_flops_per_multiply_add() -> None:
    layer = nn.Linear(16, 8, bias=False)
    assert speed_flops.count(lambda: layer(torch.zeros(4, 16))) == 2 * 4 * 16 * 8


def test_teacher_flops_scale_with_the_batch_on_meta() -> None:
    small = speed_flops.teacher_flops([*TINY_TEACHER, "optim.batch_size=8"], "meta")
    large = speed_flops.teacher_flops([*TINY_TEACHER, "optim.batch_size=16"], "meta")
    assert small["flops_per_step"] > 0
    # BatchNorm and the 32x32 cross-correlation do not scale with the batch, the convolutions do
    assert large["flops_per_step"] == pytest.approx(2 * small["flops_per_step"], rel=0.02)


def test_distill_flops_parts_and_boost_rows() -> None:
    krr = speed_flops.distill_flops("distill_krr_st_cifar100", ["budget=6", *SMALL], TEACHER, "meta")
    assert krr["flops_per_step"] == sum(krr["parts"].values())
    assert krr["support_rows"] == krr["m"]
    assert all(value > 0 for value in krr["parts"].values())
    boost = speed_flops.distill_flops("cifar100", ["budget=12", "boost.image_bases=0", "boost.target_bases=8",
                                                   "boost.augmentations=[identity,rot90]", *SMALL], TEACHER, "meta")
    assert boost["support_rows"] == 2 * boost["m"]
    # same real batch, same teacher: the teacher's forward on it costs the same in both methods
    assert boost["parts"]["teacher_forward_real"] == krr["parts"]["teacher_forward_real"]


def test_window_rate_drops_the_first_window() -> None:
    rows = [{"steps_per_s": 1.0}, {"steps_per_s": 4.0}, {"steps_per_s": 6.0}]
    assert speed.window_rate(rows) == 5.0
    assert speed.window_rate(rows[:1]) == 1.0
    assert speed.window_rate([]) is None


def test_arrival_rate_is_the_counter_over_the_wall_time_between_lines() -> None:
    arrivals = speed.Arrivals(None)
    arrivals.seen = [(1.0, 1), (2.0, 2), (5.0, 4)]  # the third and fourth lines arrived together
    rows = [{"step": 50}, {"step": 100}, {"step": 150}, {"step": 200}]
    assert speed.arrival_rate(arrivals, rows) == (200 - 50) / (5.0 - 1.0)
    assert speed.arrival_rate(arrivals, [{"epoch": 1}, {"epoch": 2}], per_unit=256) == 256 / 1.0
    arrivals.seen = [(1.0, 1)]
    assert speed.arrival_rate(arrivals, rows) is None


def test_arrivals_polls_a_growing_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    arrivals = speed.Arrivals(path)
    arrivals.poll()  # no file yet
    path.write_text('{"step": 1}\n')
    arrivals.poll()
    arrivals.poll()  # unchanged: nothing new
    path.write_text('{"step": 1}\n{"step": 2}\n')
    arrivals.poll()
    assert [lines for _, lines in arrivals.seen] == [1, 2]


def test_parse_utilisation() -> None:
    text = "10, 500\n30, 700\n[N/A], 1\n"
    assert speed.parse_utilisation(text) == {"samples": 2, "util_mean": 20.0, "util_median": 20.0, "util_max": 30,
                                             "memory_used_mib_max": 700}
    assert speed.parse_utilisation("") is None


def test_ratios_and_achieved_rate() -> None:
    rate = {"old": {"value": 2.0}, "new": {"value": 6.0}}
    speed.add_ratios(rate, True)
    assert rate["speedup"] == 3.0
    seconds = {"old": {"value": 30.0}, "new": {"value": 10.0}}
    speed.add_ratios(seconds, False)
    assert seconds["speedup"] == 3.0
    speed.add_tflops(rate, 1e12, 1, 100.0)  # 1 TFLOP per step at 6 steps/s against a 100 TFLOP/s card
    assert rate["new"]["tflops"] == pytest.approx(6.0)
    assert rate["new"]["fraction_of_bf16"] == pytest.approx(0.06)
    speed.add_ratios(missing := {"old": {"value": None}, "new": {"value": 1.0}}, True)
    assert missing["speedup"] is None


def test_cell_flops_counts_pretraining_images_and_finetuning_steps() -> None:
    rows = [{"mode": "finetune", "pretrain_samples": 512, "finetune_iterations": 3},
            {"mode": "linear_probe", "pretrain_samples": 512, "finetune_iterations": None}]
    flops = {"pretrain_flops_per_step": 256.0, "pretrain_batch": 256, "finetune_flops_per_step": 10.0}
    assert speed.cell_flops(rows, flops) == 512 + 30


def test_cell_seconds_counts_pretraining_once() -> None:
    rows = [{"pretrain_s": 10.0, "eval_s": 2.0}, {"pretrain_s": 10.0, "eval_s": 3.0}]
    assert speed.cell_seconds(rows) == 15.0
    assert speed.cell_seconds([]) is None


def test_synthetic_data_is_in_ssdd_format(tmp_path: Path) -> None:
    from ssdd.config import DataConfig
    from ssdd.data import load_split

    scale = {"train": 200, "test": 10, "flowers": (102, 102, 102)}
    paths = speed.make_data(tmp_path, scale)
    train = load_split(DataConfig(source="npz", path=str(paths["cifar100"])), "train")
    assert train.images.shape == (200, 3, 32, 32) and train.num_classes == 100
    flowers = load_split(DataConfig(source="npz", path=str(paths["flowers102"])), "val")
    assert flowers.images.shape[0] == 102 and flowers.num_classes == 102


def test_merge_keeps_earlier_parts_and_lets_later_win() -> None:
    first = {"stages": {"teacher": {"unit": "images/s"}}, "device": "A"}
    second = {"stages": {"evaluate_cell": {"unit": "s"}}, "device": "B"}
    merged = speed_table.merge(first, second)
    assert set(merged["stages"]) == {"teacher", "evaluate_cell"} and merged["device"] == "B"
    assert first["stages"] == {"teacher": {"unit": "images/s"}}  # inputs untouched


def test_table_renders_the_fixture() -> None:
    text = speed_table.render([FIXTURE, {"date": "2000-01-02", "command": "second call", "stages": {}}])
    assert "FIXTURE GPU" in text and "c04162e" in text and "abcdef0" in text
    assert "| Teacher (`teacher_cifar100`) | images/s | 10,000.00 | 20,000.00 | 2.00x | 100 / 200 | 10 % / 20 % | " \
           "2.0 / 3.0 | 50 / n/a |" in text
    assert "| Evaluation, one cell (`evaluate_full`) | s | 100.00 | 25.00 | 4.00x |" in text
    assert "1000 TFLOP/s" in text and "`second call`" in text and "teacher: compile=on" in text
    assert "mkdt (no time left (3 s))" in text
    assert "augment 4.00 ms, forward 2.00 ms, backward 1.50 ms, optimizer 0.50 ms; 8.00 ms per step" in text
    assert "augment 8.00 ms (2.00x), forward 2.00 ms (1.00x), backward 1.50 ms (1.00x), optimizer 4.50 ms (9.00x); " \
           "16.00 ms per step = 16,000 images/s. plain verdict." in text
    assert "synchronises in log (called a synchronizing CUDA operation)" in text
    assert "ratio min / median / max 2.50 / 3.00 / 3.50 over 2 pairs (stopped at the deadline)" in text
    assert "9 of 45 (row, seed, target) cells finished" in text
    assert "KRR-ST (" not in text  # a stage that was not run has no row


def test_run_process_stops_at_the_deadline(tmp_path: Path) -> None:
    code, wall = speed.run_process([sys.executable, "-c", "import time; time.sleep(30)"], {}, 1.0, tmp_path / "log")
    assert code is None and wall < 25


def test_new_args_are_checked_against_the_new_code_schemas(monkeypatch: pytest.MonkeyPatch) -> None:
    from ssdd.config import ConfigError

    def check(distill: list[str], krr_st: list[str] = (), variants: list[str] = ()) -> None:
        # in this process: the same code the call runs under the new src
        spec = json.dumps({"teacher": ["precision=bf16"], "distill": distill, "evaluate": [], "krr_st": list(krr_st),
                           "boost": [], "variants": list(variants)})
        monkeypatch.setattr(sys, "argv", ["-c", spec])
        exec(speed.CHECK_ARGS, {})

    check(["outer.channels_last=on"], ["outer.teacher_cache=on"], ["boost:bf16:outer.precision=bf16"])
    with pytest.raises(ConfigError, match="no_such_setting"):
        check(["outer.no_such_setting=on"])
    with pytest.raises(ConfigError, match="no_such_setting"):
        check([], ["outer.no_such_setting=on"])
    with pytest.raises(ConfigError, match="no_such_setting"):
        check([], [], ["boost:x:outer.no_such_setting=on"])
    check([], [], ["krr_st:compiled:outer.compile=on outer.precision=bf16"])
    with pytest.raises(ConfigError, match=r"outer\.compile='maybe'"):  # a value out of range, not only a name
        check([], [], ["krr_st:x:outer.compile=maybe"])
    check([], [], ["evaluate:compiled:compile=on precision=bf16"])  # an evaluation cell's variant: its schema
    with pytest.raises(ConfigError, match=r"compile='maybe'"):
        check([], [], ["evaluate:x:compile=maybe"])


def test_variants_name_a_stage_and_a_run_of_their_own(capsys: pytest.CaptureFixture[str]) -> None:
    args = speed.parse_args(["--out", "x.json", "--old", "src", "--variant", "evaluate:compiled:compile=on",
                             "--variant", "boost:bf16:outer.precision=bf16"])
    assert args.variant == ["evaluate:compiled:compile=on", "boost:bf16:outer.precision=bf16"]
    for bad in (["teacher:x:compile=on"], ["evaluate:new:compile=on"], ["evaluate:compile=on"],
                ["evaluate:c:compile=on", "evaluate:c:precision=bf16"]):
        with pytest.raises(SystemExit):
            speed.parse_args(["--out", "x.json", "--old", "src", *[a for v in bad for a in ("--variant", v)]])
        assert "STAGE:NAME:OVERRIDES" in capsys.readouterr().err


def test_peak_writes_its_json_for_any_exit(tmp_path: Path) -> None:
    out = tmp_path / "peak.json"
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, str(GPU / "peak.py"), str(out), "no-such-command"], env=env,
                          capture_output=True, text=True)
    record = json.loads(out.read_text())
    assert done.returncode == record["exit_code"] != 0
    assert record["command"] == ["no-such-command"] and record["peak_allocated_bytes"] is None


def test_a_run_with_the_teacher_cache_counts_no_teacher_forward() -> None:
    flops = {"flops_per_step": 10.0, "parts": {"teacher_forward_real": 7.0, "pool_forward_real": 3.0}}
    assert speed.step_flops(flops, []) == 10.0
    assert speed.step_flops(flops, ["outer.teacher_cache=on", "data.subset=5000"]) == 3.0
    assert speed.step_flops(flops, ["outer.teacher_cache=on", "outer.teacher_cache=off"]) == 10.0  # the last holds
    assert speed.step_flops({}, []) is None


def test_table_shows_variants_and_projects_the_presets_whole_loops() -> None:
    # a FIXTURE (made-up numbers): KRR-ST new with a teacher cache built in 60 s on 5,000 images, a Boost variant
    stages = {"distill_krr_st": {"unit": "steps/s", "preset": "distill_krr_st_cifar100", "speedup": 4.0,
                                 "old": {"value": 40.0, "exit_code": 0},
                                 "new": {"value": 160.0, "exit_code": 0, "teacher_cache_s": 60.0,
                                         "overrides": ["outer.teacher_cache=on", "data.subset=5000"]}},
              "distill_boost": {"unit": "steps/s", "preset": "cifar100", "speedup": 2.0,
                                "old": {"value": 25.0, "exit_code": 0}, "new": {"value": 50.0, "exit_code": 0},
                                "bf16": {"value": 100.0, "exit_code": 0, "speedup": 4.0,
                                         "overrides": ["outer.precision=bf16"]}}}
    text = speed_table.render([{**FIXTURE, "stages": stages}])
    assert "| Boost (`cifar100`), new with outer.precision=bf16 (bf16) | steps/s | | 100.00 | 4.00x |" in text
    # 160,000 / 40 / 60 = 66.7 min; new: 160,000 / 160 / 60 = 16.7 min + 60 s x 10 = 10.0 min of cache
    assert "old 66.7 min; new 26.7 min (16.7 of steps + 10.0 of teacher cache" in text
    assert "30,000 outer steps of `cifar100` at these rates: old 20.0 min; new 10.0 min." in text


def test_teacher_parts_times_both_paths_of_the_real_step(tmp_path: Path) -> None:
    # two steps of a tiny teacher on each path (the plain and the fast one of src/ssdd/teacher/step.py)
    teacher_parts = load("teacher_parts")
    data = speed.make_data(tmp_path / "data", {"train": 200, "test": 8, "flowers": (102, 102, 102)})
    out = tmp_path / "parts.json"
    teacher_parts.main(["--data", str(data["cifar100"]), "--device", "cpu", "--steps", "2", "--warmup", "0",
                        "--count-ops", "--out", str(out), *TINY_TEACHER, "optim.batch_size=16"])
    result = json.loads(out.read_text())
    for numbers, fast in ((result, True), (result["plain"], False)):
        assert numbers["fast"] is fast and numbers["compiled"] is False
        assert list(numbers["median_ms"]) == list(teacher_parts.PARTS)
        assert all(ms > 0 for ms in numbers["median_ms"].values())
        assert numbers["step_ms"] == pytest.approx(sum(numbers["median_ms"].values()))
        assert all(count > 0 for count in numbers["aten_ops"].values())
    # LARS over all tensors at once dispatches fewer operators than one tensor at a time
    assert result["aten_ops"]["optimizer"] < result["plain"]["aten_ops"]["optimizer"]
    assert set(result["plain_over_fast"]) == {*teacher_parts.PARTS, "step"}
    assert result["batch"] == 16 and result["steps"] == 2 and result["timer"] == "perf_counter"
    assert result["sync_check"]["synchronises"] is None  # CUDA only
    assert speed_table.teacher_parts({"teacher_parts": {"result": result}})


def test_teacher_parts_sync_check_records_the_part_that_synchronises(monkeypatch: pytest.MonkeyPatch) -> None:
    teacher_parts = load("teacher_parts")
    modes: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: None)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)

    class Path_:  # a step whose log part reads the device, as CUDA's check would report it
        def parts(self, idx: object, step: int) -> list:
            def reads() -> None:
                raise RuntimeError("called a synchronizing CUDA operation\nmore")
            return [lambda: None] * 4 + [reads]

    check = teacher_parts.sync_check(Path_(), [torch.zeros(1)] * 3)
    assert check == {"steps": 3, "synchronises": True, "part": "log", "error": "called a synchronizing CUDA operation"}
    assert modes == ["error", "default"]  # the check is switched off again


def test_read_results_adds_the_cells_saved_in_a_round_cut_short(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps([{"label": "a", "mode": "finetune"}]))
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "x.json").write_text(json.dumps([{"label": "b", "mode": "finetune"},
                                                          {"label": "a", "mode": "finetune"}]))
    (tmp_path / "cells" / ".x.json.123.tmp").write_text("{partial")  # a killed write: never read
    assert [r["label"] for r in speed.read_results(tmp_path)] == ["a", "b"]


def test_teacher_parts_saves_its_summary_while_it_runs(tmp_path: Path) -> None:
    """A run stopped at a deadline still reports the steps it timed: profile() hands partial summaries to `save`."""
    from ssdd.config import load_config
    from ssdd.teacher.config import TeacherConfig

    npz = speed.write_npz(tmp_path / "d.npz", {"train": speed.synthetic_split(np.random.default_rng(0), 64, 4),
                                                "test": speed.synthetic_split(np.random.default_rng(1), 16, 4)}, 4)
    cfg = load_config(TeacherConfig, "teacher_cifar100", [f"data.path={npz}", "model.name=convnet", "model.width=4",
                                                          "model.depth=1", "projector=[8,8]", "optim.batch_size=16"])
    saved: list[dict] = []
    load("teacher_parts").profile(cfg, torch.device("cpu"), 12, 1, "off", 40_000, False, saved.append)
    assert [s["steps_timed"] for s in saved] == [10] and saved[0]["partial"] and "plain" in saved[0]
    fixture = {**FIXTURE, "teacher_parts": {"result": {**FIXTURE["teacher_parts"]["result"], "partial": True,
                                                       "steps_timed": 10}}}
    assert "median of 10 (stopped at the deadline)" in speed_table.render([fixture])
