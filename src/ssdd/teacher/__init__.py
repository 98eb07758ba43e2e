"""The self-supervised teacher: Barlow Twins training and the frozen Teacher artifact."""

from ssdd.teacher.artifact import Teacher, load_teacher, save_teacher
from ssdd.teacher.config import TeacherConfig

__all__ = ["Teacher", "TeacherConfig", "load_teacher", "save_teacher"]
