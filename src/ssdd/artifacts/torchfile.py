"""Reading a file written by `torch.save` that came from elsewhere, with one clear line for every file that is not
one: `ssdd import-teacher` and `ssdd import-distilled` share it.

The file's first bytes say what it is before torch sees it, so the diagnosis never passes on torch's own advice
(retrying with `weights_only=False` runs code from the file) or its multi-line paragraphs and warnings:

- a zip archive (`PK\\x03\\x04`): torch's format since 1.6;
- a pickle whose first object is torch's legacy magic number: the format before 1.6
  (`_use_new_zipfile_serialization=False`);
- any other pickle (`pickle.dump`, protocol 2+): not a torch file (torch cannot read it, whatever the flags);
- anything else (text, zeros, an empty file): not a torch file.

A zip archive or legacy file that torch cannot read is truncated or corrupt.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

ZIP_MAGIC = b"PK\x03\x04"
# torch/serialization.py: MAGIC_NUMBER, the first object the legacy format pickles
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C


class _Primitives(pickle.Unpickler):
    """Reads plain values only: any class or function the pickle names is refused (nothing is run)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"{module}.{name}")


class TorchFileError(ValueError):
    """A file that is not a readable torch.save file (printed as one line, exit code 2)."""


def torch_file_kind(path: str | Path) -> str:
    """'zip', 'legacy', 'pickle', 'empty' or 'other', from the file's first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(4)
        if not head:
            return "empty"
        if head.startswith(ZIP_MAGIC):
            return "zip"
        if not (head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5):
            return "other"
        handle.seek(0)
        try:  # the legacy format pickles torch's magic number first, with any protocol
            first = _Primitives(handle).load()
        except Exception:
            return "pickle"
    return "legacy" if isinstance(first, int) and first == LEGACY_MAGIC_NUMBER else "pickle"


def check_file(path: str | Path, what: str) -> Path:
    """`path` as a Path when it is a file; FileNotFoundError, or IsADirectoryError for a folder, otherwise."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not a {what} file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    return path


def load_torch_file(path: str | Path, what: str = "PyTorch checkpoint", trust_pickle: bool = False,
                    refusal_hint: str = "", error: type[ValueError] = TorchFileError) -> Any:
    """torch.load(path) of a torch.save file, never running pickled code unless `trust_pickle`.

    Every file that is not one raises `error` (a ValueError) with one line naming `path` and `what` it
    should have been; a missing path FileNotFoundError, a folder IsADirectoryError. `refusal_hint` ends the line
    that refuses pickled Python objects (e.g. how to allow them)."""
    import torch

    path = check_file(path, what)
    kind = torch_file_kind(path)
    if kind == "empty":
        raise error(f"{path}: not a {what} (an empty file)")
    if kind == "pickle":
        raise error(f"{path}: not a {what} (a pickle that is not a torch zip archive or torch.save file)")
    if kind == "other":
        raise error(f"{path}: not a {what} (neither a torch zip archive nor a torch.save pickle)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol and weights_only notices
            return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found and not trust_pickle:
            raise error(f"{path}: holds pickled Python objects beyond tensors ({found.group(1)}), which are "
                        f"not unpickled because unpickling can run arbitrary code{refusal_hint}") from None
        if kind == "legacy" and not trust_pickle and "Unsupported operand" in str(exc):
            raise error(f"{path}: a legacy torch.save file (the format before PyTorch 1.6) with a pickle protocol "
                        f"that is not read without unpickling arbitrary objects{refusal_hint}") from None
        raise error(f"{path}: not a {what} (truncated or corrupt)") from None
    except (ModuleNotFoundError, AttributeError) as exc:
        if trust_pickle:
            raise error(f"{path}: unpickling needs code that is not installed ({exc}); install it, or "
                        f"re-save only the tensors") from None
        raise error(f"{path}: not a {what} (truncated or corrupt)") from None
    except Exception:  # miniz, EOF, struct and storage errors of a damaged archive
        raise error(f"{path}: not a {what} (truncated or corrupt)") from None
