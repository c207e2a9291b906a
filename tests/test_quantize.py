"""`fashion export --quantize int8` and `--half`: a reduced-precision ONNX file, calibrated on the
train split, checked against the float export (labels and the test split's metric), usable by predict
and eval like any export; for every exportable task."""
import json

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
import test_multitask
from helpers import make_image_folder, tiny_checkpoint

from fashioncli.checkpoint import save_checkpoint
from fashioncli.cli import cli
from fashioncli.engines import open_engine
from fashioncli.errors import ExportError
from fashioncli.evaluate import evaluate
from fashioncli.export import export
from fashioncli.predict import predict
from fashioncli.prepare import prepare

prepared, run = test_multitask.prepared, test_multitask.run  # fixtures: a tiny trained multi-task run
LENIENT = {"min_agreement": 0.0, "max_metric_drop": 1.0}  # random tiny models: the figures, not their size


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A tiny classifier whose recipe names a prepared dataset (train, val and test splits)."""
    root = tmp_path_factory.mktemp("quantize")
    make_image_folder(root / "src", per_class=8, splits=["train", "val", "test"])
    prepare(str(root / "src"), str(root / "data"), image_size=32, progress=False)
    return tiny_checkpoint(root, data_root=root / "data")


def quantized_ops(path):
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_int8_export_is_static_calibrated_checked_and_usable(classifier, tmp_path):
    summary = export(classifier, "onnx", **LENIENT, precision="int8")
    out = classifier.parents[1] / "export" / "model.int8.onnx"  # beside, not over, the float model.onnx
    assert summary["path"] == str(out) and out.is_file() and not list(out.parent.glob("*float*"))
    reduced = summary["reduced"]
    assert reduced["precision"] == "int8" and reduced["method"] == "static"
    assert reduced["calibration"] == "train split" and reduced["calibration_images"] == 24
    assert reduced["images"] == 24  # the test split's images
    assert 0 <= reduced["agreement"] <= 1
    metric = reduced["metric"]
    assert metric["name"] == "accuracy" and metric["drop"] == pytest.approx(metric["float"] - metric["reduced"])
    assert {"QuantizeLinear", "DequantizeLinear"} <= quantized_ops(out)
    assert summary["bytes"] < reduced["float_bytes"]
    # predict and eval open it as any ONNX export
    rows = predict(out, [classifier.parents[2] / "src" / "test"], tmp_path / "p.csv")
    assert rows["engine"] == "onnx" and rows["rows"] == 24
    scored = evaluate(out, data=classifier.parents[2] / "data", out=tmp_path / "eval", num_workers=0)
    assert scored["metrics"]["accuracy"] == pytest.approx(metric["reduced"])


def test_a_quantized_file_that_falls_short_is_not_written(classifier, tmp_path):
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=r"label agreement .* \(at least 1\.5\), test accuracy") as err:
        export(classifier, "onnx", out=out, precision="int8", min_agreement=1.5)
    assert "falls short of the float export" in str(err.value)
    assert not out.exists() and (tmp_path / "m.failed.onnx").is_file()


@pytest.mark.slow
def test_a_quantized_file_that_loses_too_much_of_the_metric_is_not_written(classifier, tmp_path):
    with pytest.raises(ExportError, match="test accuracy"):  # any loss of accuracy at all is too much
        export(classifier, "onnx", out=tmp_path / "m.onnx", precision="int8", min_agreement=0.0, max_metric_drop=-1.0)


@pytest.mark.slow
def test_half_export_is_float16_inside_with_the_same_inputs_and_outputs(classifier, tmp_path):
    out = tmp_path / "m.fp16.onnx"
    summary = export(classifier, "onnx", out=out, precision="fp16", **LENIENT)
    assert summary["reduced"]["method"] == "float16" and "calibration" not in summary["reduced"]
    model = onnx.load(str(out))
    assert {i.data_type for i in model.graph.initializer} & {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    probs = open_engine(out, device="cpu").run(np.zeros((2, 3, 32, 32), np.uint8))
    assert probs.dtype == np.float32 and np.allclose(probs.sum(1), 1, atol=1e-2)


@pytest.mark.slow
def test_without_a_prepared_dataset_int8_is_dynamic_and_the_metric_is_not_compared(tmp_path):
    ckpt = tiny_checkpoint(tmp_path)
    summary = export(ckpt, "onnx", out=tmp_path / "m.onnx", precision="int8", **LENIENT)
    reduced = summary["reduced"]
    assert reduced["method"] == "dynamic" and reduced["calibration_images"] == 0
    assert reduced["metric"] == {"why": "no prepared test split found"}
    assert reduced["images"] == 8  # the parity check's images


def test_only_a_format_that_converts_can_be_quantized(classifier, tmp_path):
    with pytest.raises(ExportError, match="exporter 'torchscript' cannot write int8 files; use --format onnx"):
        export(classifier, "torchscript", out=tmp_path / "m.ts", precision="int8")


def test_cli_refuses_quantize_with_half(classifier):
    result = CliRunner().invoke(cli, ["export", str(classifier), "--quantize", "int8", "--half"])
    assert result.exit_code == 2 and "--quantize and --half" in result.output


@pytest.mark.slow
def test_cli_prints_agreement_and_metric(classifier, tmp_path):
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(cli, ["export", str(classifier), "-o", str(out), "--quantize", "int8",
                                      "--min-agreement", "0"])
    assert result.exit_code in (0, 1), result.output
    if result.exit_code == 0:  # a random tiny model may lose more than a point: then it says so in one line
        reduced = json.loads(result.output)["reduced"]
        assert reduced["min_agreement"] == 0 and "float" in reduced["metric"] and "reduced" in reduced["metric"]
    else:
        assert "test accuracy" in result.output and "label agreement" in result.output


@pytest.mark.slow
def test_multitask_int8_export(run, tmp_path):
    run_dir, _ = run
    summary = export(run_dir, "onnx", out=tmp_path / "mt.onnx", precision="int8", **LENIENT)
    reduced = summary["reduced"]
    assert reduced["method"] == "static" and reduced["metric"]["name"] == "mean_accuracy"
    outputs = open_engine(tmp_path / "mt.onnx", device="cpu").run(np.zeros((2, 3, 32, 32), np.uint8))
    assert set(outputs) == {"family", "colour", "tags"}


@pytest.mark.slow
def test_prototype_int8_export(tmp_path):
    from fashioncli import create_model

    make_image_folder(tmp_path / "src", classes=("red", "green"), per_class=6, splits=["train", "val", "test"])
    prepare(str(tmp_path / "src"), str(tmp_path / "data"), image_size=32, progress=False)
    torch.manual_seed(0)
    model = create_model("timm_prototype", backbone="test_resnet", num_classes=2)
    meta = {
        "task": "prototype", "classes": ["green", "red"], "epoch": 1, "rejection": {"threshold": 1.0},
        "model": {"name": "timm_prototype", "args": {"backbone": "test_resnet", "pretrained": False}},
        "preprocessing": {"image_size": 32, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "resize": "squash"},
        "recipe": {"data": {"root": str(tmp_path / "data")}},
    }
    ckpt = tmp_path / "proto" / "checkpoints" / "best.pt"
    save_checkpoint(ckpt, model, meta)
    summary = export(ckpt, "onnx", out=tmp_path / "p.onnx", precision="int8", **LENIENT)
    assert summary["reduced"]["method"] == "static" and summary["reduced"]["metric"]["name"] == "accuracy"
    outputs = open_engine(tmp_path / "p.onnx", device="cpu").run(np.zeros((2, 3, 32, 32), np.uint8))
    assert set(outputs) == {"probabilities", "distance"}


@pytest.mark.slow
def test_segmentation_int8_export(tmp_path):
    from fashioncli import plugins
    from fashioncli.data.dataset import PreparedDataset

    data = tmp_path / "data"
    prepare("synthetic-segmentation", str(data), image_size=64, count=12, size=64, progress=False)
    prepared_data = PreparedDataset.open(data)
    args = {"encoder": "test_efficientnet", "decoder_channels": [16, 8, 8, 8, 8]}
    torch.manual_seed(0)
    model = plugins.get("models").create("unet", num_classes=len(prepared_data.classes), **args)
    meta = {
        "task": "segmentation", "classes": prepared_data.classes, "ignore_index": 255,
        "model": {"name": "unet", "args": args, "injected": {"num_classes": len(prepared_data.classes)}},
        "preprocessing": {"image_size": 64, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                          "resize": "squash"},
        "recipe": {"data": {"root": str(data)}},
    }
    ckpt = tmp_path / "seg" / "checkpoints" / "best.pt"
    save_checkpoint(ckpt, model.eval(), meta)
    summary = export(ckpt, "onnx", out=tmp_path / "s.onnx", precision="int8", **LENIENT)
    reduced = summary["reduced"]
    assert reduced["method"] == "static" and reduced["metric"]["name"] == "miou"
    assert 0 <= reduced["agreement"] <= 1  # a share of pixels
    probs = open_engine(tmp_path / "s.onnx", device="cpu").run(np.zeros((1, 3, 64, 64), np.uint8))
    assert probs.shape == (1, len(prepared_data.classes), 64, 64)
