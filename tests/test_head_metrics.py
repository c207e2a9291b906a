"""Multi-task head metrics against values computed by hand on tiny tensors."""
import math
from functools import partial

import pytest
import torch

from fashioncli.tasks.classification.metrics import classification_metrics
from fashioncli.tasks.multitask.metrics import flat_metrics, head_metrics, multitask_metrics, tune_thresholds
from fashioncli.tasks.multitask.heads import Head

approx = partial(pytest.approx, abs=1e-6)  # metrics are float32, reported to 6 decimals
M = -1  # missing

# -- a multi-label head: 5 present rows, then a missing one ---------------------
TAGS = Head("tags", "multilabel", ["striped", "floral", "denim"])
TAG_PROBS = torch.tensor([
    # striped floral denim
    [0.90, 0.10, 0.20],
    [0.80, 0.70, 0.60],
    [0.30, 0.40, 0.10],
    [0.60, 0.35, 0.30],
    [0.20, 0.55, 0.15],
    [0.99, 0.01, 0.99],  # missing row: would change every metric if it counted
])
TAG_TARGETS = torch.tensor([
    [1, 0, 0],
    [0, 1, 0],
    [1, 1, 0],
    [0, 0, 0],
    [0, 1, 0],
    [M, M, M],
], dtype=torch.float32)
# At 0.5 the present rows predict [1,0,0] [1,1,1] [0,0,0] [1,0,0] [0,1,0]:
#   striped tp 1 fp 2 fn 1 -> P 1/3, R 1/2, F1 2/5
#   floral  tp 2 fp 0 fn 1 -> P 1,   R 2/3, F1 4/5
#   denim   no positives, one false positive -> P 0, R 0, F1 0 (still counted in the macro: it was predicted)
# AP = mean precision at each positive, by descending score:
#   striped 0.9(+) 0.8 0.6 0.3(+) 0.2 -> (1/1 + 2/4) / 2 = 3/4; floral ranks its 3 positives first -> 1
# AUROC = share of (positive, negative) pairs ranked right: striped (3 + 1) / 6, floral 1.

# -- a binary head -----------------------------------------------------------
SLEEVELESS = Head("sleeveless", "binary", ["sleeveless"])
SL_PROBS = torch.tensor([[0.80], [0.30], [0.75], [0.10], [0.70], [0.05]])
SL_TARGETS = torch.tensor([[1], [0], [0], [0], [1], [M]], dtype=torch.float32)
# ranking 0.8(+) 0.75 0.7(+) 0.3 0.1: AP (1 + 2/3) / 2 = 5/6; AUROC (3 + 2) / 6 = 5/6
# at 0.5: predicted [1,0,1,0,1] -> 4/5 right, tp 2 fp 1 fn 0 -> P 2/3, R 1, F1 4/5

# -- a categorical head (the probabilities of test_metrics.py), then a missing row --
CATEGORY = Head("category", "categorical", ["shirt", "dress", "shoe"])
CAT_PROBS = torch.tensor([
    [0.60, 0.30, 0.10],
    [0.35, 0.45, 0.20],
    [0.15, 0.50, 0.35],
    [0.25, 0.52, 0.23],
    [0.05, 0.25, 0.70],
    [0.50, 0.42, 0.08],
    [0.10, 0.10, 0.80],  # missing
])
CAT_TARGETS = torch.tensor([0, 0, 1, 1, 2, 2, M])  # 4 of 6 present rows right


def logit(p):
    return torch.logit(p.double()).float()


@pytest.fixture(scope="module")
def tags():
    return head_metrics(TAGS, logit(TAG_PROBS), TAG_TARGETS)


def test_multilabel_ap_and_map_skip_a_label_without_positives(tags):
    per = tags["per_label"]
    assert per["striped"]["ap"] == approx(3 / 4)
    assert per["floral"]["ap"] == approx(1.0)
    assert per["denim"]["ap"] is None
    assert tags["map"] == approx((3 / 4 + 1) / 2)
    assert tags["map_undefined"] == 1


