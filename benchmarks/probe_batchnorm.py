"""Does a network pre-trained on a distilled set probe badly because of its batch-norm statistics?

A ResNet-18 pre-trained on the N = 100 sets probed below a random initialisation on Flowers-102 in the
fourth GPU session (docs/results.md). One suspect: in eval mode its batch-norm layers use running statistics
gathered on the ~100 pre-training images, not on the target. This pre-trains each source exactly as
`ssdd evaluate` does (the evaluation's own helpers and settings), then runs the linear probe twice on the
same weights: as the protocol does (running statistics from pre-training), and after re-estimating every
batch-norm layer's statistics on the target's train images (a forward pass, no gradient, no label). It also
reports how many directions the frozen features of the target's train images use (`feature_spread`).

    OMP_NUM_THREADS=1 python benchmarks/probe_batchnorm.py --teacher runs/cpu_equal/teacher/teacher-289d9669/teacher \
        --distilled runs/cpu_equal/distill/random_n100-a9107862 --model resnet18 --width 16 --target flowers102
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from ssdd.augment.ops import normalize, to_float
from ssdd.config import load_config
from ssdd.evaluation.cell import load_target, pretrain_network, pretrain_sources
from ssdd.evaluation.config import EvaluateConfig
from ssdd.evaluation.linear_probe import extract_features, probe_encoder
from ssdd.teacher import load_teacher


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                          batch_size: int = 256) -> int:
    """Replace every batch-norm layer's running statistics by the average over `images` (uint8, N,3,H,W);
    returns the number of layers."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average over the batches below
    was_training = model.training
    model.train()
    for start in range(0, images.shape[0], batch_size):
        model(normalize(to_float(images[start : start + batch_size]), mean, std))
    model.train(was_training)
    for layer, momentum in zip(layers, saved, strict=True):
        layer.momentum = momentum
    return len(layers)


def feature_spread(features: torch.Tensor) -> dict[str, float]:
    """How many directions the (N, d) features use: the participation ratio of their covariance's eigenvalues,
    (sum l)^2 / sum l^2 (1 when one direction carries all the variance, d when all carry the same), for the
    features as they are and standardised per dimension (as the probe sees them), and the dimensions that
    never vary (dead units)."""
    centred = features.double() - features.double().mean(0)
    spread = centred.std(0)
    live = spread > 1e-8

    def ratio(x: torch.Tensor) -> float:
        eig = torch.linalg.eigvalsh(x.T @ x / x.shape[0]).clamp_min(0)
        return float(eig.sum() ** 2 / (eig**2).sum())

    return {"dims": features.shape[1], "dead_dims": int((~live).sum()),
            "participation_ratio": round(ratio(centred), 2),
            "participation_ratio_standardised": round(ratio(centred[:, live] / spread[live]), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--distilled", nargs="*", default=[])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--target", default="flowers102", help="a target of the evaluate_cpu preset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    cfg = load_config(EvaluateConfig, "evaluate_cpu", [f"teacher={args.teacher}", "device=cpu",
                                                       f"models=[{{name: {args.model}, width: {args.width}}}]",
                                                       "full_data.enabled=false", "full_data.same_recipe=false"])
    cfg.distilled = list(args.distilled)
    device = torch.device("cpu")
    teacher = load_teacher(cfg.teacher, device)
    target_cfg = next(t for t in cfg.targets if t.name == args.target)
    target = load_target(target_cfg, teacher.resolution, cfg.seed, device)
    rows = []
    for source in pretrain_sources(cfg, teacher, 0):
        start = time.perf_counter()
        backbone = pretrain_network(source, cfg.models[0], cfg, teacher, None, teacher.resolution, args.seed, device)
        row = {"source": source.label, "model": args.model, "width": args.width, "target": target.name,
               "seed": args.seed, "pretrain_s": round(time.perf_counter() - start, 1)}
        row.update(feature_spread(extract_features(backbone, target.train.images, target.mean, target.std)))
        for name in ("pretraining statistics", "target statistics"):
            if name == "target statistics":
                row["batchnorm_layers"] = recalibrate_batchnorm(backbone, target.train.images, target.mean, target.std)
            scores = probe_encoder(backbone, target.mean, target.std, target.train.images, target.train.labels,
                                   target.test.images, target.test.labels, target.train.num_classes, cfg.probe,
                                   seed=args.seed)
            row[name] = scores["test_top1"]
            row[f"{name}, train top-1"] = scores["train_top1"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
