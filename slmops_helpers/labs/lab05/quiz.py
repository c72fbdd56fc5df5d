"""Lab 05's quiz, read from labs/source/quizzes/05_slmops_pipeline.yaml."""

from __future__ import annotations

from ..quiz import load_quiz

QUIZ = load_quiz("05_slmops_pipeline.ipynb")