def test_multilabel_auroc(tags):
    per = tags["per_label"]
    assert [per[c]["auroc"] for c in ("striped", "floral")] == approx([4 / 6, 1.0])
    assert per["denim"]["auroc"] is None
    assert tags["auroc_macro"] == approx((4 / 6 + 1) / 2)


def test_multilabel_at_the_default_threshold(tags):
    per = tags["per_label"]
    assert [per[c]["precision"] for c in TAGS.classes] == approx([1 / 3, 1.0, 0.0])
    assert [per[c]["recall"] for c in TAGS.classes] == approx([1 / 2, 2 / 3, 0.0])
    assert [per[c]["f1"] for c in TAGS.classes] == approx([2 / 5, 4 / 5, 0.0])
    assert [per[c]["support"] for c in TAGS.classes] == [2, 3, 0]
    assert tags["precision_macro"] == approx((1 / 3 + 1 + 0) / 3)
    assert tags["recall_macro"] == approx((1 / 2 + 2 / 3 + 0) / 3)
    assert tags["f1_macro"] == approx((2 / 5 + 4 / 5 + 0) / 3)
    assert tags["f1_micro"] == approx(2 * 3 / (2 * 3 + 3 + 2))  # tp 3, fp 3, fn 2
    assert tags["element_accuracy"] == approx(10 / 15)  # 5 wrong cells of 15
    assert tags["exact_match"] == approx(2 / 5)  # rows 0 and 4
    assert tags["support"] == 5
    assert tags["thresholds"] == [0.5, 0.5, 0.5]
    assert "accuracy" not in tags  # a multi-label head has no single accuracy


def test_per_label_thresholds():
    m = head_metrics(TAGS, logit(TAG_PROBS), TAG_TARGETS, threshold=[0.85, 0.5, 0.7])
    per = m["per_label"]
    # striped at 0.85 predicts row 0 only: tp 1, fp 0, fn 1
    assert [per["striped"][k] for k in ("precision", "recall", "f1")] == approx([1.0, 1 / 2, 2 / 3])
    assert per["striped"]["threshold"] == 0.85
    # denim at 0.7: never predicted, no positives: F1 undefined, left out of the macro
    assert m["f1_macro"] == approx((2 / 3 + 4 / 5) / 2)
    assert m["f1_micro"] == approx(2 * 3 / (2 * 3 + 0 + 2))  # tp 3, fp 0, fn 2
    # a threshold changes nothing that ranks
    assert m["map"] == approx((3 / 4 + 1) / 2)


def test_one_float_threshold_applies_to_every_label():
    m = head_metrics(TAGS, logit(TAG_PROBS), TAG_TARGETS, threshold=0.25)
    # striped predicts rows 0-3: tp 2, fp 2, fn 0; floral rows 1-4: tp 3, fp 1
    assert m["per_label"]["striped"]["f1"] == approx(4 / 6)
    assert m["per_label"]["floral"]["f1"] == approx(6 / 7)
    assert m["thresholds"] == [0.25] * 3


def test_wrong_number_of_thresholds_is_an_error():
    with pytest.raises(ValueError, match="tags"):
        head_metrics(TAGS, logit(TAG_PROBS), TAG_TARGETS, threshold=[0.5, 0.5])


def test_binary_head():
    m = head_metrics(SLEEVELESS, logit(SL_PROBS), SL_TARGETS)
    assert m["support"] == 5
    assert m["accuracy"] == m["element_accuracy"] == approx(4 / 5)
    assert m["exact_match"] == approx(4 / 5)
    assert m["map"] == m["per_label"]["sleeveless"]["ap"] == approx(5 / 6)
    assert m["auroc_macro"] == approx(5 / 6)
    label = m["per_label"]["sleeveless"]
    assert [label[k] for k in ("precision", "recall", "f1")] == approx([2 / 3, 1.0, 4 / 5])
    assert m["f1_macro"] == m["f1_micro"] == approx(4 / 5)
    # (N,) logits and targets are read as one label
    assert head_metrics(SLEEVELESS, logit(SL_PROBS)[:, 0], SL_TARGETS[:, 0]) == m


