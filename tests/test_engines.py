"""Engines and export formats: a format a plugin registers (how it writes a file, and which engine opens
it) works in `fashion export` and `fashion predict` without any change to fashion's own files; the
engine is chosen by the file's suffix, never by its contents."""
import csv
import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import CLASSES, tiny_checkpoint, write_images

from fashioncli import hookimpl
from fashioncli.cli import cli
from fashioncli.engines import Engine, builtin_formats, open_engine, read_metadata
from fashioncli.errors import CheckpointError
from fashioncli.export import export
from fashioncli.plugins import get, plugin_registered

WEIGHT = "weights/"  # prefix of the module's tensors among the .npz arrays


class NpzEngine(Engine):
    """Runs an .npz file: the model rebuilt from the metadata's spec, the weights from the arrays."""

    kind = "npz"

    def __init__(self, path, device="auto", threads=None):
        from fashioncli.checkpoint import build_model
        from fashioncli.export import PackagedModel

        with np.load(path, allow_pickle=False) as data:  # arrays and text only: no code
            meta = read_metadata(str(data["metadata"]), path)
            weights = {k[len(WEIGHT):]: torch.from_numpy(data[k]) for k in data.files if k.startswith(WEIGHT)}
        super().__init__(meta, path)
        self.module = PackagedModel(build_model(meta), meta)
        self.module.load_state_dict(weights)
        self.module.eval()

    def run(self, images):
        with torch.inference_mode():
            out = self.module(torch.as_tensor(images))
        out = [out] if torch.is_tensor(out) else list(out)
        return self.outputs([o.numpy() for o in out])


