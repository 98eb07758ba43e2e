"""docs/cli.md, "From Python": the example runs as written (at tiny lengths, added to each config it loads), so
the names, signatures and return values it shows stay true."""

from __future__ import annotations

import re
from pathlib import Path

import ssdd.config

ROOT = Path(__file__).resolve().parents[1]
# what keeps each command to seconds: appended to the example's own overrides, by schema
TINY = {"TeacherConfig": ["optim.epochs=1", "optim.warmup_epochs=0", "probe.iterations=20"],
        "DistillConfig": ["outer.steps=3", "boost.approx_steps=5"],
        "EvaluateConfig": ["seeds=1", "pretrain.epochs=2", "pretrain.max_iterations=2", "full_data.epochs=1",
                           "finetune.iterations=3", "finetune.small_iterations=3", "probe.iterations=3",
                           "cka_images=16"]}


def example() -> str:
    text = (ROOT / "docs" / "cli.md").read_text()
    section = text[text.index("## From Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_python_example_of_the_docs_runs(tmp_path, monkeypatch, one_thread):
    real = ssdd.config.load_config

    def tiny(schema, path=None, overrides=None):
        return real(schema, path, [*(overrides or []), *TINY[schema.__name__]])

    monkeypatch.setattr(ssdd.config, "load_config", tiny)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(example(), "docs/cli.md", "exec"), scope)
    assert scope["teacher"] == Path("runs/py/teacher/teacher")
    assert scope["images"].shape[0] == scope["targets"].shape[0] > 0
    assert {row["label"] for row in scope["rows"]} >= {"boost@20", "no_pretrain"}
    assert Path(scope["markdown"]).is_file() and Path(scope["html"]).is_file()
