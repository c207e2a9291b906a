"""Nothing fashion loads can run code, and nothing it unpacks or downloads lands where it should not:
crafted model files, YAML tags, recipes from URLs, archives that climb out of their folder, and
downloads cut off mid-transfer."""
import ast
import hashlib
import io
import os
import pickle
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import file_server, make_image_folder

import fashioncli
from fashioncli.cli import cli
from fashioncli.data.dataset import PreparedDataset
from fashioncli.download import download
from fashioncli.errors import CheckpointError, DataError, RecipeError
from fashioncli.engines import open_engine
from fashioncli.recipe import load_recipe

SOURCES = [Path(fashioncli.__file__).parent, Path(fashioncli.__file__).parents[1] / "plugins"]


class Mkdir:
    """Unpickling this creates a folder: proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


# --- model files that are not what they claim ------------------------------------------------------

def test_torchscript_archive_with_a_code_pickle_is_refused(tmp_path, tally):
    tally.tried()
    marker, model = tmp_path / "ran", tmp_path / "model.torchscript"
    with zipfile.ZipFile(model, "w") as z:  # looks like `fashion export` output: extra/fashion.json inside
        z.writestr("model/extra/fashion.json", '{"classes": ["a"], "preprocessing": {"image_size": 8}}')
        z.writestr("model/data.pkl", pickle.dumps(Mkdir(marker)))
        z.writestr("model/version", "3\n")
    with pytest.raises(CheckpointError, match="cannot load TorchScript model"):
        open_engine(model, trust_torchscript=True)
    assert not marker.exists()


def test_onnx_files_that_are_not_fashion_models_are_refused(tmp_path, tally):
    import onnx
    from onnx import TensorProto, helper

    tally.tried(3)
    marker = tmp_path / "ran"
    (tmp_path / "pickle.onnx").write_bytes(pickle.dumps(Mkdir(marker)))
    with pytest.raises(CheckpointError, match="cannot load ONNX model"):
        open_engine(tmp_path / "pickle.onnx")
    assert not marker.exists()

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), tmp_path / "plain.onnx")
    with pytest.raises(CheckpointError, match="no fashion metadata"):
        open_engine(tmp_path / "plain.onnx")
    (tmp_path / "plain.pt").write_bytes((tmp_path / "plain.onnx").read_bytes())  # an ONNX file named .pt
    with pytest.raises(CheckpointError, match="not a fashion checkpoint"):
        open_engine(tmp_path / "plain.pt")


def test_no_loader_that_can_run_code_is_called_anywhere():
    """YAML through safe_load only, torch.load with weights_only=True only, no pickle, eval or exec."""
    found = []
    for root in SOURCES:
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
                weights_only = any(k.arg == "weights_only" and getattr(k.value, "value", None) is True
                                   for k in node.keywords)
                if ((owner == "yaml" and name not in ("safe_load", "safe_dump", "YAMLError"))
                        or (owner == "torch" and name == "load" and not weights_only)
                        or owner in ("pickle", "marshal", "dill", "cloudpickle")
                        or (isinstance(func, ast.Name) and name in ("eval", "exec"))):
                    found.append(f"{path}:{node.lineno}: {ast.unparse(node)[:80]}")
    assert not found, "\n".join(found)


# --- recipes -----------------------------------------------------------------------------------------

def test_recipes_from_urls_are_data_only(tmp_path, tally):
    tally.tried()
    marker = tmp_path / "ran"
    files = {
        "/evil.yaml": f"model: !!python/object/apply:os.mkdir ['{marker}']\n".encode(),
        "/r/_base/b.yaml": b"model: {name: timm, args: {backbone: test_resnet}}\ntrain: {epochs: 3}\n",
        "/r/leaf.yaml": b"base: _base/b.yaml\ndata: {root: somewhere}\n",
    }
    with file_server(files) as server:
        with pytest.raises(RecipeError, match="not valid YAML"):
            load_recipe(f"{server.url}/evil.yaml")
        recipe = load_recipe(f"{server.url}/r/leaf.yaml")  # bases resolve against the URL
    assert not marker.exists()
    assert recipe["train"]["epochs"] == 3 and recipe["data"]["root"] == "somewhere"


# --- downloads ---------------------------------------------------------------------------------------

def test_download_cut_off_mid_transfer_keeps_its_bytes_and_resumes(tmp_path, tally):
    tally.injected()
    payload = os.urandom(300_000)
    dest, digest = tmp_path / "data.bin", hashlib.sha256(payload).hexdigest()
    with file_server({"/data.bin": payload}, cut={"/data.bin"}) as server:
        with pytest.raises(DataError, match="stopped after 150000 of 300000 bytes; rerun to resume"):
            download(f"{server.url}/data.bin", dest, sha256=digest, progress=False)
        assert (tmp_path / "data.bin.part").stat().st_size == 150_000 and not dest.exists()
        download(f"{server.url}/data.bin", dest, sha256=digest, progress=False)
        assert server.ranges == [None, "bytes=150000-"]
    assert tally.count_lost(0 if dest.read_bytes() == payload else 1) == 0


# --- archives as prepare sources ---------------------------------------------------------------------

def _zip(path, members):
    """members: (name, bytes) or (name, '->target') for a symbolic link."""
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members:
            info = zipfile.ZipInfo(name)
            if isinstance(data, str):
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                data = data.removeprefix("->").encode()
            z.writestr(info, data)
    return path


def _tar(path, members):
    """members: (name, bytes), (name, '->target') symlink, or (name, '=>target') hard link."""
    with tarfile.open(path, "w:gz") as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if isinstance(data, str):
                info.type = tarfile.SYMTYPE if data.startswith("->") else tarfile.LNKTYPE
                info.linkname = data[2:]
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return path


def _good_members(tmp_path):
    src = make_image_folder(tmp_path / "photos", per_class=4, size=16)
    return [(p.relative_to(tmp_path).as_posix(), p.read_bytes()) for p in sorted(src.rglob("*.png"))]


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_prepare_takes_an_archive_and_unpacks_it_into_out_source(tmp_path, kind):
    members = _good_members(tmp_path)
    archive = (_zip if kind == "zip" else _tar)(tmp_path / f"photos.{kind}", members)
    result = CliRunner().invoke(cli, ["prepare", str(archive), str(tmp_path / "out"), "--image-size", "16"])
    assert result.exit_code == 0, result.output
    assert PreparedDataset.open(tmp_path / "out").classes == ["blue", "green", "red"]
    assert (tmp_path / "out" / "source" / "photos" / "red" / "red_0.png").is_file()
    again = CliRunner().invoke(cli, ["prepare", str(archive), str(tmp_path / "out"), "--image-size", "16"])
    assert again.exit_code == 0, again.output  # re-preparing unpacks afresh over the old copy


ESCAPES = {
    "zip: ../ in a name": ("zip", [("../escaped.txt", b"x")]),
    "zip: absolute name": ("zip", [("/tmp/escaped.txt", b"x")]),
    "zip: backslash climb": ("zip", [("..\\escaped.txt", b"x")]),
    "zip: link out": ("zip", [("photos/link", "->../../escaped.txt")]),
    "zip: absolute link": ("zip", [("photos/link", "->/etc/passwd")]),
    "zip: link chain": ("zip", [("photos/a", "->b/.."), ("photos/b", "->.."), ("photos/x.png", b"x")]),
    "tar: ../ in a name": ("tar.gz", [("photos/../../escaped.txt", b"x")]),
    "tar: absolute name": ("tar.gz", [("/tmp/escaped.txt", b"x")]),
    "tar: link out": ("tar.gz", [("photos/link", "->../../escaped.txt")]),
    "tar: absolute link": ("tar.gz", [("photos/link", "->/etc/passwd")]),
    "tar: hard link out": ("tar.gz", [("photos/hard", "=>../../etc/passwd")]),
    "tar: link chain": ("tar.gz", [("photos/a", "->b/.."), ("photos/b", "->.."), ("photos/x.png", b"x")]),
}


@pytest.mark.parametrize("case", list(ESCAPES))
def test_archives_that_reach_outside_their_folder_are_refused(case, tmp_path, tally):
    tally.tried()
    kind, bad = ESCAPES[case]
    work = tmp_path / "a" / "b"  # deep enough that '../..' stays inside tmp_path, where we can look
    work.mkdir(parents=True)
    archive = (_zip if kind == "zip" else _tar)(work / f"evil.{kind}", _good_members(tmp_path) + bad)
    before = {p for p in tmp_path.rglob("*")}
    result = CliRunner().invoke(cli, ["prepare", str(archive), str(work / "out"), "--image-size", "16"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "refusing to unpack it" in result.output and len(result.output.strip().splitlines()) == 1
    created = {p for p in tmp_path.rglob("*")} - before
    outside = [p for p in created if not p.is_relative_to(work / "out")]
    links = [p for p in created if p.is_symlink()]
    assert tally.count_lost(len(outside) + len(links)) == 0, (outside, links)
    assert not Path("/tmp/escaped.txt").exists()
