"""Single-label classification: one class per image, top-k rows, accuracy and a confusion matrix."""
from .task import ClassificationTask

__all__ = ["ClassificationTask"]
