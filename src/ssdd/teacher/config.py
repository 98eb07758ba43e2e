"""Schema of `ssdd teacher` (defaults = docs/method.md section 2, the reference Barlow Twins recipe)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ssdd.augment.pipelines import TwoViewConfig
from ssdd.config import DataConfig, ModelConfig
from ssdd.evaluation.linear_probe import ProbeConfig


@dataclass
class LossConfig:
    lambda_offdiag: float = 0.0051
    scale: float = 0.1


@dataclass
class OptimConfig:
    epochs: int = 1000
    batch_size: int = 256  # global batch (split across torchrun processes)
    lr: float = 0.3  # for batch 256; scaled linearly with batch_size
    weight_decay: float = 1e-4
    momentum: float = 0.9
    lars_eta: float = 0.02
    lars_clip_lr: bool = True  # solo-learn's clip_lr: the adapted rate never exceeds the scheduled one
    warmup_epochs: int = 10
    min_lr: float = 0.0
    warmup_start_lr: float = 3e-5  # the warm-up starts at this lr (solo-learn's default)
    monitor_lr: float = 0.1  # online linear monitor on detached features


@dataclass
class TeacherConfig:
    seed: int = 0
    out_dir: str = "runs/teacher"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    channels_last: str = "auto"  # auto (= on) | on | off
    # auto (= on on CUDA, off on the CPU) | on | off: no host synchronisation per step (branch-free colour jitter,
    # LARS over all tensors at once, the loss read every 100 steps); the same results to float rounding
    fast: str = "auto"
    compile: str = "auto"  # auto (= on on CUDA where torch.compile works) | on | off: the model through torch.compile
    stop_after_epochs: int = 0  # train at most this many epochs in this invocation (0 = to the end)
    # pause (checkpointed, like stop_after_epochs) before an epoch that would end past this many minutes of this
    # invocation, set-up included (0 = no limit); leave a margin for the final probe and the artifact
    stop_after_minutes: float = 0.0
    save_dtype: str = "float32"  # float32 | float16 (dtype of the saved backbone)
    tensorboard: bool = False  # also write TensorBoard scalars to out_dir/tensorboard (pip install "ssdd[tensorboard]")
    tensorboard_every: int = 0  # with tensorboard: also log the loss and lr every this many steps (0 = per epoch)
    # also probe the teacher (weights as saved) every this many epochs: the probe curve, in history.json and
    # teacher_curves.png (0 = only the final probe); each probe costs about what the final one does
    probe_every: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    projector: list[int] = field(default_factory=lambda: [2048, 2048, 2048])
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: TwoViewConfig = field(default_factory=TwoViewConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)


# Keys that may differ between a run and its --resume (they do not change what is computed).
# not device: RNG states are device-specific
# fast and compile change results only by float rounding
RESUMABLE_KEYS = ("stop_after_epochs", "stop_after_minutes", "out_dir", "tensorboard", "tensorboard_every",
                  "probe_every", "fast", "compile")
