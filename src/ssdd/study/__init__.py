"""`ssdd reproduce`: a whole study (teacher -> distill -> evaluate -> report) from one YAML, with cached stages."""

from ssdd.study.config import DistillSpec, StageSpec, StudyConfig
from ssdd.study.runner import StudyResult, run_study

__all__ = ["DistillSpec", "StageSpec", "StudyConfig", "StudyResult", "run_study"]
