"""The `ssdd` command: its front doors (argument parsing, one line per error), `ssdd show` and `ssdd check`."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """The `ssdd` command (see `ssdd.cli.commands`; imported lazily so `import ssdd.cli` stays light)."""
    from ssdd.cli.commands import main as run

    return run(argv)
