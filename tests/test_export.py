import csv
import json

import numpy as np
import pytest
import torch

from fashioncli import hookimpl, plugins
from fashioncli.errors import ExportError, UnknownNameError
from fashioncli.engines import METADATA_FILE, METADATA_KEY, OnnxEngine, open_engine
from fashioncli.export import export

from helpers import CLASSES, tiny_checkpoint, write_images


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    write_images(root / "check", 5)
    return tiny_checkpoint(root)


@pytest.fixture(scope="module")
def onnx_export(ckpt):
    return export(ckpt, "onnx", check_images=ckpt.parents[2] / "check")


def test_onnx_export_round_trip(ckpt, onnx_export):
    import onnx

    path = ckpt.parents[1] / "export" / "model.onnx"  # default: beside the run's checkpoints
    assert onnx_export["path"] == str(path) and path.is_file()
    assert onnx_export["parity"]["top1_agreement"] == 1.0
    assert onnx_export["parity"]["max_abs_diff"] <= 1e-3
    assert onnx_export["parity"]["images"] == 5 and onnx_export["parity"]["source"] == "check images"
    proto = onnx.load(str(path))
    meta = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
    assert meta["classes"] == CLASSES
    assert meta["preprocessing"] == {"image_size": 32, "resize": "squash", "mean": [0.5, 0.4, 0.3],
                                     "std": [0.2, 0.25, 0.3], "normalized_in_model": True}
    assert meta["input"]["dtype"] == "uint8" and meta["input"]["layout"] == "NCHW"
    (graph_input,) = proto.graph.input
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert graph_input.type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    engine = OnnxEngine(path)
    for n in (1, 7):
        probs = engine.run(np.random.default_rng(n).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8))
        assert probs.shape == (n, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_export_round_trip(ckpt, tmp_path):
    out = tmp_path / "m.ts"
    summary = export(ckpt, "torchscript", out=out)
    assert summary["parity"]["top1_agreement"] == 1.0 and summary["parity"]["max_abs_diff"] <= 1e-5
    assert summary["parity"]["source"].startswith("random")  # no test split recorded in this checkpoint
    files = {METADATA_FILE: ""}
    module = torch.jit.load(str(out), _extra_files=files)
    meta = json.loads(files[METADATA_FILE])
    assert meta["classes"] == CLASSES and meta["preprocessing"]["image_size"] == 32
    probs = module(torch.zeros(3, 3, 32, 32, dtype=torch.uint8))
    assert probs.shape == (3, 3)
    engine = open_engine(out, trust_torchscript=True)  # a program: opened only when trusted
    assert engine.kind == "torchscript" and engine.classes == CLASSES


def test_check_images_default_to_the_test_split(tmp_path):
    prepared = tmp_path / "prepared"
    paths = write_images(prepared / "images", 20)
    (prepared / "dataset.json").write_text(json.dumps(
        {"format_version": 1, "task": "classification", "classes": CLASSES, "splits": {"test": 20}}))
    with open(prepared / "test.csv", "w", newline="") as f:
        csv.writer(f).writerows([("path", "label")] + [(str(p), CLASSES[i % 3]) for i, p in enumerate(paths)])
    ckpt = tiny_checkpoint(tmp_path, data_root=prepared)
    summary = export(ckpt, "torchscript")
    assert summary["parity"]["source"] == "test-split images" and summary["parity"]["images"] == 16


class Shift(torch.nn.Module):
    def forward(self, probs):
        return probs.roll(1, dims=1)


class BrokenPlugin:
    """A third-party exporter plugin whose files shift the class order by one."""

    @hookimpl
    def register_exporters(self, register):
        from fashion_plugins.exporters.standard import TorchScriptExporter

        class Broken(TorchScriptExporter):
            def save(self, module, example, path, metadata, opset=None):
                return super().save(torch.nn.Sequential(module, Shift()), example, path, metadata, opset)

        register("broken", Broken)


@pytest.fixture
def broken_exporter():
    with plugins.plugin_registered(BrokenPlugin(), name="broken-exporter"):
        yield "broken"


def test_parity_failure_raises_and_keeps_the_file(ckpt, tmp_path, broken_exporter):
    out = tmp_path / "model.torchscript"
    out.write_text("previous export")
    with pytest.raises(ExportError, match=r"model\.failed\.torchscript.*disagrees.*top-1 agreement 0.*left unchanged"):
        export(ckpt, broken_exporter, out=out)
    assert out.read_text() == "previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.failed.torchscript", "model.torchscript"]


def test_export_errors_are_actionable(ckpt, tmp_path):
    with pytest.raises(UnknownNameError, match="onnx, torchscript"):
        export(ckpt, "tflite")
    with pytest.raises(ExportError, match="ONNX only"):
        export(ckpt, "torchscript", out=tmp_path / "m.torchscript", opset=17)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ExportError, match="no readable images"):
        export(ckpt, "torchscript", out=tmp_path / "m.torchscript", check_images=[str(tmp_path / "*.png")])


class Nudge(torch.nn.Module):
    def forward(self, probs):
        return probs + 0.01  # the same top-1 everywhere, 0.01 off


class NudgedPlugin:
    """An exporter whose files differ from PyTorch by 0.01: refused at the default atol, not at 0.1."""

    @hookimpl
    def register_exporters(self, register):
        from fashion_plugins.exporters.standard import TorchScriptExporter

        class Nudged(TorchScriptExporter):
            def save(self, module, example, path, metadata, opset=None):
                super().save(torch.nn.Sequential(module, Nudge()), example, path, metadata)
                return {"opset": opset}  # what --opset passed on

        register("nudged", Nudged)


def test_export_takes_the_atol_and_opset_its_failure_message_advises(ckpt, tmp_path):
    from click.testing import CliRunner

    from fashioncli.cli import cli

    def run(*args):
        return CliRunner().invoke(cli, ["export", str(ckpt), "-o", str(tmp_path / "m.ts"), *args])

    with plugins.plugin_registered(NudgedPlugin(), name="nudged-exporter"):
        refused = run("--format", "nudged")
        assert refused.exit_code == 1 and "(atol 0.001)" in refused.stderr and "--atol" in refused.stderr
        summary = json.loads(run("--format", "nudged", "--atol", "0.1", "--opset", "17").stdout)
        assert summary["parity"]["atol"] == 0.1 and 0.009 < summary["parity"]["max_abs_diff"] < 0.011
        assert summary["opset"] == 17
    wrong = run("--format", "torchscript", "--opset", "17")
    assert wrong.exit_code == 1 and "--opset applies to ONNX only" in wrong.stderr
