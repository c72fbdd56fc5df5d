"""Lab 02 (distillation): ``exercises`` (the checks), ``real`` (the exercises on the
course model itself) and ``quiz`` (read from ``labs/source/quizzes``). The lab's notebook imports
``EXERCISES`` and ``QUIZ`` from here."""

from .exercises import EXERCISES, QUIZ

__all__ = ["EXERCISES", "QUIZ"]
