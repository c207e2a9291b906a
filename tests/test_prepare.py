"""`prepare`: importers, splits, dropped files, report, cache and the prepared-dataset contract."""
import csv
import gzip
import json
import shutil
import struct
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import shared_dataset
from helpers import file_server, make_image_folder

from fashioncli.data import cache as cache_module
from fashioncli import hookimpl, plugins
from fashioncli.data.dataset import PreparedDataset
from fashioncli.download import download
from fashioncli.errors import DataError, RecipeError
from fashioncli.data.images import read_image
from fashioncli.data.importing import Imported
from fashioncli.engines import decode as predict_decode
from fashioncli.data.sources import pick_importer
from fashioncli.prepare import prepare


def run(source, out, **kw):
    return prepare(str(source), str(out), progress=False, **kw)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_png(path, value=128, size=24):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size, size, 3), value, np.uint8))
    return path


# --- folders and splits ------------------------------------------------------------------------

def test_folder_without_splits_gets_a_seeded_stratified_split(tmp_path):
    src = make_image_folder(tmp_path / "src", per_class=20, size=16)
    summary = run(src, tmp_path / "a", image_size=16, val_fraction=0.2, test_fraction=0.2, seed=3)
    assert summary["splits"] == {"train": 36, "val": 12, "test": 12}
    for split, n in (("train", 12), ("val", 4), ("test", 4)):  # the same share of every class
        assert summary["counts"][split] == {"blue": n, "green": n, "red": n}

    run(src, tmp_path / "b", image_size=16, val_fraction=0.2, test_fraction=0.2, seed=3)
    run(src, tmp_path / "c", image_size=16, val_fraction=0.2, test_fraction=0.2, seed=4)
    val = lambda out: [r["path"] for r in read_csv(tmp_path / out / "val.csv")]  # noqa: E731
    assert val("a") == val("b") and val("a") != val("c")
    assert summary["importer"] == "folder" and summary["problems"] == 0


def test_split_folders_are_kept_and_validation_becomes_val(tmp_path):
    src = make_image_folder(tmp_path / "src", per_class=3, size=16, splits=["train", "validation", "test"])
    summary = run(src, tmp_path / "out", image_size=16)
    assert summary["splits"] == {"train": 9, "val": 9, "test": 9}
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta == {
        "format_version": 1, "task": "classification", "classes": ["blue", "green", "red"],
        "splits": {"train": 9, "val": 9, "test": 9}, "importer": "folder",
        "source": str(src.absolute()), "image_size": 16,
    }
    rows = read_csv(tmp_path / "out" / "val.csv")
    assert all(r["path"].startswith(str(src / "validation")) for r in rows)
    assert {r["label"] for r in rows} == {"blue", "green", "red"}


def test_source_with_train_and_test_only_gets_val_from_train(tmp_path):
    src = make_image_folder(tmp_path / "src", per_class=10, size=16, splits=["train", "test"])
    summary = run(src, tmp_path / "out", image_size=16, val_fraction=0.2)
    assert summary["splits"] == {"train": 24, "val": 6, "test": 30}


