"""The `teacher=` value of a command: an existing folder, or one line that says what to pass."""

from __future__ import annotations

from pathlib import Path

from ssdd.config import ConfigError

TEACHER_HINT = ("pass teacher=PATH, an ssdd teacher folder (train one with 'ssdd teacher' or bring one with "
                "'ssdd import-teacher')")


def require_teacher_folder(path: str) -> Path:
    """The teacher folder named by the config; ConfigError when it is empty or not a folder."""
    if not path:
        raise ConfigError(f"no teacher: {TEACHER_HINT}")
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"no teacher at '{path}': {TEACHER_HINT}")
    return folder
