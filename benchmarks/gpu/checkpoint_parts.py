"""A run's checkpoint.pt as parts of at most a few MiB, and back: how a stage longer than one GPU call travels
between calls and sessions (64 MiB carried into a call, 8 files of at most 16 MiB back from it).

    python benchmarks/gpu/checkpoint_parts.py pack RUN_DIR PARTS_DIR [--part-mib 15] [--max-parts 7]
        [--codec 'model.*=fp16' --codec 'optimizer.state.*=int8' ...] [--drop pool.members ...]
    python benchmarks/gpu/checkpoint_parts.py unpack PARTS_DIR RUN_DIR
    python benchmarks/gpu/checkpoint_parts.py verify PARTS_DIR      # exit 0 when every part is there, unchanged

`pack` writes PARTS_DIR/part-NN.safetensors (each under --part-mib) and PARTS_DIR/index.json: the checkpoint's
structure (every dict, list, tuple and plain value, with its key types), where each tensor went, the SHA-256 of
every part and of the original checkpoint.pt. The run folder's small text files (config.yaml, inputs.json,
metrics.jsonl, ...) travel in the index. `unpack` checks the parts' hashes and writes them and RUN_DIR/checkpoint.pt
(atomically), and adds the trip to RUN_DIR/carried.json; `ssdd teacher --resume` (or distill, experts) then
continues from it.

By default every tensor is kept exactly: the rebuilt checkpoint.pt holds the same tensors, bit for bit. A
`--codec PATTERN=fp16|int8` (an fnmatch pattern over the tensor's dotted path, e.g. `model.*`; the first match
wins) stores matching float32 tensors of at least 4,096 elements lossily, to fit a budget: fp16 after a
power-of-two scale per tensor (11 significant bits; the scale is exact), int8 with one absolute-maximum scale per
row (the first dimension). The index records each lossy tensor's largest error, absolute and relative to its
largest magnitude, so the resumed run's footing is written down. `--drop KEY.PATH` leaves a part of the state
behind: a distillation's pool members (`--drop pool.members --drop pool.optimizers`, 10 networks with their
momentum, over 400 MiB at the cifar100 presets), which its resume warm-starts afresh (the set's manifest then
says at which steps: `pool_rebuilt_at`).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ssdd.run.folder import save_checkpoint
from ssdd.run.runtime import file_sha256

INDEX = "index.json"
CHECKPOINT = "checkpoint.pt"
CARRIED = "carried.json"  # in the run folder: every unpack, exact or lossy, at which epoch or step
HEADER_ENTRY = 128  # at most this many bytes of a part's safetensors header per tensor, besides its name
RUN_FILE_MAX = 2**20  # a run folder's text files up to this size travel in the index
LOSSY_MIN_ELEMENTS = 4096  # smaller tensors (biases, norms' scales, steps) always stay exact
CODECS = ("exact", "fp16", "int8")
SCALE = "#scale"  # the suffix of an int8 tensor's row scales ('#' is in no dotted path of a checkpoint)
CHUNK = "@"  # then @0, @1, ...: the chunks of one stored piece, in as many parts as it spans


# ----------------------------------------------------------------------------- the structure as JSON
def encode(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """The checkpoint's structure as JSON, tensors replaced by their dotted path (collected in `tensors`); dicts
    keep their keys' types (the optimiser's state is keyed by ints), tuples stay tuples."""
    if isinstance(value, torch.Tensor):
        if path in tensors or SCALE in path or CHUNK in path:
            raise ValueError(f"{path}: two tensors of the checkpoint have this dotted path")
        tensors[path] = value
        return {"tensor": path}
    if isinstance(value, dict):
        items = [[encode(k, f"{path}.key", tensors), encode(v, f"{path}.{k}" if path else str(k), tensors)]
                 for k, v in value.items()]
        if not isinstance(value, OrderedDict):
            return {"dict": items}
        # a module's state_dict: an OrderedDict whose _metadata holds its modules' versions
        return {"odict": items, "metadata": encode(getattr(value, "_metadata", None), f"{path}._metadata", tensors)}
    if isinstance(value, list | tuple):
        kind = "list" if isinstance(value, list) else "tuple"
        return {kind: [encode(v, f"{path}.{i}" if path else str(i), tensors) for i, v in enumerate(value)]}
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"{path}: a {type(value).__name__} in the checkpoint (only tensors and plain values travel)")


def decode(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, dict):
        kind = next(iter(node))
        body = node[kind]
        if kind == "tensor":
            return tensors[body]
        if kind == "dict":
            return {decode(k, tensors): decode(v, tensors) for k, v in body}
        if kind == "odict":
            ordered = OrderedDict((decode(k, tensors), decode(v, tensors)) for k, v in body)
            if node.get("metadata") is not None:
                ordered._metadata = decode(node["metadata"], tensors)  # type: ignore[attr-defined]
            return ordered
        if kind == "list":
            return [decode(v, tensors) for v in body]
        if kind == "tuple":
            return tuple(decode(v, tensors) for v in body)
        if kind == "float":
            return float(body)
        raise ValueError(f"{INDEX}: unknown node {kind!r}")
    return node


# ----------------------------------------------------------------------------- codecs
def codec_for(path: str, tensor: torch.Tensor, rules: list[tuple[str, str]]) -> str:
    if tensor.dtype != torch.float32 or tensor.numel() < LOSSY_MIN_ELEMENTS:
        return "exact"
    return next((codec for pattern, codec in rules if fnmatch.fnmatchcase(path, pattern)), "exact")


def store(tensor: torch.Tensor, codec: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The stored tensors of one checkpoint tensor (suffix -> tensor) and its index entry."""
    t = tensor.detach().cpu().clone()  # its own storage: safetensors refuses tensors that share one
    if codec == "exact":
        return {"": t}, {"codec": "exact"}
    peak = float(t.abs().max()) if t.numel() else 0.0
    if not math.isfinite(peak) or (codec == "fp16" and 0 < peak < 2.0**-100):
        return {"": t}, {"codec": "exact"}  # nothing to gain, or a scale float32 cannot hold: kept exactly
    if codec == "fp16":
        # the largest magnitude lands in [2^14, 2^15): inside fp16's range, and the scale is a power of two
        exponent = 14 - math.floor(math.log2(peak)) if peak > 0 else 0
        q = torch.ldexp(t, torch.tensor(exponent, dtype=torch.float32)).to(torch.float16)
        parts, entry = {"": q}, {"codec": "fp16", "exponent": exponent}
    elif codec == "int8":
        rows = t.reshape(t.shape[0], -1) if t.dim() > 1 else t.reshape(1, -1)
        scale = rows.abs().amax(dim=1, keepdim=True) / 127.0
        q = torch.round(rows / torch.where(scale > 0, scale, torch.ones_like(scale))).clamp(-127, 127).to(torch.int8)
        parts, entry = {"": q, SCALE: scale}, {"codec": "int8", "shape": list(t.shape)}
    else:
        raise ValueError(f"codec {codec!r}: one of {', '.join(CODECS)}")
    error = float((restore(parts, entry) - t).abs().max()) if t.numel() else 0.0
    entry.update(max_abs_error=error, max_rel_error=error / peak if peak > 0 else 0.0)
    return parts, entry


