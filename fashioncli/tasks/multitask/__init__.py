"""Multi-task and multi-label classification (reports 002-004): one backbone, a head per label column.

- ``heads.py``: a head's type (categorical, binary, multilabel), classes, hierarchy, encoding.
- ``metrics.py``: per-head accuracy, mAP, AUROC, thresholds tuned on validation.
- ``evaluate.py``: `fashion eval` for a multi-task model.
"""
from .task import MultiTask

__all__ = ["MultiTask"]
