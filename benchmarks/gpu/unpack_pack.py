"""Decode a WebP-packed dataset (the project's transport format) into the NumPy format, on many cores.

    python benchmarks/gpu/unpack_pack.py PACK.npz OUT.npz [--workers 16]

A pack holds, per split, the losslessly WebP-encoded images (`<split>_webp`, byte offsets in
`<split>_offsets`), the labels (`<split>_labels`) and a JSON `meta` with each split's size, image
shape and the SHA-256 of its original pixels; `extra_*` arrays are copied as they are. The decoded
pixels are checked against that SHA-256, so a bad transfer or decode fails loudly.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image


def _decode(chunks: list[bytes]) -> np.ndarray:
    out = []
    for data in chunks:
        with Image.open(io.BytesIO(data)) as image:
            out.append(np.asarray(image.convert("RGB")))
    return np.stack(out)


def decode_split(blob: np.ndarray, offsets: np.ndarray, workers: int) -> np.ndarray:
    raw = blob.tobytes()
    items = [raw[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    size = max(1, len(items) // (4 * workers))
    batches = [items[i:i + size] for i in range(0, len(items), size)]
    with ProcessPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(_decode, batches)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pack", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    pack = np.load(args.pack)
    meta = json.loads(pack["meta"].tobytes())
    arrays: dict[str, np.ndarray] = {}
    for split, info in meta["splits"].items():
        x = decode_split(pack[f"{split}_webp"], pack[f"{split}_offsets"], args.workers)
        if x.shape != (info["n"], *info["shape"]) or hashlib.sha256(x.tobytes()).hexdigest() != info["sha256"]:
            sys.exit(f"{args.pack}: split {split} decodes to pixels that do not match the recorded SHA-256")
        arrays[f"x_{split}"] = x
        arrays[f"y_{split}"] = pack[f"{split}_labels"].astype(np.int64)
    for key in pack.files:
        if key.startswith("extra_"):
            arrays[key.removeprefix("extra_")] = pack[key]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(args.out)
    print(f"{args.out}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))


if __name__ == "__main__":
    main()
