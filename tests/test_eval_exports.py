"""`fashion eval` on exported files: an ONNX, TorchScript or plugin-format file opens through the engine
its exporter registered (as in predict) and is scored by its task's own eval, with the figures of the
checkpoint it was exported from."""
import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import CLASSES, make_image_folder, tiny_checkpoint
from test_engines import NpzPlugin

from fashioncli.checkpoint import save_checkpoint
from fashioncli.cli import cli
from fashioncli.errors import CheckpointError, DataError, OutputError
from fashioncli.evaluate import evaluate
from fashioncli.export import export
from fashioncli.plugins import plugin_registered

PLAIN = {"hflip": False, "shift": 0}


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A tiny classifier, its ONNX export and a folder of class folders to score both on."""
    root = tmp_path_factory.mktemp("evalexports")
    ckpt = tiny_checkpoint(root)
    photos = make_image_folder(root / "photos", per_class=6)
    onnx = root / "run" / "export" / "model.onnx"
    export(ckpt, "onnx", out=onnx, check_images=photos)
    return ckpt, onnx, photos


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _same_figures(want, got, atol=1e-5):
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, dict):
            _same_figures(value, got[key], atol)
        elif isinstance(value, float):
            assert got[key] == pytest.approx(value, abs=atol), key
        else:
            assert got[key] == value, key


def _same_per_class(want, got):
    want, got = _rows(want), _rows(got)
    assert [r["class"] for r in got] == [r["class"] for r in want]
    for w, g in zip(want, got):
        assert {k: float(v) for k, v in g.items() if k != "class"} == pytest.approx(
            {k: float(v) for k, v in w.items() if k != "class"}, abs=1e-5)


def test_an_onnx_export_scores_as_its_checkpoint(classifier, tmp_path):
    ckpt, onnx, photos = classifier
    want = evaluate(ckpt, data=photos, out=tmp_path / "ckpt", num_workers=0)
    result = CliRunner().invoke(cli, ["eval", str(onnx), "--data", str(photos), "-o", str(tmp_path / "onnx")])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["engine"] == "onnx" and got["model"] == str(onnx) and "checkpoint" not in got
    assert got["num_samples"] == want["num_samples"] == 18
    assert 0 < want["metrics"]["accuracy"] < 1  # a figure that can differ, not all right or all wrong
    _same_figures(want["metrics"], got["metrics"])
    _same_per_class(tmp_path / "ckpt" / "per_class.csv", tmp_path / "onnx" / "per_class.csv")
    matrix = "confusion_matrix.csv"
    assert (tmp_path / "onnx" / matrix).read_text() == (tmp_path / "ckpt" / matrix).read_text()
    assert [r["predicted"] for r in _rows(tmp_path / "onnx" / "predictions.csv")] == \
        [r["predicted"] for r in _rows(tmp_path / "ckpt" / "predictions.csv")]
    assert json.loads((tmp_path / "onnx" / "summary.json").read_text())["engine"] == "onnx"


def test_an_export_with_tta_scores_close_to_its_checkpoint(classifier, tmp_path):
    """Views are averaged as logits (log-probabilities for an export): the same top-1 decisions."""
    ckpt, onnx, photos = classifier
    tta = {"hflip": True, "shift": 2}
    want = evaluate(ckpt, data=photos, out=tmp_path / "ckpt", num_workers=0, tta=tta)
    got = evaluate(onnx, data=photos, out=tmp_path / "onnx", num_workers=0, tta=tta)
    assert got["metrics"]["accuracy"] == want["metrics"]["accuracy"]


def test_an_export_writes_beside_itself_and_needs_data(classifier):
    ckpt, onnx, photos = classifier
    with pytest.raises(DataError, match=r"exported file '.*model.onnx' does not record its dataset.*--data"):
        evaluate(onnx)
    summary = evaluate(onnx, data=photos, num_workers=0)
    assert summary["out"] == str(onnx.parent / "eval-model-onnx-photos-test")
    with pytest.raises(OutputError, match="is the input"):
        evaluate(onnx, data=photos, out=onnx)
    with pytest.raises(OutputError, match="inside"):
        evaluate(onnx, data=photos, out=photos / "reports")


def test_torchscript_is_scored_only_when_trusted(classifier, tmp_path):
    ckpt, onnx, photos = classifier
    script = tmp_path / "model.torchscript"
    export(ckpt, "torchscript", out=script, check_images=photos)
    refused = CliRunner().invoke(cli, ["eval", str(script), "--data", str(photos), "-o", str(tmp_path / "no")])
    assert refused.exit_code != 0
    assert "loading it runs its code" in refused.output and "--trust-torchscript" in refused.output
    assert not (tmp_path / "no").exists()
    with pytest.raises(CheckpointError, match="runs its code"):
        evaluate(script, data=photos)
    result = CliRunner().invoke(cli, ["eval", str(script), "--data", str(photos), "-o", str(tmp_path / "ts"),
                                      "--trust-torchscript"])
    assert result.exit_code == 0, result.output
    want = evaluate(ckpt, data=photos, out=tmp_path / "ckpt", num_workers=0)
    got = json.loads(result.stdout)
    assert got["engine"] == "torchscript"
    _same_figures(want["metrics"], got["metrics"])


def test_a_plugin_format_is_scored_through_its_registered_engine(classifier, tmp_path):
    ckpt, onnx, photos = classifier
    with plugin_registered(NpzPlugin(), name="test-npz-format"):
        npz = tmp_path / "m.npz"
        export(ckpt, "npz", out=npz, check_images=photos)
        got = evaluate(npz, data=photos, out=tmp_path / "npz", num_workers=0)
    want = evaluate(ckpt, data=photos, out=tmp_path / "ckpt", num_workers=0)
    assert got["engine"] == "npz"
    _same_figures(want["metrics"], got["metrics"])
    _same_per_class(tmp_path / "ckpt" / "per_class.csv", tmp_path / "npz" / "per_class.csv")


def test_a_prototype_export_rejects_as_its_checkpoint(classifier, tmp_path):
    """The export's nearest-prototype distance carries the open-set score and the rejection figures."""
    from fashioncli import create_model
    from fashioncli.engines import open_engine

    _, _, photos = classifier
    torch.manual_seed(0)
    model = create_model("timm_prototype", backbone="test_resnet", num_classes=2)
    meta = {
        "task": "prototype", "classes": CLASSES[:2], "epoch": 1, "held_out": CLASSES[2:],
        "model": {"name": "timm_prototype", "args": {"backbone": "test_resnet", "pretrained": False}},
        "preprocessing": {"image_size": 32, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "resize": "squash"},
    }
    ckpt = tmp_path / "proto" / "checkpoints" / "best.pt"
    save_checkpoint(ckpt, model, meta)
    engine = open_engine(ckpt, device="cpu")
    (_, images, _), = engine.batches(sorted(str(p) for p in photos.rglob("*.png")), 64, num_workers=0)
    # rejects half the images: the figures are neither all nor nothing
    save_checkpoint(ckpt, model, {**meta, "rejection": {"threshold": float(np.median(engine.run(images)["distance"]))}})
    onnx = tmp_path / "proto.onnx"
    export(ckpt, "onnx", out=onnx, check_images=photos)
    want = evaluate(ckpt, data=photos, out=tmp_path / "ckpt", num_workers=0)
    got = evaluate(onnx, data=photos, out=tmp_path / "onnx", num_workers=0)
    assert got["open_set"]["score"] == "min_distance" and got["open_set"]["num_unseen"] == 6
    _same_figures(want["open_set"], got["open_set"])
    _same_figures(want["rejection"], got["rejection"])
    assert 0 < got["rejection"]["known_rejected"] < 1
    _same_figures(want["metrics"], got["metrics"])
    assert "embedding.png" not in got["files"]  # an export has no embedding to plot


