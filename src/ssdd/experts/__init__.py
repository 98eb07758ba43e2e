"""Expert trajectories for MKDT: students regressing the teacher's representations, saved every epoch."""

from ssdd.experts.artifact import ExpertTrajectories, load_experts
from ssdd.experts.config import ExpertsConfig

__all__ = ["ExpertTrajectories", "ExpertsConfig", "load_experts"]
