"""Class names, file names and labels that would run as spreadsheet formulas or break Markdown
tables: every CSV escapes them (and reads them back exactly), report.md tables escape | and line
breaks, and prepare refuses or warns about labels that cannot or should not be told apart."""
import csv
import json
import re
import unicodedata

import cv2
import numpy as np
import pytest
import torch
from helpers import make_image_folder

from fashioncli import create_model
from fashioncli.checkpoint import save_checkpoint
from fashioncli.data.dataset import PreparedDataset
from fashioncli.errors import DataError
from fashioncli.evaluate import evaluate
from fashioncli.io import ENCODING, CsvReader, csv_cell, csv_text
from fashioncli.predict import predict
from fashioncli.prepare import prepare

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CLASSES = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)"]
FILES = ["=cmd.jpg", "-x.jpg", "+1.png", "@SUM(A1).png"]


def checkpoint(path, classes):
    torch.manual_seed(0)
    model = create_model("timm", backbone="test_resnet", num_classes=len(classes))
    meta = {"task": "classification", "classes": list(classes), "epoch": 1,
            "model": {"name": "timm", "args": {"backbone": "test_resnet", "pretrained": False}},
            "preprocessing": {"image_size": 16, "mean": [0.5] * 3, "std": [0.25] * 3, "resize": "squash"}}
    save_checkpoint(path, model, meta)
    return path


def write_image(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, (20, 20, 3), dtype=np.uint8))


def raw_cells(path):
    with open(path, newline="", **ENCODING) as f:
        return [cell for row in csv.reader(f) for cell in row]


def assert_no_formula(path):
    formulas = [c for c in raw_cells(path) if c.startswith(FORMULA_START)]
    assert not formulas, f"{path.name}: {formulas[:5]}"


def read_rows(path):
    with open(path, newline="", **ENCODING) as f:
        return list(CsvReader(f))


def test_csv_cells_escape_formulas_and_read_back_exactly(tally):
    texts = [*CLASSES, "\tx", "\rx", "'", "'=x", "''-x", "plain", "", "'quoted'"]
    tally.tried(len(texts))
    assert [csv_text(csv_cell(t)) for t in texts] == texts
    assert not any(csv_cell(t).startswith(FORMULA_START) for t in texts)
    assert csv_cell(-0.5) == -0.5  # a negative number is a number, not a formula


def test_predictions_csv_has_no_formula_cell(tmp_path, monkeypatch, tally):
    model = checkpoint(tmp_path / "model.pt", CLASSES)
    monkeypatch.chdir(tmp_path)  # relative inputs: the path cells start with the file names
    for i, name in enumerate(FILES):
        write_image(tmp_path / name, seed=i)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    summary = predict(model, [*FILES, "broken.jpg"], "preds.csv", topk=4, num_workers=0)
    tally.tried(len(CLASSES) + len(FILES))
    assert summary["rows"] == len(FILES) + 1
    assert_no_formula(tmp_path / "preds.csv")
    rows = read_rows(tmp_path / "preds.csv")
    assert [r["path"] for r in rows] == [*FILES, "broken.jpg"]
    assert {r["label"] for r in rows if not r["error"]} <= set(CLASSES)
    assert all(sorted(json.loads(r["top_labels"])) == sorted(CLASSES) for r in rows if not r["error"])


def test_resume_skips_paths_it_escaped(tmp_path, monkeypatch, tally):
    model = checkpoint(tmp_path / "model.pt", CLASSES)
    monkeypatch.chdir(tmp_path)
    for i, name in enumerate(FILES):
        write_image(tmp_path / name, seed=i)
    predict(model, FILES[:2], "preds.csv", num_workers=0)
    assert "'=cmd.jpg" in raw_cells(tmp_path / "preds.csv")
    summary = predict(model, FILES, "preds.csv", resume=True, num_workers=0)
    tally.tried(len(FILES))
    assert (summary["skipped"], summary["rows"]) == (2, 2)
    paths = [r["path"] for r in read_rows(tmp_path / "preds.csv")]
    assert tally.count_lost(len(set(FILES) - set(paths)) + len(paths) - len(set(paths))) == 0
    assert sorted(paths) == sorted(FILES)