def test_a_segmentation_export_scores_as_its_checkpoint(tmp_path):
    from fashioncli import plugins
    from fashioncli.data.dataset import PreparedDataset
    from fashioncli.prepare import prepare

    data = tmp_path / "data"
    prepare("synthetic-segmentation", str(data), image_size=64, count=12, size=64, progress=False)
    prepared = PreparedDataset.open(data)
    args = {"encoder": "test_efficientnet", "decoder_channels": [16, 8, 8, 8, 8]}
    torch.manual_seed(0)
    model = plugins.get("models").create("unet", num_classes=len(prepared.classes), **args)
    with torch.no_grad():  # decisive pixels, not near-ties of a random head
        for p in model.segmentation_head.parameters():
            p.mul_(20)
    meta = {
        "task": "segmentation", "classes": prepared.classes, "palette": prepared.meta.get("palette"),
        "ignore_index": prepared.meta.get("ignore_index", 255), "class_sets": prepared.meta.get("class_sets") or {},
        "model": {"name": "unet", "args": args, "injected": {"num_classes": len(prepared.classes)}},
        "preprocessing": {"image_size": 64, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                          "resize": "squash"},
    }
    ckpt = tmp_path / "seg" / "checkpoints" / "best.pt"
    save_checkpoint(ckpt, model.eval(), meta)
    onnx = tmp_path / "seg.onnx"
    export(ckpt, "onnx", out=onnx)
    want = evaluate(ckpt, data=data, out=tmp_path / "ckpt", num_workers=0, tta=PLAIN)
    got = evaluate(onnx, data=data, out=tmp_path / "onnx", num_workers=0, tta=PLAIN)
    assert got["engine"] == "onnx" and got["num_samples"] == want["num_samples"] > 0
    # Pixels whose two best classes nearly tie may flip (export.MIN_MASK_AGREEMENT); a handful at most.
    _same_figures(want["metrics"], got["metrics"], atol=2e-3)
    assert (tmp_path / "onnx" / "grid.png").is_file()


def test_a_task_that_cannot_undo_its_activation_has_its_exports_refused():
    """A task that does not say how an engine's outputs map back to its model's (``raw_outputs``) is
    refused in one line, never scored on outputs its eval would misread."""
    from regression_plugin import Regression

    with pytest.raises(CheckpointError, match="cannot score an exported regression model; evaluate its checkpoint"):
        Regression.raw_outputs({}, np.zeros((2, 1), np.float32))