def restore(parts: dict[str, torch.Tensor], entry: dict[str, Any]) -> torch.Tensor:
    if entry["codec"] == "exact":
        return parts[""]
    if entry["codec"] == "fp16":
        return torch.ldexp(parts[""].float(), torch.tensor(-entry["exponent"], dtype=torch.float32))
    if entry["codec"] == "int8":
        return (parts[""].float() * parts[SCALE]).reshape(entry["shape"])
    raise ValueError(f"{INDEX}: unknown codec {entry['codec']!r}")


# ----------------------------------------------------------------------------- pack and unpack
def run_files(run_dir: Path) -> dict[str, str]:
    """The run folder's own small text files (config.yaml, inputs.json, metrics.jsonl, ...): a resume needs them."""
    found = {}
    for path in sorted(run_dir.iterdir()):
        if path.is_file() and path.name != CHECKPOINT and not path.name.endswith(".tmp") \
                and path.stat().st_size <= RUN_FILE_MAX:
            try:
                found[path.name] = path.read_text()
            except UnicodeDecodeError:
                continue
    return found


def drop_keys(state: Any, paths: list[str]) -> None:
    """Remove each dotted path (a dict key inside dicts, e.g. `pool.members`) from the state; a path that is not
    there is an error (a misspelt --drop would otherwise carry everything)."""
    for path in paths:
        *parents, last = path.split(".")
        node = state
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or last not in node:
            raise ValueError(f"--drop {path}: no such key in the checkpoint")
        del node[last]


