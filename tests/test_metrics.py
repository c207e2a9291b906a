"""Classification metrics against values computed by hand, and the metrics registry."""
from functools import partial

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset
from torchmetrics import Metric
from torchmetrics.classification import MulticlassF1Score

from fashioncli import hookimpl
from fashioncli.data.loaders import make_loader
from fashioncli.errors import PluginError, RecipeError
from fashioncli.inference import run_model
from fashioncli.tasks.classification.metrics import classification_metrics
from fashioncli.plugins import get, plugin_registered

CLASSES = ["shirt", "dress", "shoe"]
approx = partial(pytest.approx, abs=1e-6)  # metrics are float32, reported to 6 decimals
# 6 samples, 3 classes, given as probabilities (distinct within each column, so AUROC has no
# ties); logits = log(probabilities), which softmax turns back into them.
TARGETS = torch.tensor([0, 0, 1, 1, 2, 2])
PROBS = torch.tensor([
    [0.60, 0.30, 0.10],  # true 0, predicted 0
    [0.35, 0.45, 0.20],  # true 0, predicted 1 (0 is second: top-2 hit)
    [0.15, 0.50, 0.35],  # true 1, predicted 1
    [0.25, 0.52, 0.23],  # true 1, predicted 1
    [0.05, 0.25, 0.70],  # true 2, predicted 2
    [0.50, 0.42, 0.08],  # true 2, predicted 0 (2 is last: top-2 miss)
])
LOGITS = PROBS.log()
# rows true, columns predicted
CONFUSION = [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


@pytest.fixture(scope="module")
def metrics():
    return classification_metrics(LOGITS, TARGETS, CLASSES, topk=2)


def test_builtin_metrics_are_registered():
    registry = get("metrics")
    for name in ("accuracy", "top_k_accuracy", "precision", "recall", "f1", "auroc", "confusion_matrix"):
        assert name in registry
        assert isinstance(registry.create(name, 3), Metric)
        registry.get(name).check_args({}, injected=("num_classes",))


def test_top_k_accuracy_caps_k_at_the_number_of_classes():
    metric = get("metrics").create("top_k_accuracy", 2, k=5)
    metric.update(torch.tensor([[0.9, 0.1], [0.8, 0.2]]), torch.tensor([1, 1]))
    assert metric.compute().item() == 1.0


def test_accuracy_and_top_k(metrics):
    assert metrics["accuracy"] == approx(4 / 6)
    assert metrics["top2_accuracy"] == approx(5 / 6)


def test_confusion_matrix(metrics):
    assert metrics["confusion_matrix"] == CONFUSION


def test_macro_precision_recall_f1(metrics):
    # precision per class: 1/2, 2/3, 1/1; recall: 1/2, 2/2, 1/2; F1: 1/2, 4/5, 2/3
    assert metrics["precision_macro"] == approx((1 / 2 + 2 / 3 + 1) / 3)
    assert metrics["recall_macro"] == approx(2 / 3)
    assert metrics["f1_macro"] == approx(59 / 90)


def test_per_class(metrics):
    per = metrics["per_class"]
    assert list(per) == CLASSES
    assert [per[c]["support"] for c in CLASSES] == [2, 2, 2]
    assert [per[c]["precision"] for c in CLASSES] == approx([1 / 2, 2 / 3, 1.0])
    assert [per[c]["recall"] for c in CLASSES] == approx([1 / 2, 1.0, 1 / 2])
    assert [per[c]["f1"] for c in CLASSES] == approx([1 / 2, 4 / 5, 2 / 3])


def test_auroc_one_vs_rest(metrics):
    # Share of (positive, negative) pairs ranked right: shirt 7/8, dress 8/8, shoe 4/8.
    per = metrics["per_class"]
    assert [per[c]["auroc"] for c in CLASSES] == approx([0.875, 1.0, 0.5])
    assert metrics["auroc_macro"] == approx(19 / 24)


def test_auroc_skips_classes_without_positives():
    targets = torch.tensor([0, 0, 1, 1])  # no "shoe"
    logits = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [0, 2.0, 0], [0, 2.0, 0]])
    m = classification_metrics(logits, targets, CLASSES, topk=5)
    assert m["per_class"]["shoe"]["auroc"] is None
    assert m["per_class"]["shoe"]["support"] == 0
    # shirt: (2 vs 0, 2 vs 0, 0 vs 0 tie, 0 vs 0 tie) / 4 = 0.75; dress likewise (identical
    # rows tie exactly).
    assert m["auroc_macro"] == approx(0.75)
    assert m["top3_accuracy"] == 1.0


def test_scalar_metrics_are_plain_floats(metrics):
    scalars = {k: v for k, v in metrics.items() if k not in ("per_class", "confusion_matrix")}
    assert all(type(v) is float for v in scalars.values()), scalars


class WeightedF1Plugin:
    @hookimpl
    def register_metrics(self, register):
        register("f1_weighted", lambda num_classes: MulticlassF1Score(num_classes, average="weighted"))
        register("f1_each", lambda num_classes: MulticlassF1Score(num_classes, average="none"))


def test_extra_metrics_from_a_plugin():
    with plugin_registered(WeightedF1Plugin(), name="test-weighted-f1"):
        m = classification_metrics(LOGITS, TARGETS, CLASSES, topk=2, extra=["f1_weighted", {"name": "f1_each"}])
    assert m["f1_weighted"] == approx(59 / 90)  # equal supports: weighted == macro
    assert m["per_class"]["dress"]["f1_each"] == approx(4 / 5)


class BrokenMetricPlugin:
    @hookimpl
    def register_metrics(self, register):
        register("needs_masks", lambda num_classes: MulticlassF1Score(num_classes, multidim_average="samplewise"))


def test_a_failing_plugin_metric_names_its_plugin():
    with plugin_registered(BrokenMetricPlugin(), name="test-broken-metric"):
        with pytest.raises(PluginError, match="needs_masks.*test-broken-metric"):
            classification_metrics(LOGITS, TARGETS, CLASSES, extra=["needs_masks"])
        with pytest.raises(RecipeError, match="unknown argument"):
            classification_metrics(LOGITS, TARGETS, CLASSES, extra=[{"name": "f1", "args": {"avg": "macro"}}])


def test_run_model_normalises_on_device_and_restores_mode():
    # The "model" averages each channel, so logits are the normalised channel means.
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()).train()
    x = torch.zeros(5, 3, 4, 4, dtype=torch.uint8)
    x[:, 0] = 255
    loader = make_loader(TensorDataset(x, torch.arange(5)), batch_size=2, num_workers=0)
    logits, targets = run_model(model, loader, torch.device("cpu"), mean=(0.5,) * 3, std=(0.5,) * 3)
    assert logits.dtype == torch.float32 and logits.shape == (5, 3)
    assert torch.allclose(logits, torch.tensor([1.0, -1.0, -1.0]).expand(5, 3))
    assert targets.tolist() == [0, 1, 2, 3, 4]
    assert model.training