class NpzExporter:
    """Weights as numpy arrays, the metadata as JSON text, in one .npz."""

    def save(self, module, example, path, metadata, opset=None):
        arrays = {WEIGHT + k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
        with open(path, "wb") as f:  # a file object: np.savez would add .npz to a temp file's name
            np.savez(f, metadata=np.array(json.dumps(metadata)), **arrays)
        return {"arrays": len(arrays)}


class SelfLoadingNpzExporter(NpzExporter):
    """An exporter that opens its own files for the parity check but registers no engine for predict."""

    def load(self, path):
        return NpzEngine(path, device="cpu")


class NpzPlugin:
    @hookimpl
    def register_exporters(self, register):
        register("npz", NpzExporter, suffixes=(".npz",), open=NpzEngine, runs_code=False)
        # The same files under a suffix whose loading is declared to run code.
        register("npz-program", NpzExporter, suffixes=(".npzp",), open=NpzEngine, runs_code=True)
        # A format that registers no engine: predict cannot open it.
        register("npz-self-loading", SelfLoadingNpzExporter, suffixes=(".npzw",))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("engines")
    write_images(root / "photos", 6)
    return tiny_checkpoint(root), root / "photos"


@pytest.fixture
def npz_format():
    with plugin_registered(NpzPlugin(), name="test-npz-format"):
        yield


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_plugin_format_goes_through_export_and_predict(scene, npz_format, tmp_path):
    ckpt, photos = scene
    exported = CliRunner().invoke(cli, ["export", str(ckpt), "--format", "npz", "-o", str(tmp_path / "m.npz"),
                                        "--check-images", str(photos)])
    assert exported.exit_code == 0, exported.output
    summary = json.loads(exported.stdout)
    assert summary["format"] == "npz" and summary["classes"] == len(CLASSES) and summary["arrays"] > 0
    assert summary["parity"]["top1_agreement"] == 1.0 and summary["parity"]["max_abs_diff"] <= 1e-5
    assert summary["parity"]["images"] == 6

    runs = {}
    for name, model in (("npz", tmp_path / "m.npz"), ("checkpoint", ckpt)):
        result = CliRunner().invoke(cli, ["predict", str(model), str(photos), "-o", str(tmp_path / f"{name}.csv")])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["engine"] == name
        runs[name] = _rows(tmp_path / f"{name}.csv")
    assert len(runs["npz"]) == 6
    assert [r["label"] for r in runs["npz"]] == [r["label"] for r in runs["checkpoint"]]
    assert np.allclose([float(r["score"]) for r in runs["npz"]], [float(r["score"]) for r in runs["checkpoint"]],
                       atol=1e-5)


def test_export_writes_the_first_registered_suffix_by_default(scene, npz_format):
    ckpt, photos = scene
    summary = export(ckpt, "npz", check_images=photos)
    assert summary["path"] == str(ckpt.parents[1] / "export" / "model.npz")


def test_the_engine_is_chosen_by_suffix_never_by_contents(scene, npz_format, tmp_path):
    ckpt, photos = scene
    npz = tmp_path / "m.npz"
    export(ckpt, "npz", out=npz, check_images=photos)
    assert open_engine(npz).kind == "npz" and open_engine(npz).classes == CLASSES
    as_onnx, as_checkpoint = tmp_path / "m.onnx", tmp_path / "m.pt"
    shutil.copy(npz, as_onnx)
    shutil.copy(npz, as_checkpoint)
    with pytest.raises(CheckpointError, match="cannot load ONNX model"):
        open_engine(as_onnx)
    with pytest.raises(CheckpointError, match="not a fashion checkpoint"):
        open_engine(as_checkpoint)


def test_a_format_whose_loading_runs_code_needs_trust(scene, npz_format, tmp_path):
    ckpt, photos = scene
    program = tmp_path / "m.npzp"
    export(ckpt, "npz-program", out=program, check_images=photos)
    with pytest.raises(CheckpointError, match="loading it runs its code.*--trust-torchscript"):
        open_engine(program)
    assert open_engine(program, trust_torchscript=True).kind == "npz"


def test_a_format_without_an_engine_is_refused_by_predict(scene, npz_format, tmp_path):
    ckpt, photos = scene
    path = tmp_path / "m.npzw"
    summary = export(ckpt, "npz-self-loading", out=path, check_images=photos)
    assert summary["parity"]["top1_agreement"] == 1.0
    with pytest.raises(CheckpointError, match="registers no engine"):
        open_engine(path)


def test_builtin_formats_found_without_plugins_are_the_registered_ones():
    """open_engine reads the built-in exporters' registration without loading the plugins (torch-free
    ONNX): what it finds must be what the registry holds."""
    found = {f.name: (f.suffixes, f.open, f.runs_code) for f in builtin_formats()}
    registered = {e.name: (e.extra["suffixes"], e.extra["open"], e.extra["runs_code"]) for e in get("exporters")}
    assert found == {"onnx": ((".onnx",), *registered["onnx"][1:]),
                     "torchscript": ((".torchscript", ".ts"), *registered["torchscript"][1:])}
    assert {name: registered[name] for name in found} == found
    assert found["torchscript"][2] and not found["onnx"][2]


def _old_prototype_checkpoint(root, threshold):
    """A prototype checkpoint as fashion wrote it before prototype was a task: task "classification"."""
    from fashioncli import create_model
    from fashioncli.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create_model("timm_prototype", backbone="test_resnet", num_classes=len(CLASSES))
    meta = {
        "task": "classification", "classes": CLASSES, "epoch": 1, "rejection": {"threshold": threshold},
        "model": {"name": "timm_prototype", "args": {"backbone": "test_resnet", "pretrained": False}},
        "preprocessing": {"image_size": 32, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "resize": "squash"},
    }
    path = root / "old" / "checkpoints" / "best.pt"
    save_checkpoint(path, model, meta)
    return path


def test_files_from_before_prototype_was_a_task_still_predict_and_export(scene, tmp_path):
    """Checkpoints and ONNX files that say "classification" for a prototype model read as prototype."""
    import onnx

    from fashioncli.engines import METADATA_KEY
    from fashioncli.predict import predict

    _, photos = scene
    ckpt = _old_prototype_checkpoint(tmp_path, threshold=0.0)  # every image is farther: `unknown`
    summary = export(ckpt, "onnx", out=tmp_path / "m.onnx", check_images=photos)
    assert summary["parity"]["distance"]["unknown_agreement"] == 1.0
    proto = onnx.load(str(tmp_path / "m.onnx"))
    (prop,) = [p for p in proto.metadata_props if p.key == METADATA_KEY]
    meta = json.loads(prop.value)
    assert meta["task"] == "prototype" and meta["rejection"] == {"threshold": 0.0}
    prop.value = json.dumps({**meta, "task": "classification"})  # as an export written before the change
    onnx.save(proto, str(tmp_path / "old.onnx"))
    for model in (ckpt, tmp_path / "old.onnx"):
        out = tmp_path / f"{model.stem}.csv"
        result = predict(model, [photos], out, num_workers=0)
        assert result["threshold"] == 0.0 and result["unknown"] == result["rows"] == 6
        rows = _rows(out)
        assert all(r["label"] == "unknown" and float(r["distance"]) > 0 for r in rows)
