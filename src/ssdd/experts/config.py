"""Schema of `ssdd experts`: MKDT's expert trajectories (defaults = the official MKDT code's buffer settings).

Each expert is a fresh student (backbone + linear head to the teacher's d) trained by SGD on the whole
source to regress the frozen teacher's representations (mean squared error), its parameters saved after
every epoch. The official code trains 100 experts for 20 epochs at lr 0.1, momentum 0.9, weight decay
1e-4, batch 256, without augmentation, on MTT's ConvNet (width 128, depth 3, instance norm).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ssdd.config import DataConfig, ModelConfig


@dataclass
class ExpertsConfig:
    seed: int = 0
    out_dir: str = "runs/experts"
    device: str = "auto"
    teacher: str = ""  # an ssdd teacher folder (required): its representations are the students' targets
    data: DataConfig = field(default_factory=DataConfig)
    num_experts: int = 100
    epochs: int = 20  # MKDT distils from epochs 0 .. max_start_epoch + expert_epochs only
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    # none (the official default) | crop_flip: ssdd's own option, RandomCrop(4) + flip per batch (the official
    # --enable_aug applies MTT's crop_scale_rotate instead)
    augment: str = "none"
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="convnet_mtt", width=128, depth=3))
    stop_after_experts: int = 0  # finish at most this many experts in this invocation (0 = all)
    # pause (checkpointed) before an epoch that would end past this many minutes of this invocation (0 = no limit)
    stop_after_minutes: float = 0.0
    tensorboard: bool = False  # also write the epoch losses to out_dir/tensorboard


# more experts: resume adds them
RESUMABLE_KEYS = ("stop_after_experts", "stop_after_minutes", "out_dir", "tensorboard", "num_experts")
