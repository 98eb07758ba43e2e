"""Every module of ssdd imports on its own, as `ssdd <command>` imports it in a fresh process: an import cycle
hides in a suite where some other test has loaded the modules first."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import importlib, pkgutil, sys
import ssdd
names = sorted(m.name for m in pkgutil.walk_packages(ssdd.__path__, "ssdd.") if m.name != "ssdd.__main__")
failed = []
for name in names:
    for loaded in [m for m in sys.modules if m == "ssdd" or m.startswith("ssdd.")]:
        del sys.modules[loaded]  # torch and the other dependencies stay loaded: only ssdd starts afresh
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print(len(names))
print("\\n".join(failed))
"""


def test_every_module_imports_first_in_a_fresh_interpreter():
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    count, *failed = done.stdout.strip().splitlines()
    assert int(count) > 50  # the walk found the package's modules
    assert not failed, "\n".join(failed)