def test_unreadable_files_are_reported_and_skipped(tmp_path):
    src = make_image_folder(tmp_path / "src", per_class=4, size=16)
    (src / "red" / "empty.jpg").write_bytes(b"")
    good = (src / "red" / "red_0.png").read_bytes()
    (src / "green" / "truncated.png").write_bytes(good[: len(good) // 2])
    (src / "blue" / "notes.jpg").write_text("not an image")
    write_png(src / "loose.png")  # not in a class folder
    summary = run(src, tmp_path / "out", image_size=16, val_fraction=0, test_fraction=0)
    assert summary["splits"] == {"train": 12} and summary["problems"] == 4

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    reasons = {p["path"].rsplit("/", 1)[-1]: p["reason"] for p in report["problems"]}
    assert reasons["empty.jpg"].startswith("empty file")
    assert reasons["truncated.png"].startswith("truncated or corrupt PNG")
    assert reasons["notes.jpg"].startswith("not a readable image")
    assert reasons["loose.png"] == "not inside a class folder"
    assert "truncated.png" in (tmp_path / "out" / "report.md").read_text()
    ds = PreparedDataset.open(tmp_path / "out")
    assert len(ds.samples("train")) == 12 and len(ds.cache("train")) == 12
    assert not any("empty.jpg" in p for p in ds.paths("train"))


def test_split_or_class_with_nothing_readable_is_left_out(tmp_path):
    src = make_image_folder(tmp_path / "src", classes=("red", "blue"), per_class=3, size=16, splits=["train"])
    for name in ("test/red/a.jpg", "test/blue/b.jpg", "train/green/c.jpg"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(b"\xff\xd8 broken")
    summary = run(src, tmp_path / "out", image_size=16, val_fraction=0)
    assert summary["splits"] == {"train": 6} and summary["problems"] == 3
    assert summary["classes"] == ["blue", "red"]
    assert not (tmp_path / "out" / "test.csv").exists() and not (tmp_path / "out" / "cache" / "16" / "test.u8").exists()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["notes"] == ["class 'green' has no readable images and was left out"]


def test_copies_across_the_sources_splits_stay_in_test_only(tmp_path):
    src = make_image_folder(tmp_path / "src", per_class=2, size=16, splits=["train", "test"])
    shutil.copy(src / "train" / "red" / "red_0.png", src / "test" / "red" / "copy.png")
    summary = run(src, tmp_path / "out", image_size=16, val_fraction=0)
    assert summary["duplicates_across_splits"] == 0 and summary["copies_removed_across_splits"] == 1
    removed = json.loads((tmp_path / "out" / "report.json").read_text())["duplicates"]["removed_across_splits"]
    assert [(f["split"], Path(f["path"]).name) for f in removed[0]["kept"]] == [("test", "copy.png")]
    assert [(f["split"], Path(f["path"]).name) for f in removed[0]["dropped"]] == [("train", "red_0.png")]
    train = (tmp_path / "out" / "train.csv").read_text()
    assert "red_0.png" not in train and "red_1.png" in train


def test_classes_subset(tmp_path):
    src = make_image_folder(tmp_path / "src", per_class=4, size=16)
    summary = run(src, tmp_path / "out", image_size=16, classes=["red", "blue"], val_fraction=0, test_fraction=0)
    assert summary["classes"] == ["blue", "red"] and summary["splits"] == {"train": 8} and summary["problems"] == 0
    with pytest.raises(DataError, match="class 'gren' is not in the dataset.*did you mean 'green'"):
        run(src, tmp_path / "out2", classes="red,gren")


# --- the cache -----------------------------------------------------------------------------------

def test_cache_rows_match_predict_and_new_sizes_are_built_once(tmp_path, monkeypatch):
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for i in range(6):  # odd sizes and aspect ratios: the cache must decode and squash exactly like predict
        folder = src / f"c{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.jpg"), rng.integers(0, 255, (30 + 7 * i, 50 - 3 * i, 3), dtype=np.uint8))
    run(src, tmp_path / "out", image_size=20, val_fraction=0, test_fraction=0)
    ds = PreparedDataset.open(tmp_path / "out")
    rows = ds.cache("train")
    assert isinstance(rows, np.memmap) and rows.shape == (6, 20, 20, 3) and rows.dtype == np.uint8
    for row, path in zip(rows, ds.paths("train")):
        np.testing.assert_array_equal(row, predict_decode(path, 20)[0])
    assert ds.labels("train").dtype == np.int64

    builds = []
    real_build = cache_module.build_cache
    monkeypatch.setattr(cache_module, "build_cache", lambda *a, **k: builds.append(a[1]) or real_build(*a, **k))
    first = cache_module.ensure_cache(tmp_path / "out", "train", 12, progress=False)
    second = PreparedDataset.open(tmp_path / "out").cache("train", 12)
    assert builds == [12] and first.shape == second.shape == (6, 12, 12, 3)
    np.testing.assert_array_equal(second[3], predict_decode(ds.paths("train")[3], 12)[0])
    meta = json.loads((tmp_path / "out" / "cache" / "12" / "train.json").read_text())
    assert meta["count"] == 6 and meta["size"] == 12 and meta["ok"] == [True] * 6
    assert not list((tmp_path / "out" / "cache" / "12").glob("*.tmp"))  # written atomically


# --- tables ----------------------------------------------------------------------------------------

def test_csv_with_windows_relative_and_absolute_paths(tmp_path):
    write_png(tmp_path / "data" / "imgs" / "a.png", 10)
    write_png(tmp_path / "data" / "imgs" / "sub" / "b.png", 20)
    elsewhere = write_png(tmp_path / "elsewhere" / "c.png", 30)
    (tmp_path / "data" / "labels.csv").write_text(
        "file,class\n"
        "imgs\\a.png,shirt\n"
        "imgs\\sub\\b.png,dress\n"
        f"{elsewhere},dress\n"
        "imgs\\missing.png,shirt\n"
        ",shirt\n"
        "imgs\\a.png,dress\n"
    )
    summary = run(tmp_path / "data" / "labels.csv", tmp_path / "out", image_size=16, val_fraction=0, test_fraction=0)
    assert summary["importer"] == "table" and summary["splits"] == {"train": 3}
    paths = {r["path"]: r["label"] for r in read_csv(tmp_path / "out" / "train.csv")}
    assert paths == {str(tmp_path / "data/imgs/a.png"): "shirt", str(tmp_path / "data/imgs/sub/b.png"): "dress",
                     str(elsewhere): "dress"}
    reasons = [p["reason"] for p in json.loads((tmp_path / "out" / "report.json").read_text())["problems"]]
    assert any("empty 'file'" in r for r in reasons) and "file not found" in reasons
    assert any("listed twice with labels 'shirt' and 'dress'" in r for r in reasons)


def test_table_root_and_paths_written_on_another_machine(tmp_path):
    # Like fashion-product-small: 'data/images\\1.jpg' in a table that sits next to images/.
    for i in range(4):
        write_png(tmp_path / "set" / "images" / f"{i}.png", 40 * i)
    rows = "".join(f"data/images\\{i}.png,{'top' if i % 2 else 'shoe'}\n" for i in range(4))
    (tmp_path / "set" / "t.csv").write_text("image_url,category\n" + rows)
    summary = run(tmp_path / "set" / "t.csv", tmp_path / "out", image_size=16, val_fraction=0, test_fraction=0)
    assert summary["splits"] == {"train": 4} and summary["problems"] == 0

    (tmp_path / "other.csv").write_text("img,label\n0.png,shoe\n1.png,top\n")  # root= for bare names
    summary = run(tmp_path / "other.csv", tmp_path / "out2", image_size=16, val_fraction=0, test_fraction=0,
                  importer="table", image_col="img", root=str(tmp_path / "set" / "images"))
    assert summary["splits"] == {"train": 2}
    with pytest.raises(DataError, match="no column 'nope'.*columns: img, label"):
        run(tmp_path / "other.csv", tmp_path / "out3", importer="table", label_col="nope")


def test_parquet_with_split_column(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    paths, labels, splits = [], [], []
    for i in range(12):
        paths.append(str(write_png(tmp_path / "img" / f"{i}.png", 20 * i)))
        labels.append(["pants", "skirt"][i % 2])
        splits.append(["train", "train", "Validation", "test"][i % 4])
    pq.write_table(pa.table({"path": paths, "label": labels, "split": splits}), tmp_path / "t.parquet")
    summary = run(tmp_path / "t.parquet", tmp_path / "out", image_size=16)
    assert summary["splits"] == {"train": 6, "val": 3, "test": 3}


# --- named importers ---------------------------------------------------------------------------------

def test_synthetic_importer_draws_the_same_images_every_time(tmp_path):
    summary = run("synthetic", tmp_path / "a", image_size=32, per_class=5, size=48)
    assert summary["importer"] == "synthetic-clothing"
    assert summary["classes"] == ["t-shirt", "longsleeve", "pants", "shorts", "dress", "skirt"]
    assert sum(summary["splits"].values()) == 30 and summary["problems"] == 0
    run("synthetic", tmp_path / "b", image_size=32, per_class=5, size=48)
    a = sorted((tmp_path / "a" / "images").rglob("*.jpg"))
    b = sorted((tmp_path / "b" / "images").rglob("*.jpg"))
    assert len(a) == 30 and [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert read_image(a[0]).shape == (48, 48, 3)
    assert json.loads((tmp_path / "a" / "dataset.json").read_text())["source"] == "synthetic"


def _idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_idx_files_become_pngs(tmp_path):
    src = tmp_path / "fmnist"
    src.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 10)):
        _idx(src / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        _idx(src / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    summary = run(src, tmp_path / "out", image_size=28, val_fraction=0.25)
    assert summary["importer"] == "fashion-mnist"
    assert summary["splits"] == {"train": 30, "val": 10, "test": 10}
    assert summary["classes"][0] == "t-shirt-top" and len(summary["classes"]) == 10
    ds = PreparedDataset.open(tmp_path / "out")
    path, label = ds.samples("test")[3]
    assert path.startswith(str(tmp_path / "out" / "images")) and label == 3
    (src / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x01" + struct.pack(">I", 10) + b"\0" * 4))
    with pytest.raises(DataError, match="truncated"):
        run(src, tmp_path / "out", image_size=28)


def test_clothing_dataset_full_layout_drops_non_labels(tmp_path):
    src = tmp_path / "clothing"
    labels = ["T-Shirt", "Pants", "Not sure", "Skip", "T-Shirt", "Pants"]
    for i in range(len(labels)):
        write_png(src / "images" / f"id{i}.png", 30 * i)
        (src / "images" / f"id{i}.png").rename(src / "images" / f"id{i}.jpg")  # decoded by content
    (src / "images.csv").write_text("image,sender_id,label,kids\n" + "".join(
        f"id{i},1,{label},False\n" for i, label in enumerate(labels)))
    summary = run(src, tmp_path / "out", image_size=16, val_fraction=0, test_fraction=0)
    assert summary["importer"] == "clothing-dataset" and summary["classes"] == ["Pants", "T-Shirt"]
    assert summary["splits"] == {"train": 4} and summary["problems"] == 2
    missing = tmp_path / "absent"
    with pytest.raises(DataError, match="does not exist.*let 'clothing-dataset' fetch it there: --arg download=true"):
        run(missing, tmp_path / "out2", importer="clothing-dataset")


class _DotsPlugin:
    """A third-party importer: writes its own images (so it takes `out`) and claims '.dots' files."""

    __name__ = "dots-plugin"

    @staticmethod
    @hookimpl
    def register_datasets(register):
        def dots(source, out, count=2):
            samples = []
            for label in ("one", "two"):
                for i in range(count):
                    samples.append((str(write_png(Path(out) / "images" / f"{label}{i}.png", 50 * i)), label, "train"))
            return Imported(["one", "two"], samples)

        register("dots", dots, detect=lambda source: 20 if str(source).endswith(".dots") else 0)


def test_plugin_importer_is_detected_and_gets_out(tmp_path):
    with plugins.plugin_registered(_DotsPlugin(), name="dots-plugin"):
        (tmp_path / "my.dots").write_text("")
        summary = run(tmp_path / "my.dots", tmp_path / "out", image_size=8, count=3, val_fraction=0, test_fraction=0)
        assert summary["importer"] == "dots" and summary["splits"] == {"train": 6}
        with pytest.raises(RecipeError, match="unknown argument"):
            run(tmp_path / "my.dots", tmp_path / "out", colour="red")


def test_importer_detection(tmp_path):
    make_image_folder(tmp_path / "folder", per_class=1, size=8)
    (tmp_path / "t.csv").write_text("image,label\n")
    assert pick_importer(str(tmp_path / "folder"), None)[0] == "folder"
    assert pick_importer(str(tmp_path / "t.csv"), None)[0] == "table"
    assert pick_importer("synthetic", None)[0] == "synthetic-clothing"
    with pytest.raises(DataError, match="does not exist"):
        pick_importer(str(tmp_path / "nothing"), None)


@pytest.mark.parametrize("args", [
    ["--recipe", "multitask_efficientnet_lite0_fashion-product-small"],  # the recipe names an importer
    ["--recipe", "report001_unet_miou_cpu"],
    ["--importer", "folder"],
    [],
])
def test_a_source_that_does_not_exist_is_named_with_how_to_pass_one(tmp_path, monkeypatch, args):
    from click.testing import CliRunner

    from fashioncli.cli import cli

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["prepare", *args, "no/such/folder", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == (
        f"Error: source 'no/such/folder' does not exist (relative to '{tmp_path}'); give the dataset's folder, "
        "table or archive as SOURCE: fashion prepare SOURCE OUT, or fashion prepare --recipe NAME SOURCE")
    assert not (tmp_path / "out").exists()


# --- the prepared directory ------------------------------------------------------------------------

def test_open_refuses_a_folder_that_is_not_prepared(tmp_path):
    with pytest.raises(DataError, match="not a prepared dataset.*fashion prepare"):
        PreparedDataset.open(tmp_path)


def test_out_must_be_prepare_s_own_folder(tmp_path):
    src = make_image_folder(tmp_path / "src", per_class=2, size=8)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.docx").write_text("x")
    with pytest.raises(DataError, match="already holds files prepare did not write"):
        run(src, tmp_path / "busy")
    with pytest.raises(DataError, match="inside the source folder"):
        run(src, src / "prepared")
    run(src, tmp_path / "out", image_size=8, val_fraction=0, test_fraction=0)
    run(src, tmp_path / "out", image_size=8, val_fraction=0.5, test_fraction=0)  # re-prepare in place
    ds = PreparedDataset.open(tmp_path / "out")
    assert ds.splits == ["train", "val"] and list((tmp_path / "out" / "cache").iterdir())[0].name == "8"
    with pytest.raises(DataError, match="no 'test' split"):
        ds.samples("test")


# --- downloads ------------------------------------------------------------------------------------

def test_download_resumes_checks_and_fails_fast_offline(tmp_path):
    import hashlib

    payload = bytes(range(256)) * 64
    with file_server({"/file.bin": payload}) as server:
        url = f"{server.url}/file.bin"
        dest = tmp_path / "file.bin"
        (tmp_path / "file.bin.part").write_bytes(payload[:1000])
        download(url, dest, sha256=hashlib.sha256(payload).hexdigest(), progress=False)
        assert dest.read_bytes() == payload and server.ranges[-1] == "bytes=1000-"
        with pytest.raises(DataError, match="checksum mismatch"):
            download(url, tmp_path / "other.bin", md5="0" * 32, progress=False)
        assert not (tmp_path / "other.bin.part").exists() and not (tmp_path / "other.bin").exists()
        server.shutdown()  # still listening, never answering: the timeout must end the wait
        started = time.monotonic()
        with pytest.raises(DataError, match="cannot download.*timed out"):
            download(url, tmp_path / "silent.bin", md5="0" * 32, timeout=0.5, progress=False)
        assert time.monotonic() - started < 5
    with pytest.raises(DataError, match="cannot download.*refused"):  # offline: fails at once
        download(url, tmp_path / "offline.bin", md5="0" * 32, progress=False)


# --- real data ------------------------------------------------------------------------------------

def test_real_clothing_small(tmp_path):
    src = shared_dataset("clothing-small")
    summary = run(src, tmp_path / "cs", image_size=32)
    assert summary["splits"] == {"train": 3068, "val": 341, "test": 372}
    assert len(summary["classes"]) == 10 and summary["problems"] == 0
    ds = PreparedDataset.open(tmp_path / "cs")
    assert ds.cache("val").shape == (341, 32, 32, 3) and ds.labels("test").shape == (372,)


def test_real_product_table_with_windows_paths(tmp_path):
    src = shared_dataset("fashion-product-small") / "products.parquet"
    summary = run(src, tmp_path / "fp", image_size=16, label_col="category", image_col="image_url",
                  classes=["Sporting Goods", "Home"])
    assert summary["problems"] == 0 and sum(summary["splits"].values()) == 26
