"""Measurements of what an adapter remembers: teacher-forced losses and greedy recall."""

from memlaw.measure.greedy import greedy_answers
from memlaw.measure.recall import RecallMeasurement, measure_recall
from memlaw.measure.teacher_forced import TokenLosses, answer_token_losses, evaluate_tokens

__all__ = [
    "RecallMeasurement",
    "TokenLosses",
    "answer_token_losses",
    "evaluate_tokens",
    "greedy_answers",
    "measure_recall",
]
