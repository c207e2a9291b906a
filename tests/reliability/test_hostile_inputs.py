"""Hostile image files through prepare, train, eval and predict: each is decoded (converted,
rotated) or reported and skipped; none crashes a run and none disappears without a line."""
import csv
import errno
import json
import os
import pathlib
import shutil

import pytest
from helpers import UNREADABLE, make_image_folder, recipe_file, write_hostile_images

from fashioncli.data.dataset import PreparedDataset
from fashioncli.errors import DataError
from fashioncli.evaluate import evaluate
from fashioncli.io import ENCODING
from fashioncli.predict import predict
from fashioncli.prepare import prepare
from fashioncli.recipe import load_recipe
from fashioncli.train import train


@pytest.fixture(scope="module")
def unreadable_for_root():
    """chmod 000 does not stop root (CI containers run as root): there, reads of UNREADABLE fail
    with the PermissionError a real unreadable file gives, through the one function that reads bytes."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        yield
        return
    from fashioncli import userfiles

    real = userfiles._read

    def read(path, limit):
        if os.path.basename(path) == UNREADABLE:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path, limit)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(userfiles, "_read", read)
        yield


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, unreadable_for_root):
    """Class folders with every hostile file in 'red', prepared and trained on for one epoch."""
    base = tmp_path_factory.mktemp("hostile")
    src = make_image_folder(base / "src", per_class=8, size=32)
    outcomes = write_hostile_images(src / "red")
    summary = prepare(str(src), str(base / "prepared"), image_size=32, progress=False)
    spec = recipe_file(base, base / "prepared", train__epochs=1)
    run = train(load_recipe(spec), spec=spec, progress=False)
    yield {"src": src, "prepared": base / "prepared", "run": pathlib.Path(run["run_dir"]), "outcomes": outcomes,
           "prepare": summary, "train": run}
    os.chmod(src / "red" / UNREADABLE, 0o600)  # so that pytest can delete its temporary folder


def names(paths):
    return {os.path.basename(p) for p in paths}


def split_by_outcome(h, outcome):
    return {n for n, o in h["outcomes"].items() if o == outcome}


def test_prepare_keeps_the_decodable_and_reports_the_rest(hostile, tally):
    tally.tried(len(hostile["outcomes"]))
    ds = PreparedDataset.open(hostile["prepared"])
    kept = names(p for s in ds.splits for p in ds.paths(s))
    report = json.loads((hostile["prepared"] / "report.json").read_text(encoding="utf-8"))
    problems = {os.path.basename(p["path"]): p["reason"] for p in report["problems"]}
    assert split_by_outcome(hostile, "ok") <= kept
    assert set(problems) == split_by_outcome(hostile, "bad")
    tally.count_lost(len(set(hostile["outcomes"]) - kept - set(problems)))
    assert set(hostile["outcomes"]) <= kept | set(problems)  # every file: kept or a line in the report
    assert problems["empty.jpg"].startswith("empty file") and problems["bomb.png"].startswith("too large")
    assert "Permission denied" in problems[UNREADABLE] and "symbolic links" in problems["loop.jpg"]
    assert "truncated or corrupt JPEG" in problems["truncated.jpg"]
    assert "not a readable image" in problems["text.jpg"]
    # The EXIF-rotated 24x16 photo is stored upright: 16 high, 24 wide.
    shapes = {}
    for split in ds.splits:
        meta = json.loads((hostile["prepared"] / "cache" / "32" / f"{split}.json").read_text())
        shapes.update(zip([os.path.basename(p) for p in ds.paths(split)], meta["shapes"]))
    assert shapes["exif_rotated.jpg"] == [16, 24] and shapes["one_pixel.png"] == [1, 1]
    assert (hostile["prepared"] / "report.md").read_text(**ENCODING).count("`") >= 2 * len(problems)


def test_training_runs_on_the_converted_images(hostile, tally):
    tally.tried(len(split_by_outcome(hostile, "ok")))
    assert hostile["train"]["epochs"] == 1 and (hostile["run"] / "checkpoints" / "last.pt").is_file()


def test_eval_on_class_folders_lists_every_unreadable_file(hostile, tmp_path, tally):
    tally.tried(len(hostile["outcomes"]))
    summary = evaluate(hostile["run"], data=hostile["src"], out=tmp_path, num_workers=0)
    with open(tmp_path / "predictions.csv", newline="", **ENCODING) as f:
        scored = names(r["path"] for r in csv.DictReader(f) if r["path"].startswith(str(hostile["src"] / "red")))
    unreadable = names(u["path"] for u in summary["unreadable"])
    assert scored == split_by_outcome(hostile, "ok") | {f"red_{i}.png" for i in range(8)}
    assert unreadable == split_by_outcome(hostile, "bad")
    tally.count_lost(len(set(hostile["outcomes"]) - scored - unreadable))


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_predict_gives_every_file_a_row_and_the_bad_ones_an_error(hostile, tmp_path, fmt, tally):
    tally.tried(len(hostile["outcomes"]) + 2)
    folder = hostile["src"] / "red"
    (tmp_path / "folder.jpg").mkdir()  # named like an image, but a folder
    listing = tmp_path / "list.txt"  # a .txt list may name anything: each line gets a row
    listing.write_text(f"{tmp_path / 'folder.jpg'}\n{tmp_path / 'gone.jpg'}\n", encoding="utf-8")
    out = tmp_path / f"p.{fmt}"
    summary = predict(hostile["run"], [folder, listing], out, num_workers=0)
    if fmt == "csv":
        with open(out, newline="", **ENCODING) as f:
            rows = list(csv.DictReader(f))
    else:
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]  # valid UTF-8
    errors = {os.path.basename(r["path"]): r["error"] for r in rows if r["error"]}
    labelled = {os.path.basename(r["path"]) for r in rows if r["label"]}
    assert summary["rows"] == len(rows) == len(hostile["outcomes"]) + 8 + 2
    assert set(errors) == split_by_outcome(hostile, "bad") | {"folder.jpg", "gone.jpg"}
    assert errors["folder.jpg"] == "is a folder, not a file" and errors["gone.jpg"] == "file not found"
    assert split_by_outcome(hostile, "ok") <= labelled
    latin1 = next(r["path"] for r in rows if "latin1" in r["path"])
    assert pathlib.Path(latin1).is_file()  # the path written is the one that opens the file
    tally.count_lost(len(set(hostile["outcomes"]) - labelled - set(errors)))


def test_a_file_gone_after_prepare_stops_a_new_cache_size_with_its_name(hostile, tmp_path, tally):
    tally.injected()
    data = tmp_path / "prepared"
    shutil.copytree(hostile["prepared"], data, symlinks=True)
    meta = json.loads((data / "dataset.json").read_text())
    first = PreparedDataset.open(data).paths("train")[0]
    moved = tmp_path / "moved.png"
    shutil.move(first, moved)
    try:
        spec = recipe_file(tmp_path, data, train__epochs=1, data__image_size=24)
        with pytest.raises(DataError, match=f"1 of {meta['splits']['train']} images .*{os.path.basename(first)}"):
            train(load_recipe(spec), spec=spec, progress=False)
    finally:
        shutil.move(moved, first)


# --- labels that are not in the class list ---------------------------------------------------

def test_eval_refuses_classes_the_model_does_not_know(hostile, tmp_path, tally):
    tally.tried(2)
    src = make_image_folder(tmp_path / "src", classes=("red", "purple"), per_class=4, size=16)
    for name, classes in (("both", None), ("red", ["red"])):
        prepare(str(src), str(tmp_path / name), image_size=16, val_fraction=0, test_fraction=0.5,
                classes=classes, progress=False)
    with pytest.raises(DataError, match="classes the model does not know: purple"):
        evaluate(hostile["run"], data=tmp_path / "both", num_workers=0)
    # A label edited into a split file that dataset.json does not list: the file and line are named.
    test_csv = tmp_path / "red" / "test.csv"
    test_csv.write_text(test_csv.read_text() + f"{src / 'red' / 'red_0.png'},yellow\n")
    with pytest.raises(DataError, match=r"test.csv:4: .*label from dataset.json.*yellow"):
        evaluate(hostile["run"], data=tmp_path / "red", num_workers=0)


def test_table_rows_of_classes_left_out_are_counted_in_the_report(tmp_path, tally):
    src = make_image_folder(tmp_path / "src", classes=("red", "green", "blue"), per_class=3, size=16)
    rows = [(str(p), p.parent.name) for p in sorted(src.rglob("*.png"))] + [("nowhere.png", "")]
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "label"), *rows])
    tally.tried(len(rows))
    summary = prepare(str(tmp_path / "labels.csv"), str(tmp_path / "out"), image_size=16, classes=["red"],
                      val_fraction=0, test_fraction=0, progress=False)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert summary["splits"] == {"train": 3} and summary["problems"] == 1  # the row without a label
    assert report["notes"] == ["6 images of classes not asked for were left out: blue (3), green (3)"]