def test_categorical_head_is_classification_metrics_on_present_rows():
    m = head_metrics(CATEGORY, CAT_PROBS.log(), CAT_TARGETS, topk=2)
    expected = classification_metrics(CAT_PROBS[:6].log(), CAT_TARGETS[:6], CATEGORY.classes, topk=2)
    assert m == {"support": 6, **expected}
    assert m["accuracy"] == approx(4 / 6)
    assert m["top2_accuracy"] == approx(5 / 6)


@pytest.mark.parametrize("head, probs, targets", [
    (TAGS, TAG_PROBS, TAG_TARGETS), (SLEEVELESS, SL_PROBS, SL_TARGETS), (CATEGORY, CAT_PROBS, CAT_TARGETS),
])
def test_missing_rows_change_nothing(head, probs, targets):
    logits = probs.log() if head.type == "categorical" else logit(probs)
    changed = logits.clone()
    changed[-1] = torch.tensor([5.0, -7.0, 3.0][: head.outputs])
    for threshold in (None, 0.3):
        kept = head_metrics(head, logits, targets, threshold)
        assert head_metrics(head, changed, targets, threshold) == kept
        assert head_metrics(head, logits[:-1], targets[:-1], threshold) == kept


def test_a_head_with_no_present_rows_has_the_same_keys_and_nothing_measured():
    for head, probs, targets in ((TAGS, TAG_PROBS, TAG_TARGETS), (CATEGORY, CAT_PROBS, CAT_TARGETS)):
        measured = head_metrics(head, probs, targets)
        empty = head_metrics(head, probs, torch.full_like(targets, M))
        assert list(empty) == list(measured)
        assert empty["support"] == 0
        assert empty["accuracy" if head.type == "categorical" else "map"] is None
    assert head_metrics(TAGS, TAG_PROBS, torch.full_like(TAG_TARGETS, M))["map_undefined"] == 3


# -- threshold tuning -----------------------------------------------------------
TUNE_PROBS = torch.tensor([
    # a: best only at 0.7; b: no positives; c: F1 = 1 for every t in [0.62, 0.9)
    [0.90, 0.40, 0.95],
    [0.78, 0.20, 0.90],
    [0.72, 0.30, 0.62],
    [0.68, 0.90, 0.10],
    [0.30, 0.10, 0.30],
    [0.10, 0.60, 0.20],
])
TUNE_TARGETS = torch.tensor([
    [1, 0, 1],
    [1, 0, 1],
    [1, 0, 0],
    [0, 0, 0],
    [0, 0, 0],
    [0, 0, 0],
], dtype=torch.float32)


def test_tune_thresholds():
    # a: only 0.70 of the grid lies in [0.68, 0.72), where all 3 positives and no negative pass.
    # c: 0.65 .. 0.85 all give F1 = 1; the middle of that run is 0.75. b keeps 0.5.
    assert tune_thresholds(TUNE_PROBS, TUNE_TARGETS) == [0.7, 0.5, 0.75]
    tuned = head_metrics(Head("t", "multilabel", ["a", "b", "c"]), logit(TUNE_PROBS), TUNE_TARGETS,
                         threshold=tune_thresholds(TUNE_PROBS, TUNE_TARGETS))
    assert [tuned["per_label"][c]["f1"] for c in "ac"] == approx([1.0, 1.0])


def test_tune_thresholds_with_a_grid():
    # a on the grid (0.6, 0.69, 0.8): F1 at 0.6 is 6/7, at 0.69 is 1, at 0.8 is 2/4
    assert tune_thresholds(TUNE_PROBS, TUNE_TARGETS, grid=[0.6, 0.69, 0.8])[0] == 0.69


