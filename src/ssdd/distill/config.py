"""Schema of `ssdd distill` (defaults = KRR-ST's public settings, method.md section 3)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ssdd.config import DataConfig, ModelConfig
from ssdd.distill.pool import PoolConfig


@dataclass
class KRRConfig:
    steps: int = 160_000  # outer steps T
    batch_size: int = 1024  # real images per outer step
    lr: float = 1e-4  # AdamW on images and targets (1e-5 for 64 px sources)
    final_lr_ratio: float = 1e-3  # linear decay to final_lr_ratio * lr over the steps
    ridge: float = 1e-6  # lambda = ridge * trace(K_ss)
    real_crop_padding: int = 4  # RandomCrop(padding) + flip on the real batch
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="convnet", width=128, depth=3))


@dataclass
class DistillConfig:
    seed: int = 0
    out_dir: str = "runs/distill"
    device: str = "auto"
    method: str = "krr_st"  # krr_st | random | kmeans
    budget: float = 100.0  # storage budget N in image-equivalents
    count_targets: bool = True  # count Y_s in the budget; false = m = N images (KRR-ST paper convention)
    teacher: str = "artifacts/teachers/cifar100_convnet32_cpu"
    stop_after_steps: int = 0  # run at most this many outer steps in this invocation (0 = to the end)
    checkpoint_every: int = 500  # outer steps between checkpoints
    log_every: int = 50  # outer steps between lines of metrics.jsonl
    data: DataConfig = field(default_factory=DataConfig)
    krr: KRRConfig = field(default_factory=KRRConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    kmeans_iterations: int = 100  # k-means subset: Lloyd iterations


RESUMABLE_KEYS = ("stop_after_steps", "out_dir")  # not device: RNG states are device-specific