def largest(tensors: dict[str, torch.Tensor], count: int = 3) -> list[str]:
    """The dotted paths of the largest tensors, with their MiB."""
    sizes = sorted(((t.numel() * t.element_size(), p) for p, t in tensors.items()), reverse=True)[:count]
    return [f"{p} {size / 2**20:.1f} MiB" for size, p in sizes]


def pack(run_dir: Path, parts_dir: Path, part_mib: float = 15.0, rules: list[tuple[str, str]] | None = None,
         drop: list[str] | None = None, max_parts: int = 0) -> dict:
    """Write run_dir/checkpoint.pt as parts under part_mib MiB each, and the index; returns the index."""
    source = run_dir / CHECKPOINT
    state = torch.load(source, map_location="cpu", weights_only=True)
    drop_keys(state, drop or [])
    tensors: dict[str, torch.Tensor] = {}
    structure = encode(state, "", tensors)
    limit = int(part_mib * 2**20) - 1024  # the header's fixed bytes; each entry's are counted with it
    entries: dict[str, dict[str, Any]] = {}
    shards: list[dict[str, torch.Tensor]] = [{}]
    sizes = [0]
    for path, tensor in tensors.items():
        stored, entry = store(tensor, codec_for(path, tensor, rules or []))
        entry["dtype"] = str(tensor.dtype).removeprefix("torch.")
        entry["pieces"] = {}
        for suffix, piece in stored.items():
            # the flattened piece fills the part under way and goes on in the next ones: chunks @0, @1, ...
            flat, at, chunks = piece.reshape(-1), 0, 0
            while at < flat.numel() or chunks == 0:
                name = f"{path}{suffix}{CHUNK}{chunks}"
                room = (limit - sizes[-1] - len(name) - HEADER_ENTRY) // piece.element_size()
                sliver = room < flat.numel() - at and room * piece.element_size() < min(2**16, limit // 8)
                if sizes[-1] > 0 and (room <= 0 or sliver):  # a part is not split for a sliver: a new one starts
                    shards.append({})
                    sizes.append(0)
                    continue
                if room <= 0:
                    raise ValueError(f"--part-mib {part_mib}: too small for one element of {path}")
                chunk = flat[at:at + room].clone()
                shards[-1][name] = chunk
                sizes[-1] += chunk.numel() * chunk.element_size() + len(name) + HEADER_ENTRY
                at, chunks = at + chunk.numel(), chunks + 1
            entry["pieces"][suffix] = {"shape": list(piece.shape), "chunks": chunks}
        entries[path] = entry
    if max_parts and len(shards) > max_parts:
        raise ValueError(f"{len(shards)} parts of {part_mib} MiB, over --max-parts {max_parts} (a lossy --codec or a "
                         f"--drop for the largest tensors: {', '.join(largest(tensors))})")
    parts_dir.mkdir(parents=True, exist_ok=True)
    for old in parts_dir.glob("part-*.safetensors"):
        old.unlink()
    files = []
    for number, shard in enumerate(shards):
        name = f"part-{number:02d}.safetensors"
        save_file(shard, str(parts_dir / name))
        path = parts_dir / name
        files.append({"file": name, "bytes": path.stat().st_size, "sha256": file_sha256(path)})
    lossy = {p: e for p, e in entries.items() if e["codec"] != "exact"}
    index = {"kind": "ssdd.checkpoint_parts", "source_sha256": file_sha256(source),
             "source_bytes": source.stat().st_size, "exact": not lossy and not drop,
             "rules": [f"{p}={c}" for p, c in rules or []], "dropped": drop or [], "parts": files,
             "run_files": run_files(run_dir), "tensors": entries, "structure": structure}
    (parts_dir / INDEX).write_text(json.dumps(index, indent=1) + "\n")
    return index


def verify(parts_dir: Path) -> dict[str, Any]:
    """The index, once every part it names is there with its SHA-256 (ValueError naming the first that is not)."""
    index = json.loads((parts_dir / INDEX).read_text())
    if index.get("kind") != "ssdd.checkpoint_parts":
        raise ValueError(f"{parts_dir / INDEX}: not an index of checkpoint parts")
    for part in index["parts"]:
        path = parts_dir / part["file"]
        if not path.is_file() or file_sha256(path) != part["sha256"]:
            raise ValueError(f"{path}: missing, or not the part the index names (SHA-256 differs)")
    return index


def unpack(parts_dir: Path, run_dir: Path) -> dict[str, Any]:
    """Rebuild run_dir/checkpoint.pt from the parts (their hashes checked); returns the state."""
    index = verify(parts_dir)
    stored: dict[str, torch.Tensor] = {}
    for part in index["parts"]:
        stored.update(load_file(str(parts_dir / part["file"])))
    tensors = {}
    for path, entry in index["tensors"].items():
        pieces = {}
        for suffix, piece in entry["pieces"].items():
            chunks = [stored[f"{path}{suffix}{CHUNK}{number}"] for number in range(piece["chunks"])]
            pieces[suffix] = torch.cat(chunks).reshape(piece["shape"])
        tensors[path] = restore(pieces, entry).to(getattr(torch, entry["dtype"]))
    state = decode(index["structure"], tensors)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, text in index.get("run_files", {}).items():
        if Path(name).name != name:
            raise ValueError(f"{parts_dir / INDEX}: run file {name!r} is not a plain file name")
        (run_dir / name).write_text(text)
    save_checkpoint(run_dir / CHECKPOINT, state)  # atomically, as ssdd writes its own
    # every trip through parts is written down in the run folder (and travels with it): a lossy one changed it
    trips = json.loads((run_dir / CARRIED).read_text()) if (run_dir / CARRIED).is_file() else []
    worst = {p: e["max_rel_error"] for p, e in index["tensors"].items() if e["codec"] != "exact"}
    trips.append({"source_sha256": index["source_sha256"], "exact": index["exact"], "rules": index["rules"],
                  "dropped": index.get("dropped", []),
                  "largest_relative_error": max(worst.values(), default=0.0),
                  **{k: state[k] for k in ("epoch", "step") if isinstance(state, dict) and k in state}})
    (run_dir / CARRIED).write_text(json.dumps(trips, indent=1) + "\n")
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("run_dir", type=Path)
    p.add_argument("parts_dir", type=Path)
    p.add_argument("--part-mib", type=float, default=15.0)
    p.add_argument("--codec", action="append", default=[], metavar="PATTERN=fp16|int8")
    p.add_argument("--drop", action="append", default=[], metavar="KEY.PATH")
    p.add_argument("--max-parts", type=int, default=0, help="refuse to write more parts (0: no limit)")
    v = sub.add_parser("verify")  # exit 0 when every part the index names is there with its SHA-256
    v.add_argument("parts_dir", type=Path)
    u = sub.add_parser("unpack")
    u.add_argument("parts_dir", type=Path)
    u.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "pack":
            rules = []
            for rule in args.codec:
                pattern, _, codec = rule.rpartition("=")
                if not pattern or codec not in CODECS:
                    raise ValueError(f"--codec {rule}: PATTERN=fp16 or PATTERN=int8")
                rules.append((pattern, codec))
            index = pack(args.run_dir, args.parts_dir, args.part_mib, rules, args.drop, args.max_parts)
            total = sum(p["bytes"] for p in index["parts"])
            worst = max((e["max_rel_error"] for e in index["tensors"].values() if "max_rel_error" in e), default=0.0)
            whole = index["source_bytes"] / 2**20
            print(f"{len(index['parts'])} parts, {total / 2**20:.1f} MiB (checkpoint {whole:.1f} MiB); "
                  f"{f'lossy, largest relative error {worst:.2e}' if worst else 'every tensor exact'}"
                  + (f"; dropped {', '.join(index['dropped'])}" if index["dropped"] else ""))
        elif args.command == "verify":
            verify(args.parts_dir)
        else:
            unpack(args.parts_dir, args.run_dir)
            print(f"{args.run_dir / CHECKPOINT} rebuilt")
    except (OSError, ValueError, TypeError) as exc:
        print(f"checkpoint_parts: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
