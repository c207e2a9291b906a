"""Issue 13 on small generated tables: splits for every kind of head, grouped and de-duplicated
splits, the report's kinds of problems, and importers that describe their arguments."""
import csv
import json
import shutil
from collections import Counter

import cv2
import numpy as np
import pytest

from fashioncli.data.splits import assign_splits
from fashioncli.errors import RecipeError
from fashioncli.prepare import prepare


def _images(folder, n, size=12, seed=0):
    """n distinct small PNGs (smooth blobs: a perceptual hash sees them as pictures), named 0.png ... -> their names."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        blobs = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{i}.png"), cv2.resize(blobs, (size, size), interpolation=cv2.INTER_CUBIC))
    return [f"{i}.png" for i in range(n)]


def _table(path, header, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def _rows(out, split):
    path = out / f"{split}.csv"
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def _prepare(table, out, **kw):
    return prepare(str(table), str(out), image_size=8, progress=False, workers=1, **kw)


def test_a_multi_label_table_gets_three_splits_with_every_label_in_each():
    rng = np.random.default_rng(1)
    tags = [f"t{i}" for i in range(12)]
    # Most tags rare (3 to 8 positives in 300 rows), a few common: what real tag tables look like.
    samples = []
    for i in range(300):
        on = [t for k, t in enumerate(tags) if rng.random() < (0.3 if k < 3 else 0.012 + 0.002 * k)]
        samples.append((f"{i}.png", ("|".join(on) or "|",), None, None))

    def strata(label):
        return [t for t in label[0].split("|") if t]

    splits = assign_splits(samples, 0.1, 0.1, seed=0, stratum=lambda label: label[0], strata=strata)
    assert set(splits) == {"train", "val", "test"}
    total = Counter(t for _, label, _, _ in samples for t in strata(label))
    rare = [t for t, n in total.items() if n >= 3]
    assert min(total[t] for t in rare) <= 5  # the table does have rare tags
    for split, rows in splits.items():
        seen = Counter(t for _, label, _ in rows for t in strata(label))
        assert all(seen[t] > 0 for t in rare), (split, {t: seen[t] for t in rare})
    assert 0.7 < len(splits["train"]) / 300 < 0.9
    assert splits == assign_splits(samples, 0.1, 0.1, seed=0, stratum=lambda label: label[0], strata=strata)


def test_prepare_splits_a_multi_label_only_table(tmp_path):
    names = _images(tmp_path / "src", 60)
    tags = ["a|b", "a", "b|c", "c", "a|c"]
    table = _table(tmp_path / "src" / "tags.csv", ["image", "tags"], [[n, tags[i % 5]] for i, n in enumerate(names)])
    summary = _prepare(table, tmp_path / "out", heads={"tags": {"type": "multilabel"}})
    assert set(summary["splits"]) == {"train", "val", "test"}
    for split in ("val", "test"):
        seen = {t for r in _rows(tmp_path / "out", split) for t in r["tags"].split("|") if t}
        assert seen == {"a", "b", "c"}


def test_a_grouped_split_keeps_every_group_whole(tmp_path):
    names = _images(tmp_path / "src", 80)
    rows = [[n, "red" if i % 2 else "blue", f"product{i // 4}"] for i, n in enumerate(names)]
    table = _table(tmp_path / "src" / "t.csv", ["image", "label", "product"], rows)
    summary = _prepare(table, tmp_path / "out", group_col="product")
    assert set(summary["splits"]) == {"train", "val", "test"}
    group = {r[0]: r[2] for r in rows}
    where = {}
    for split in summary["splits"]:
        for r in _rows(tmp_path / "out", split):
            where.setdefault(group[r["path"].rsplit("/", 1)[1]], set()).add(split)
    assert len(where) == 20 and all(len(splits) == 1 for splits in where.values())


def test_identical_files_are_drawn_into_one_split_and_conflicts_are_listed(tmp_path):
    names = _images(tmp_path / "src", 40)
    for i in range(6):  # six byte-identical copies, one with another label
        shutil.copy(tmp_path / "src" / "0.png", tmp_path / "src" / f"copy{i}.png")
    rows = [[n, "red" if i % 2 else "blue"] for i, n in enumerate(names)]
    rows += [[f"copy{i}.png", "blue" if i else "red"] for i in range(6)]
    summary = _prepare(_table(tmp_path / "src" / "t.csv", ["image", "label"], rows), tmp_path / "out")
    splits_of_copies = {s for s in summary["splits"] for r in _rows(tmp_path / "out", s)
                        if r["path"].endswith(("/0.png",)) or "/copy" in r["path"]}
    assert len(splits_of_copies) == 1 and summary["duplicates_across_splits"] == 0
    assert summary["conflicting_labels"] == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    labels = {f["label"] for f in report["duplicates"]["conflicting_labels"][0]["files"]}
    assert labels == {"red", "blue"}
    assert "conflicting labels" in (tmp_path / "out" / "report.md").read_text()


def test_near_duplicates_across_splits_are_left_in_one(tmp_path):
    src = tmp_path / "src"
    for split in ("train", "test"):
        _images(src / split / "red", 4, size=64, seed={"train": 0, "test": 1}[split])
    image = cv2.imread(str(src / "train" / "red" / "2.png"))
    cv2.imwrite(str(src / "test" / "red" / "resized.jpg"), cv2.resize(image, (48, 48)), [cv2.IMWRITE_JPEG_QUALITY, 90])
    out = tmp_path / "out"
    plain = prepare(str(src), str(out), image_size=32, val_fraction=0, progress=False, workers=1)
    assert plain["splits"] == {"train": 4, "test": 5}
    near = prepare(str(src), str(out), image_size=32, val_fraction=0, progress=False, workers=1, near_duplicates=True)
    assert near["splits"] == {"train": 3, "test": 5} and near["copies_removed_across_splits"] == 1
    assert all(not r["path"].endswith("train/red/2.png") for r in _rows(out, "train"))


def test_the_report_tells_missing_files_from_labels_and_counts_unlisted_files(tmp_path):
    names = _images(tmp_path / "src", 12)
    rows = [[n, "red"] for n in names[:9]] + [["gone.png", "red"]]
    table = _table(tmp_path / "src" / "t.csv", ["image", "label"], rows)
    summary = _prepare(table, tmp_path / "out", val_fraction=0, test_fraction=0)
    assert summary["problems"] == 1 and summary["files_named_by_no_row"] == 3
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["problem_kinds"] == {"missing file": 1}
    assert report["files_named_by_no_row"]["count"] == 3
    md = (tmp_path / "out" / "report.md").read_text()
    assert "missing file: 1" in md and "3 image files in the source folder are named by no row" in md


def test_unknown_importer_args_list_the_known_ones_and_plugins_name_describes_them(tmp_path):
    from click.testing import CliRunner

    from fashioncli.cli import cli

    table = _table(tmp_path / "t.csv", ["image", "label"], [["a.png", "x"]])
    with pytest.raises(RecipeError, match="--arg group_colum: unknown argument .*did you mean 'group_col'.*takes: "
                                          "image_col, label_col.*group_col; see `fashion plugins table`"):
        _prepare(table, tmp_path / "out", group_colum="x")
    result = CliRunner().invoke(cli, ["plugins", "table"])
    assert result.exit_code == 0, result.output
    assert "group_col" in result.output and "one split" in result.output and "default: None" in result.output
    result = CliRunner().invoke(cli, ["plugins", "tabel"])
    assert result.exit_code != 0 and "did you mean 'table'" in result.output
