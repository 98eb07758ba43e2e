import argparse
import subprocess
import sys

import pytest
import yaml

from ssdd import __version__
from ssdd.cli import main


def test_check_runs_and_reports(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no data/ here: check must still pass and say how to get data
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "forward/backward cpu" in out and "datasets" in out and "Everything needed" in out


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "ssdd", "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"ssdd {__version__}"


def test_print_config_applies_overrides(capsys):
    assert main(["teacher", "--print-config", "optim.epochs=7", "model.name=convnet"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["optim"]["epochs"] == 7 and cfg["model"]["name"] == "convnet"
    assert cfg["loss"]["lambda_offdiag"] == 0.0051


def test_overrides_may_follow_flags(capsys):
    assert main(["distill", "--print-config", "--no-progress", "budget=7", "boost.image_bases=3", "--resume",
                 "seed=4"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert (cfg["budget"], cfg["boost"]["image_bases"], cfg["seed"]) == (7, 3, 4)
    with pytest.raises(SystemExit):
        main(["distill", "--print-config", "--no-progress", "--bogus"])
    with pytest.raises(SystemExit):
        main(["check", "budget=3"])  # a command without overrides


def test_overrides_may_follow_a_flag_taking_several_values(capsys, tmp_path):
    assert main(["evaluate", "-c", "demo_evaluate", "teacher=T", "--distilled", "A", "B", "out_dir=X", "seed=3",
                 "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert (cfg["out_dir"], cfg["teacher"], cfg["seed"]) == ("X", "T", 3)
    assert cfg["distilled"][-2:] == ["A", "B"] and "out_dir=X" not in cfg["distilled"]
    odd = tmp_path / "set=1"  # a folder whose name holds '=' is still a distilled set
    odd.mkdir()
    assert main(["evaluate", "--print-config", "--distilled", str(odd), "seed=2"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["distilled"] == [str(odd)]


def test_under_torchrun_only_rank_0_prints_the_error(capsys, monkeypatch, tmp_path):
    argv = ["evaluate", "--no-progress", f"out_dir={tmp_path / 'e'}", "--distilled", str(tmp_path / "nowhere")]
    monkeypatch.setattr("ssdd.run.launched.torchrun_env_problem", lambda: None)  # RANK alone stands for a job
    monkeypatch.setenv("RANK", "1")
    assert main(argv) == 2
    assert capsys.readouterr().err == ""
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--bogus"])
    assert info.value.code == 2 and capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ssdd evaluate: error:")


@pytest.mark.parametrize("command", ["teacher", "distill", "experts", "evaluate", "reproduce"])
def test_each_help_shows_overrides_its_own_command_takes(command, capsys):
    """The example in `ssdd COMMAND --help` (copied by users) is made of that command's own settings."""
    from ssdd.cli.commands import OVERRIDE_EXAMPLES

    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert OVERRIDE_EXAMPLES[command] in " ".join(capsys.readouterr().out.split())
    assert main([command, "--print-config", *OVERRIDE_EXAMPLES[command].split()]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    for override in OVERRIDE_EXAMPLES[command].split():
        key, value = override.split("=")
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert node == yaml.safe_load(value), override


def test_an_unknown_flag_shows_the_commands_usage_and_how_settings_are_written(capsys):
    with pytest.raises(SystemExit) as info:
        main(["teacher", "-c", "demo_teacher", "--epochs", "3"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("usage: ssdd teacher ")
    assert err.splitlines()[-1] == ("ssdd teacher: error: unrecognized arguments: --epochs (settings are key=value "
                                    "overrides, e.g. optim.epochs=10; `ssdd teacher --print-config` shows them all)")
    with pytest.raises(SystemExit):  # the valid overrides around the bad flag are not named as unrecognized
        main(["distill", "-c", "demo_distill", "budget=10", "--no-progress", "method=random", "--foo"])
    assert capsys.readouterr().err.splitlines()[-1].startswith("ssdd distill: error: unrecognized arguments: --foo (")
    with pytest.raises(SystemExit):
        main(["show", "x", "--bogus"])  # a command without settings: its usage, no hint
    err = capsys.readouterr().err
    assert err.startswith("usage: ssdd show ")
    assert err.splitlines()[-1] == "ssdd show: error: unrecognized arguments: --bogus"


def test_distill_help_lists_every_registered_method(capsys):
    from ssdd.distill import available_methods

    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for method in available_methods():
        assert (method in text) == (method != "imported"), method  # imported sets come from import-distilled


def test_the_distill_help_names_the_registered_methods_without_importing_them():
    from ssdd.cli.commands import DISTILL_METHODS
    from ssdd.distill import available_methods

    assert sorted(DISTILL_METHODS) == [m for m in available_methods() if m != "imported"]


def subcommands() -> list[str]:
    from ssdd.cli.commands import build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return list(sub.choices)


@pytest.mark.parametrize("argv", [["--help"], ["presets"], *([c, "--help"] for c in subcommands())])
def test_help_and_the_preset_list_do_not_import_torch(argv):
    code = ("import sys\nfrom ssdd.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-500:]
    assert "usage: ssdd" in result.stdout or argv == ["presets"]


def test_bad_override_is_one_clear_line(capsys):
    assert main(["teacher", "--print-config", "optim.epochs=abc"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "optim.epochs" in err


def test_a_process_that_died_under_torchrun_is_named_with_what_the_run_kept(monkeypatch, tmp_path, capsys):
    """One torchrun process killed: the others' collectives fail with gloo's or NCCL's words; rank 0 says that
    another process stopped and how to go on, not "unexpected RuntimeError ... please report it"."""
    import torch.distributed as dist

    import ssdd.cli.commands as cli
    from ssdd.cli.errors import peer_stopped
    from ssdd.run.guard import register_run

    gloo = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [::1]:2")
    assert not peer_stopped(gloo)  # one process: no peer to lose
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert not peer_stopped(gloo)  # before the processes are linked: a failed start, its own error
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    assert peer_stopped(gloo) and not peer_stopped(ValueError())
    for other in ("shape mismatch", "Distributed package doesn't have NCCL built in",
                  "Default process group has not been initialized"):
        assert not peer_stopped(RuntimeError(other)), other

    def failing(args):
        register_run("teacher", tmp_path)
        (tmp_path / "checkpoint.pt").write_bytes(b"")
        raise gloo

    monkeypatch.setattr(cli, "_cmd_presets", failing)
    monkeypatch.setattr("ssdd.run.launched.torchrun_env_problem", lambda: None)  # RANK alone stands for a job
    assert main(["presets"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ssdd presets: error: another process of this run stopped, or lost its connection ({gloo}); "
                   f"the last checkpoint, {tmp_path / 'checkpoint.pt'}, is intact: continue with --resume"]


def test_an_interrupt_is_said_once_for_the_run(monkeypatch, capsys):
    """Ctrl-C and SIGTERM reach every process of a job: rank 0 says it, the others and the processes of `ssdd
    evaluate --processes` (their launcher says what they kept) stay quiet."""
    import ssdd.cli.commands as cli
    from ssdd.run.launched import LOCKED_BY_PARENT

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_presets", interrupted)
    monkeypatch.setattr("ssdd.run.launched.torchrun_env_problem", lambda: None)  # RANK alone stands for a job
    for env, said in (({"RANK": "0"}, True), ({"RANK": "1"}, False), ({"RANK": "0", LOCKED_BY_PARENT: "/x"}, False)):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert main(["presets"]) == 130
        assert bool(capsys.readouterr().err.strip()) == said
        monkeypatch.delenv(LOCKED_BY_PARENT, raising=False)


def test_another_commands_preset_is_named_as_such(capsys):
    assert main(["distill", "-c", "demo_teacher", "--print-config"]) == 2
    assert "demo_teacher is a preset of `ssdd teacher`, not of `ssdd distill`" in capsys.readouterr().err