def test_tune_thresholds_leave_missing_rows_out():
    # Two rows scoring just above 0.7 for label a would make 0.75 best if they counted as negatives.
    probs = torch.cat([TUNE_PROBS, torch.tensor([[0.705, 0.99, 0.99], [0.71, 0.99, 0.99]])])
    targets = torch.cat([TUNE_TARGETS, torch.full((2, 3), float(M))])
    assert tune_thresholds(probs, targets) == [0.7, 0.5, 0.75]
    assert tune_thresholds(probs, torch.cat([TUNE_TARGETS, torch.zeros(2, 3)]))[0] == 0.75


# -- several heads --------------------------------------------------------------
HEADS = {"category": CATEGORY, "sleeveless": SLEEVELESS, "tags": TAGS}
LOGITS = {"category": CAT_PROBS[:6].log(), "sleeveless": logit(SL_PROBS[:6]), "tags": logit(TAG_PROBS)}
TARGETS = {"category": CAT_TARGETS[:6], "sleeveless": SL_TARGETS, "tags": TAG_TARGETS}


def test_multitask_metrics():
    result = multitask_metrics(HEADS, LOGITS, TARGETS, thresholds={"tags": [0.85, 0.5, 0.7]}, topk=2)
    assert list(result["heads"]) == list(HEADS)
    assert result["heads"]["tags"] == head_metrics(TAGS, LOGITS["tags"], TAG_TARGETS, [0.85, 0.5, 0.7])
    assert result["heads"]["category"]["top2_accuracy"] == approx(5 / 6)
    # categorical top-1 and binary element accuracy; the multi-label head is not in it
    assert result["mean_accuracy"] == approx((4 / 6 + 4 / 5) / 2)
    assert result["mean_ap"] == approx((5 / 6 + 7 / 8) / 2)  # sleeveless and tags mAP


def test_multitask_means_skip_heads_without_labels_or_of_the_other_kind():
    targets = {**TARGETS, "sleeveless": torch.full_like(SL_TARGETS, M)}
    result = multitask_metrics(HEADS, LOGITS, targets)
    assert result["mean_accuracy"] == approx(4 / 6)
    assert result["mean_ap"] == approx(7 / 8)
    only = multitask_metrics({"category": CATEGORY}, LOGITS, TARGETS)
    assert "mean_ap" not in only
    tags_only = multitask_metrics({"tags": TAGS}, LOGITS, TARGETS)
    assert "mean_accuracy" not in tags_only and "mean_accuracy" not in flat_metrics(tags_only)  # never a nan column


def test_flat_metrics():
    targets = {**TARGETS, "tags": TAG_TARGETS.clamp(max=0)}  # no positives left: mAP undefined
    flat = flat_metrics(multitask_metrics(HEADS, LOGITS, targets, topk=2))
    assert set(flat) == {
        "category_accuracy", "category_balanced_accuracy", "category_f1_macro", "category_auroc_macro",
        "sleeveless_accuracy", "sleeveless_balanced_accuracy", "sleeveless_f1_macro", "sleeveless_auroc_macro",
        "sleeveless_map", "tags_balanced_accuracy", "tags_f1_macro", "tags_auroc_macro", "tags_map",
        "mean_accuracy", "mean_balanced_accuracy", "mean_ap",
    }
    assert all(isinstance(v, float) for v in flat.values())
    assert flat["category_accuracy"] == approx(4 / 6)
    assert flat["sleeveless_map"] == approx(5 / 6)
    assert math.isnan(flat["tags_map"]) and math.isnan(flat["tags_auroc_macro"])
    assert flat["mean_accuracy"] == approx((4 / 6 + 4 / 5) / 2)
    assert flat["mean_ap"] == approx(5 / 6)