def test_prepare_and_eval_csvs_have_no_formula_cell_and_train_reads_them(tmp_path, tally):
    # Folder names cannot hold '/': formulas without one.
    classes = ["=cmd", "+1", "-2", "@SUM(A1)"]
    src = make_image_folder(tmp_path / "src", classes=classes, per_class=3, size=16)
    prepare(str(src), str(tmp_path / "data"), image_size=16, val_fraction=0, test_fraction=0, progress=False)
    tally.tried(len(classes))
    assert_no_formula(tmp_path / "data" / "train.csv")
    data = PreparedDataset.open(tmp_path / "data")
    assert sorted(data.classes[i] for _, i in data.samples("train")) == sorted(classes * 3)

    model = checkpoint(tmp_path / "model.pt", data.classes)
    evaluate(model, data=str(src), out=str(tmp_path / "eval"), num_workers=0)
    for name in ("per_class.csv", "confusion_matrix.csv", "predictions.csv"):
        assert_no_formula(tmp_path / "eval" / name)
    assert {r["true"] for r in read_rows(tmp_path / "eval" / "predictions.csv")} == set(classes)


def table_cells(line):
    return re.split(r"(?<!\\)\|", line.strip())[1:-1]


def test_report_table_escapes_pipes_in_class_names(tmp_path, tally):
    src = make_image_folder(tmp_path / "src", classes=["a|b", "c"], per_class=2, size=16)
    prepare(str(src), str(tmp_path / "data"), image_size=16, val_fraction=0, test_fraction=0, progress=False)
    tally.tried()
    report = (tmp_path / "data" / "report.md").read_text(encoding="utf-8").splitlines()
    start = report.index("| class | train | total |")
    table = report[start:report.index("", start)]
    assert {len(table_cells(line)) for line in table} == {3}
    assert "| a\\|b | 2 | 2 |" in table


def write_table(tmp_path, labels):
    """A CSV table source with one image per label."""
    lines = ["path,label"]
    for i, label in enumerate(labels):
        write_image(tmp_path / "img" / f"{i}.png", seed=i)
        lines.append(f'img/{i}.png,"{label}"')
    (tmp_path / "table.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path / "table.csv"


def test_prepare_warns_about_labels_that_differ_by_case_or_normalisation(tmp_path, tally):
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    table = write_table(tmp_path, ["Dress", "dress", nfc, nfd, "shirt", "shirt"])
    summary = prepare(str(table), str(tmp_path / "data"), image_size=16, val_fraction=0, test_fraction=0,
                      progress=False)
    tally.tried(4)
    assert len(summary["classes"]) == 5  # warned, not merged
    warnings = summary["warnings"]
    assert len(warnings) == 2
    assert "'Dress'" in warnings[0] and "'dress'" in warnings[0]
    assert ascii(nfc) in warnings[1] and ascii(nfd) in warnings[1]
    report = (tmp_path / "data" / "report.md").read_text(encoding="utf-8")
    assert all(w in report for w in warnings)


@pytest.mark.parametrize("label, reason", [("top\nwear", "line break"), ("tops/shirts", "path separator"),
                                           ("tops\\shirts", "path separator")])
def test_prepare_refuses_labels_with_line_breaks_or_path_separators(tmp_path, label, reason, tally):
    table = write_table(tmp_path, ["shirt", label])
    with pytest.raises(DataError, match=reason) as exc:
        prepare(str(table), str(tmp_path / "data"), image_size=16, progress=False)
    tally.tried()
    message = str(exc.value)
    assert repr(label) in message and str(table) in message and "1.png" in message
    assert not (tmp_path / "data" / "dataset.json").exists()
