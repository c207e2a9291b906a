"""Model files whose metadata was damaged or edited: a training checkpoint's meta_json and an ONNX
export's `fashion` metadata, rewritten around real weights. Each must fail in one line naming the
file and what is wrong, before anything as large as the metadata asks for is built."""
import json
import re
import resource
import time

import pytest
import torch
from click.testing import CliRunner
from helpers import CLASSES, make_image_folder, tiny_checkpoint

from fashioncli.checkpoint import load_model
from fashioncli.cli import cli
from fashioncli.errors import CheckpointError
from fashioncli.export import export
from fashioncli.model_meta import check_metadata
from fashioncli.engines import METADATA_KEY, open_engine


def _set(path, value):
    """meta -> meta with the dotted ``path`` set to ``value`` (``DELETE`` removes it)."""
    def edit(meta):
        *head, last = path.split(".")
        node = meta
        for key in head:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(last)
        else:
            node[last] = value
        return meta
    return edit


DELETE = object()

# Edits of either kind of file: JSON text, or a function of the metadata mapping.
BOTH = {
    "not JSON": ('{"classes": ["red", ', "not JSON"),
    "a list": ("[1, 2, 3]", "a list of 3, not a mapping"),
    "a string": ('"classes"', "a str, not a mapping"),
    # A checkpoint's weights do not fit the model the classes ask for; an export's output is another width.
    "fewer classes than outputs": (_set("classes", CLASSES[:2]), (
        "fc.weight is (3, 96) in the file, (2, 96) for the metadata", "it lists 2 classes, but the model outputs 3")),
    "more classes than outputs": (_set("classes", CLASSES + ["black"]), (
        "fc.weight is (3, 96) in the file, (4, 96)", "it lists 4 classes, but the model outputs 3")),
    "classes not names": (_set("classes", [1, 2, 3]), "'classes' must be a list"),
    "segmentation claimed": (_set("task", "segmentation"), "claims a segmentation model"),
    "multitask claimed": (_set("task", "multitask"), "'heads' must be a mapping"),
    "heads on a classifier": (_set("heads", {"colour": {"type": "categorical", "classes": CLASSES}}),
                              "it has 'heads' but claims a classification model"),
    "unknown task": (_set("task", "detection"), "task 'detection' is not one of"),
    "no preprocessing": (_set("preprocessing", DELETE), "no 'preprocessing'"),
    "image size 0": (_set("preprocessing.image_size", 0), "'preprocessing.image_size' must be a whole number"),
    "image size 100000": (_set("preprocessing.image_size", 100000), "from 8 to 4096, got 100000"),
    "image size text": (_set("preprocessing.image_size", "32"), "got '32'"),
    "mean [0]": (_set("preprocessing.mean", [0]), "'preprocessing.mean' must be 3 finite numbers"),
    "std 0": (_set("preprocessing.std", [0, 0, 0]), "'preprocessing.std' must be above 0"),
    "std NaN": (_set("preprocessing.std", [float("nan"), 1, 1]), "'preprocessing.std' must be 3 finite"),
    "100001 classes": (_set("classes", [f"c{i}" for i in range(100_001)]), "1 to 100,000 class names"),
    "threshold without distances": (_set("rejection", {"threshold": 1.0}),
                                    "with 2 output(s) (probabilities, distance), but the model has 1"),
    "threshold not a number": (_set("rejection", {"threshold": "far"}),
                               "'rejection.threshold' must be a finite number, got 'far'"),
}
# Edits only a checkpoint can hold: the model fashion builds from it.
CHECKPOINT = {
    "unknown model": (_set("model.name", "resnet_from_mars"), "model 'resnet_from_mars' is not a registered model"),
    "num_classes 1e9": (_set("model.injected", {"num_classes": 1_000_000_000}),
                        "built with num_classes 1000000000, but 'classes' lists 3"),
    "another backbone": (_set("model.args.backbone", "resnet50"), "do not fit"),
    "another model": (_set("model.name", "timm_prototype"), "do not fit"),
    "model not a mapping": (_set("model", "timm"), "'model' must be a mapping"),
    "argument the model lacks": (_set("model.args.colour", "red"), "cannot be built"),
    "recipe not a mapping": (_set("recipe", ["data"]), "'recipe' must be a mapping"),
}


def _text(edit, meta):
    return edit if isinstance(edit, str) else json.dumps(edit(json.loads(meta)))


