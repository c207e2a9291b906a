"""prepare asks the registered tasks which one prepares a source: the built-in kinds as before, and
a plugin's own kind (a regression task: one number per image) without any change to core files."""
import csv
import json

import pytest
from helpers import make_image_folder
from regression_plugin import Regression

from fashioncli import hookimpl, plugins
from fashioncli.data.dataset import PreparedDataset
from fashioncli.data.importing import Imported
from fashioncli.errors import DataError, PluginError
from fashioncli.prepare import prepare


def prices(source):
    """A folder of images, each priced by its file number."""
    from pathlib import Path

    paths = sorted(Path(source).rglob("*.png"))
    values = [str(i) if i % 5 else "n/a" for i in range(len(paths))]
    return Imported(classes=[], samples=list(zip(map(str, paths), values, [None] * len(paths))), kind="regression")


class RegressionPlugin:
    @hookimpl
    def register_tasks(self, register):
        register("regression", Regression)

    @hookimpl
    def register_datasets(self, register):
        register("prices", prices)


def test_a_plugin_task_prepares_its_own_kind(tmp_path):
    src = make_image_folder(tmp_path / "src", per_class=10, size=8)
    with plugins.plugin_registered(RegressionPlugin(), name="regression-plugin"):
        summary = prepare(str(src), str(tmp_path / "out"), importer="prices", image_size=8, progress=False, workers=1)
        data = PreparedDataset.open(tmp_path / "out").require("regression")
    assert summary["task"] == "regression" and summary["target"] == "price"
    assert summary["problems"] == 6 and sum(summary["splits"].values()) == 24
    assert summary["splits"]["val"] >= 2 and summary["splits"]["test"] >= 2  # one stratum, not one per value
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["task"] == "regression" and meta["target"] == "price" and "classes" not in meta
    with open(tmp_path / "out" / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "value"] and all(float(r["value"]) % 5 for r in rows)
    assert data.paths("train") == [r["path"] for r in rows]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["counts"]["train"]["images"] == len(rows)
    assert "value 'n/a' is not a number" in {p["reason"] for p in report["problems"]}


def test_a_kind_no_task_prepares_is_refused(tmp_path):
    src = make_image_folder(tmp_path / "src", per_class=2, size=8)

    class OnlyImporter:
        @hookimpl
        def register_datasets(self, register):
            register("prices", prices)

    with plugins.plugin_registered(OnlyImporter(), name="prices-only"):
        with pytest.raises(PluginError, match="returned a regression dataset that no registered task prepares"):
            prepare(str(src), str(tmp_path / "out"), importer="prices", image_size=8, progress=False, workers=1)


def test_the_built_in_kinds_are_prepared_by_their_tasks(tmp_path):
    from fashioncli.tasks import get_task

    plain = Imported(classes=["a"], samples=[("x.png", "a", None)])
    scores = {name: get_task(name).prepares(plain) for name in ("classification", "prototype", "multitask", "segmentation")}
    assert max(scores, key=scores.get) == "classification" and scores["prototype"] == 0
    assert max((get_task(n).prepares(Imported([], [], heads={"h": {}})), n) for n in scores)[1] == "multitask"
    assert max((get_task(n).prepares(Imported(["bg"], [], masks=[])), n) for n in scores)[1] == "segmentation"


def test_a_dataset_missing_what_its_kind_requires_is_damaged(tmp_path):
    src = make_image_folder(tmp_path / "src", per_class=2, size=8)
    prepare(str(src), str(tmp_path / "out"), image_size=8, progress=False, workers=1)
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    del meta["classes"]
    (tmp_path / "out" / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="is damaged \\(no 'classes'\\)"):
        PreparedDataset.open(tmp_path / "out")
