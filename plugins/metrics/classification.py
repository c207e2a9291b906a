"""Single-label classification metrics: named factories over torchmetrics.

Every factory takes ``num_classes`` (set by fashion) plus its own arguments and returns a
torchmetrics ``Metric`` fed with ``(probabilities (N, C), targets (N,))``.
"""
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from fashioncli.api import hookimpl


def accuracy(num_classes, average="micro"):
    """Fraction of samples whose top prediction is right (average='macro' for balanced accuracy)."""
    # torchmetrics defaults to macro; plain accuracy is micro.
    return MulticlassAccuracy(num_classes, average=average)


def top_k_accuracy(num_classes, k=5, average="micro"):
    """Fraction of samples whose true class is among the k highest scores (k capped at num_classes)."""
    return MulticlassAccuracy(num_classes, top_k=min(k, num_classes), average=average)


def precision(num_classes, average="macro"):
    """Precision per class ('none') or averaged ('macro', 'weighted', 'micro')."""
    return MulticlassPrecision(num_classes, average=average)


def recall(num_classes, average="macro"):
    """Recall per class ('none') or averaged ('macro', 'weighted', 'micro')."""
    return MulticlassRecall(num_classes, average=average)


def f1(num_classes, average="macro"):
    """F1 score per class ('none') or averaged ('macro', 'weighted', 'micro')."""
    return MulticlassF1Score(num_classes, average=average)


def auroc(num_classes, average="macro"):
    """One-vs-rest area under the ROC curve, per class ('none') or averaged."""
    return MulticlassAUROC(num_classes, average=average)


def confusion_matrix(num_classes, normalize=None):
    """C x C counts, rows = true class, columns = predicted ('true', 'pred' or 'all' to normalise)."""
    return MulticlassConfusionMatrix(num_classes, normalize=normalize)


@hookimpl
def register_metrics(register):
    for factory in (accuracy, top_k_accuracy, precision, recall, f1, auroc, confusion_matrix):
        register(factory.__name__, factory)