def _expected(table, case, kind):
    """The message a case must give: one for both kinds of file, or (checkpoint's, export's)."""
    message = table[case][1]
    return message if isinstance(message, str) else message[kind == "onnx"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A real checkpoint and its ONNX export, photos for predict and class folders for eval."""
    root = tmp_path_factory.mktemp("tampered")
    checkpoint = tiny_checkpoint(root)
    onnx_path = root / "model.onnx"
    export(checkpoint, "onnx", out=onnx_path)
    photos = make_image_folder(root / "photos", per_class=2, size=16)
    return {"checkpoint": checkpoint, "onnx": onnx_path, "photos": photos}


def tampered_checkpoint(files, edit, folder):
    payload = torch.load(files["checkpoint"], map_location="cpu", weights_only=True)
    payload["meta_json"] = _text(edit, payload["meta_json"])
    path = folder / "tampered.pt"
    torch.save(payload, path)
    return path


def tampered_onnx(files, edit, folder):
    import onnx

    proto = onnx.load(str(files["onnx"]))
    (prop,) = [p for p in proto.metadata_props if p.key == METADATA_KEY]
    prop.value = _text(edit, prop.value)
    path = folder / "tampered.onnx"
    onnx.save(proto, str(path))
    return path


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def refused(call, path, message):
    """``call()`` raises a one-line CheckpointError naming ``path`` and ``message``, quickly and
    without growing the process's peak memory by anything like what the metadata asks for."""
    peak, start = _peak_mb(), time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        call()
    text = str(info.value)
    assert str(path) in text and message in text and "\n" not in text, text
    assert time.perf_counter() - start < 10 and _peak_mb() - peak < 500


def one_line_error(result, path, message):
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert line.startswith("Error:") and str(path) in line and message in line, line


@pytest.mark.parametrize("case", list(BOTH) + list(CHECKPOINT))
def test_tampered_checkpoint_is_refused_by_predict_and_eval(case, files, tmp_path, tally):
    tally.tried(3)
    table = {**BOTH, **CHECKPOINT}
    path, message = tampered_checkpoint(files, table[case][0], tmp_path), _expected(table, case, "checkpoint")
    refused(lambda: open_engine(path), path, message)
    refused(lambda: load_model(path), path, message)
    out = tmp_path / "predictions.csv"
    one_line_error(CliRunner().invoke(cli, ["predict", str(path), str(files["photos"]), "-o", str(out)]), path, message)
    one_line_error(CliRunner().invoke(cli, ["eval", str(path), "--data", str(files["photos"]), "--split", "all",
                                            "-o", str(tmp_path / "eval")]), path, message)
    assert not out.exists() and not (tmp_path / "eval").exists()


@pytest.mark.parametrize("case", list(BOTH))
def test_tampered_onnx_export_is_refused_by_predict(case, files, tmp_path, tally):
    tally.tried()
    path, message = tampered_onnx(files, BOTH[case][0], tmp_path), _expected(BOTH, case, "onnx")
    refused(lambda: open_engine(path), path, message)
    out = tmp_path / "predictions.csv"
    one_line_error(CliRunner().invoke(cli, ["predict", str(path), str(files["photos"]), "-o", str(out)]), path, message)
    assert not out.exists()


def test_untampered_files_still_load(files):
    """The checks refuse the edits above, not what train and export write."""
    assert open_engine(files["checkpoint"]).classes == CLASSES
    assert open_engine(files["onnx"]).image_size == 32


def test_image_size_the_onnx_graph_does_not_take_is_refused(files, tmp_path, tally):
    tally.tried()
    path = tampered_onnx(files, _set("preprocessing.image_size", 64), tmp_path)
    refused(lambda: open_engine(path), path, "'preprocessing.image_size' is 64, but the model takes ? x 3 x 32 x 32")


def test_multitask_heads_must_be_well_formed(tally):
    """Heads as a multi-task checkpoint or export stores them, each way they can be malformed."""
    good = {"task": "multitask", "preprocessing": {"image_size": 32, "mean": [0.5] * 3, "std": [0.2] * 3},
            "heads": {"colour": {"type": "categorical", "classes": ["red", "blue"]},
                      "sleeve": {"type": "binary", "classes": ["long"]}}}
    assert check_metadata(good, "m.onnx") is good
    bad = {
        "empty": ({}, "'heads' is empty"),
        "a list": ([["red"]], "'heads' must be a mapping"),
        "unknown type": ({"colour": {"type": "rainbow", "classes": ["red"]}}, "with a type among"),
        "no classes": ({"colour": {"type": "categorical"}}, "'heads.colour.classes' must be a list"),
        "binary with two": ({"sleeve": {"type": "binary", "classes": ["long", "short"]}}, "has 2 classes, not 1"),
        "same class twice": ({"colour": {"type": "categorical", "classes": ["red", "red"]}}, "names a class twice"),
        "parent_of a list": ({"colour": {"type": "categorical", "classes": ["red"], "parent_of": ["x"]}},
                             "'heads.colour.parent_of' must be a mapping"),
    }
    tally.tried(len(bad))
    for heads, message in bad.values():
        match = "'m.onnx' has inconsistent fashion metadata: .*" + re.escape(message)
        with pytest.raises(CheckpointError, match=match):
            check_metadata({**good, "heads": heads}, "m.onnx")
