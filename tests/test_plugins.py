"""Plugins (ssdd.plugins): a method and an architecture registered by modules outside ssdd, named by
SSDD_PLUGINS or by an installed entry point, are found by every ssdd process: the command (and its --help) and
the processes `ssdd evaluate --processes` starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = '''
import torch
from torch import nn
from ssdd.distill.budget import teacher_target_samples
from ssdd.distill.registry import DistillMethod, DistillResult, register_method
from ssdd.distill.views import register_view
from ssdd.distill.verify import verify_teacher_targets
from ssdd.models import register


def distill(ctx):
    m = teacher_target_samples(ctx.cfg, tuple(ctx.source.images.shape[1:]), ctx.teacher.feature_dim, len(ctx.source))
    images = ctx.source.images[:m].float() / 255
    return DistillResult({"images": images, "targets": ctx.teacher(images.to(ctx.device)).cpu()}, {"m": m})


register_method(DistillMethod("first_images", distill, lambda s, manifest: (s["images"], s["targets"]),
                              samples=teacher_target_samples, verify=verify_teacher_targets,
                              note="the first source images, teacher targets", version="1"))


class Tiny(nn.Module):
    def __init__(self, resolution):
        super().__init__()
        self.net, self.feature_dim = nn.Sequential(nn.Flatten(), nn.Linear(3 * resolution ** 2, 8)), 8

    def forward(self, x):
        return self.net(x)


register("tiny_mlp")(lambda cfg, resolution: Tiny(resolution))
register_view("shift2", lambda x: x.roll(2, dims=-1), exact_permutation=True)
'''


def _run(tmp_path: Path, *argv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(tmp_path / "site"), *sys.path])
    return subprocess.run([sys.executable, "-m", "ssdd", *argv], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **env})


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "my_plugin.py").write_text(PLUGIN)
    return tmp_path


def _distill(tmp_path: Path, env: dict[str, str], out: str = "set") -> subprocess.CompletedProcess:
    return _run(tmp_path, "distill", "-c", "demo_distill", "method=first_images", "budget=5", "--no-progress",
                f"teacher={tmp_path / 'teacher'}", f"out_dir={out}", env=env)


def test_a_plugin_named_by_ssdd_plugins_runs_in_every_process(site, tmp_path):
    from conftest import make_teacher

    make_teacher(tmp_path / "teacher")
    plain = _distill(tmp_path, {"SSDD_PLUGINS": ""})
    assert plain.returncode == 2 and "method='first_images': unknown distillation method" in plain.stderr
    assert "a plugin's method: name its module in SSDD_PLUGINS, or install it as an entry point" in plain.stderr
    env = {"SSDD_PLUGINS": "my_plugin"}
    done = _distill(tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert "and those of the plugins my_plugin" in " ".join(_run(tmp_path, "distill", "--help", env=env).stdout.split())
    # its view is one of Boost's predefined augmentations
    boost = _run(tmp_path, "distill", "-c", "demo_distill_boost", "outer.steps=2", "boost.target_bases=4",
                 "boost.augmentations=[identity,shift2]", f"teacher={tmp_path / 'teacher'}", "out_dir=boost",
                 "--no-progress", env=env)
    assert boost.returncode == 0, boost.stderr
    unknown = _run(tmp_path, "show", "boost", env={"SSDD_PLUGINS": ""})
    assert unknown.returncode == 2 and "unknown augmentation 'shift2'" in unknown.stderr
    # its sets are scored by processes of their own, with the plugin's architecture, and reported
    evaluate = _run(tmp_path, "evaluate", "-c", "demo_evaluate", f"teacher={tmp_path / 'teacher'}", "seeds=1",
                    "models=[{name: tiny_mlp}]", "pretrain.max_iterations=2", "finetune.iterations=2",
                    "finetune.small_iterations=2", "probe.iterations=2", "full_data.enabled=false",
                    "full_data.same_recipe=false", "cka_images=0", "out_dir=eval", "--no-progress",
                    "--processes", "2", "--distilled", "set", "boost", env=env)
    assert evaluate.returncode == 0, evaluate.stderr
    report = _run(tmp_path, "report", "eval", env=env)
    assert report.returncode == 0, report.stderr
    assert "the first source images, teacher targets" in (tmp_path / "eval" / "report.md").read_text()


def test_an_installed_entry_point_is_a_plugin_and_one_that_fails_to_import_is_one_line(site, tmp_path):
    from conftest import make_teacher

    make_teacher(tmp_path / "teacher")
    info = tmp_path / "site" / "my_plugin_dist-1.0.dist-info"  # what pip install leaves for a package
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin-dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[ssdd.plugins]\nfirst_images = my_plugin\n")
    assert _distill(tmp_path, {"SSDD_PLUGINS": ""}).returncode == 0
    broken = _distill(tmp_path, {"SSDD_PLUGINS": "no_such_module"}, out="other")
    assert broken.returncode == 2
    assert broken.stderr.strip() == ("ssdd distill: error: plugin no_such_module (named by SSDD_PLUGINS) failed to "
                                     "import: ModuleNotFoundError: No module named 'no_such_module' (a module in the "
                                     "current folder: add the folder to PYTHONPATH; the `ssdd` command does not "
                                     "look there)")


def test_a_plugins_version_enters_its_sets_study_keys_and_ssdds_methods_keep_theirs():
    from ssdd.config import load_config
    from ssdd.distill.config import DistillConfig
    from ssdd.distill.registry import DistillMethod, register_method, unregister_method
    from ssdd.study.runner import stage_key

    def key_with(version: str) -> str:
        register_method(DistillMethod("versioned", lambda ctx: None, lambda s, m: (s, m), version=version))
        try:
            return stage_key("distill", load_config(DistillConfig, "demo_distill", ["method=versioned"]), ["t"])
        finally:
            unregister_method("versioned")

    assert key_with("1") != key_with("2") != key_with("")
    assert key_with("") == stage_key("distill", load_config(DistillConfig, "demo_distill", ["method=versioned"]),
                                     ["t"])  # no version: the key as before the field existed


def test_a_plugin_that_fails_to_import_fails_every_lookup_and_ssdd_check_says_so(monkeypatch, capsys):
    """The first lookup's error comes again at every later one (not a silent "unknown method" with the plugins
    after it never imported), and `ssdd check` names the plugin instead of advising to reinstall torch."""
    import ssdd.plugins as plugins
    from ssdd.cli.check import run_check
    from ssdd.distill.registry import get_method

    monkeypatch.setenv("SSDD_PLUGINS", "no_such_plugin_module")
    monkeypatch.setattr(plugins, "_state", "not loaded")
    monkeypatch.setattr(plugins, "_failure", None)
    for _ in range(2):
        with pytest.raises(ValueError, match=r"^plugin no_such_plugin_module \(named by SSDD_PLUGINS\) failed to "):
            get_method("krr_st")
    assert run_check() == 1
    out = capsys.readouterr().out
    assert "[FAIL] plugins" in out and "a plugin fails to import" in out and "reinstall torch" not in out
