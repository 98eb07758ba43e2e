"""Schema of `ssdd evaluate` (defaults = docs/protocol.md at `full` scale)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ssdd.config import DataConfig, ModelConfig
from ssdd.evaluation.linear_probe import ProbeConfig


@dataclass
class PretrainConfig:
    """Regression of a fresh network onto the distilled targets (protocol stage 3)."""

    epochs: int = 1000
    max_iterations: int = 0  # stop after this many SGD steps whatever the epochs (0 = no cap; `cpu` scale)
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-3


@dataclass
class FullDataConfig:
    """The ceiling row: pre-train on all of the source by regressing the teacher's representations."""

    enabled: bool = True
    epochs: int = 100
    batch_size: int = 256
    lr: float = 0.1  # cosine-decayed over the epochs
    momentum: float = 0.9
    weight_decay: float = 1e-3
    crop_padding: int = 4  # RandomCrop + flip on the source images (teacher targets computed per batch)


@dataclass
class FinetuneConfig:
    """All layers + a new linear head on the target (protocol stage 4)."""

    iterations: int = 10_000  # CIFAR-sized targets
    small_iterations: int = 5_000  # targets with fewer than small_threshold training images
    small_threshold: int = 10_000
    batch_size: int = 256
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    crop_padding: int = 4


@dataclass
class EvaluateConfig:
    seed: int = 0
    seeds: int = 3  # seeds seed, seed+1, ... for every cell
    out_dir: str = "runs/evaluate"
    device: str = "auto"
    distilled: list[str] = field(default_factory=list)  # distilled artifact folders
    no_pretrain: bool = True  # the random-initialisation row
    teacher: str = ""  # an ssdd teacher folder (required): full-data targets and CKA reference
    source: DataConfig = field(default_factory=DataConfig)  # full-data row; its test split feeds CKA
    models: list[ModelConfig] = field(default_factory=lambda: [ModelConfig(name="convnet", width=128, depth=3)])
    targets: list[DataConfig] = field(default_factory=lambda: [
        DataConfig(source="npz", path="data/cifar10.npz", name="cifar10"),
        DataConfig(source="npz", path="data/flowers102_32.npz", name="flowers102"),
    ])
    modes: list[str] = field(default_factory=lambda: ["finetune", "linear_probe"])
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    full_data: FullDataConfig = field(default_factory=FullDataConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    cka_images: int = 1000  # source test images used for linear CKA to the teacher (0 = skip)
    tensorboard: bool = False  # also write every row to out_dir/tensorboard (pip install "ssdd[tensorboard]")


# Settings added after evaluations were recorded, each with the value that behaves exactly as before it
# existed. A config holding that value keeps its study cache key and can resume a run saved without it
# (runfolder.config_hash / check_resume_compatible); every new setting of EvaluateConfig belongs here.
LEGACY_VALUES: dict[str, object] = {}
