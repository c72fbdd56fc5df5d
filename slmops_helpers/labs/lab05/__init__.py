"""Lab 05 (the SLMOps pipeline): ``exercises`` (the checks), ``next_round`` (what comes after the
rollout), ``fleet`` (the simulated fleet the rollout runs on), ``real`` (two real builds registered
and gated) and ``quiz`` (read from ``labs/source/quizzes``). The lab's notebook imports ``EXERCISES``
and ``QUIZ`` from here."""

from .exercises import EXERCISES, QUIZ

__all__ = ["EXERCISES", "QUIZ"]
