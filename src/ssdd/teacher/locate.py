"""The `teacher=` value of a command: an existing folder, or one line that says what to pass."""

from __future__ import annotations

from pathlib import Path

from ssdd.artifacts.files import MANIFEST
from ssdd.config import ConfigError

TEACHER_HINT = ("pass teacher=PATH, an ssdd teacher folder (train one with 'ssdd teacher' or bring one with "
                "'ssdd import-teacher')")


def require_teacher_folder(path: str) -> Path:
    """The teacher folder named by the config; ConfigError when it is empty or not a folder (naming the
    teachers a study left beside it, where a standalone preset such as demo_distill would look)."""
    if not path:
        raise ConfigError(f"no teacher: {TEACHER_HINT}")
    folder = Path(path)
    if not folder.is_dir():
        found = study_teachers(folder)
        if found:
            also = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise ConfigError(f"no teacher at '{path}', but a study's teacher stage holds one: pass "
                              f"teacher={found[0]}{also}")
        raise ConfigError(f"no teacher at '{path}': {TEACHER_HINT}")
    return folder


def study_teachers(folder: Path) -> list[Path]:
    """Teacher folders a study wrote where `folder` was looked for: PARENT/<stage>-<key>/NAME (ssdd reproduce
    keeps each teacher stage in a folder of its own), newest first."""
    parent = folder.parent
    if not folder.name or not parent.is_dir():
        return []
    found = [p for p in parent.glob(f"*/{folder.name}") if (p / MANIFEST).is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
