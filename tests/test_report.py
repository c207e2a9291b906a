"""report.html from `fashion eval` of each task on tiny synthetic data (no browser), what training
adds to look at (train_batch.jpg, lr.csv, curves.png), and the reports opened in a real Chromium."""
import base64
import csv
import re
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from helpers import tiny_checkpoint

from fashioncli.cli import cli
from fashioncli.evaluate import evaluate
from fashioncli.prepare import prepare
from fashioncli.recipe import load_recipe
from fashioncli.report import Report, render
from fashioncli.train import train


class Page(HTMLParser):
    """What a report holds: its pictures, tables, section titles and the text of its cells."""

    def __init__(self, text):
        super().__init__()
        self.images, self.tables, self.titles, self.cells, self.tags = [], 0, [], [], set()
        self._in = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "table":
            self.tables += 1
        elif tag in ("h2", "th", "td"):
            self._in = tag
            if tag != "h2":
                self.cells.append("")

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in == "h2":
            self.titles.append(data.strip())
        elif self._in in ("th", "td"):
            self.cells[-1] += data


def read_page(path):
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    # Self-contained: nothing is fetched, nothing runs; every picture decodes.
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text) and "<script" not in text and "<link" not in text
    for src in page.images:
        kind, data = re.fullmatch(r"data:image/(png|jpeg);base64,(.+)", src).groups()
        picture = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None and picture.size
    return page, text


def decoded(src):
    data = base64.b64decode(src.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


# -- classification --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def classification(tiny_prepared, tmp_path_factory):
    """eval of an untrained tiny model (its mistakes are certain) on the 3-class tiny dataset."""
    base = tmp_path_factory.mktemp("cls")
    summary = evaluate(tiny_checkpoint(base, data_root=tiny_prepared), out=base / "eval", num_workers=0)
    return base / "eval", summary


def test_classification_report_shows_metrics_tables_matrix_and_gallery(classification):
    out, summary = classification
    assert "report.html" in summary["files"]
    page, text = read_page(out / "report.html")
    assert page.titles[:4] == ["Summary", "Per class", "Confusion matrix", "Gallery"]
    assert f"{summary['metrics']['accuracy']:.3f}" in text
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for name in ("red", "green", "blue"):
        n = sum(r["true"] == name for r in rows)
        assert any(c.split() == [name, f"(n={n})"] for c in page.cells)  # a matrix row with its count
    matrix = np.loadtxt(out / "confusion_matrix.csv", delimiter=",", skiprows=1, usecols=(1, 2, 3), dtype=int)
    body = text[text.index('class="cm"'):]
    counts = [int(c) for c in re.findall(r'<td title="[^"]*"[^>]*>(\d+)</td>', body)]
    assert counts == matrix.ravel().tolist()  # every count shown, in order
    # Gallery: a class's most confident mistakes, highest first, as predictions.csv scores them.
    for name in ("red", "green", "blue"):
        wrong = sorted((float(r["score"]) for r in rows if r["true"] == name and r["predicted"] != name), reverse=True)
        block = text[text.index(f"<h4>{name}  ("):]
        block = block[:block.index("least confident correct")]
        shown = re.findall(r">confidence (\d\.\d\d)<", block)
        assert shown == [f"{s:.2f}" for s in wrong[:4]]
    assert len(page.images) >= 4 and all(decoded(s).shape[0] > 0 for s in page.images)


def test_report_escapes_names_and_orders_a_matrix_by_parent():
    report = Report("t <b>")
    section = report.section("<script>x</script>")
    classes = ["<img src=x>", "b", "c", "d"]
    section.matrix(classes, np.arange(16).reshape(4, 4), parent_of={"<img src=x>": "P2", "b": "P1", "c": "P2", "d": "P1"})
    html = render(report)
    assert "<script>x" not in html and "<img src=x>" not in html and "&lt;img src=x&gt;" in html
    page = Page(html)
    rows = [c for c in page.cells if "(n=" in c]
    # grouped by parent, in the order parents first appear: P2 (a, c) then P1 (b, d)
    assert [r.split(" (n=")[0] for r in rows] == ["<img src=x>", "c", "b", "d"]
    assert rows[0].endswith("(n=6)") and rows[2].endswith("(n=22)")
    assert "P1" in page.cells and "P2" in page.cells


# -- multi-task -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def multitask(tmp_path_factory):
    from test_multitask import _recipe, _table

    base = tmp_path_factory.mktemp("mtr")
    prepare(str(_table(base / "src")), str(base / "prepared"), image_size=32,
            heads={"family": None, "colour": {"parent": "family"}, "tags": {"type": "multilabel"}},
            derive={"description": {"sep": " - ", "into": ["family", "colour"]}})
    spec = _recipe(base, base / "prepared", train={"epochs": 2, "channels_last": False})
    train(load_recipe(spec), spec=spec, progress=False)
    run = base / "runs" / "mt"
    return run, evaluate(run, num_workers=0)


def test_multitask_report_has_a_section_per_head(multitask):
    run, summary = multitask
    page, text = read_page(run / "eval-test" / "report.html")
    assert page.titles == ["Summary", "Heads", "Head: family", "Head: colour", "Head: tags"]
    # the tags head (multi-label): AP bars and a per-label table; categorical heads: matrix and gallery
    tags = text[text.index("<h2>Head: tags"):]
    assert "average precision per label" in tags and "<img" in tags
    colour = text[text.index("<h2>Head: colour"):text.index("<h2>Head: tags")]
    assert 'class="cm"' in colour and "most confident mistakes" in colour
    # the colour matrix is grouped by the family head's classes: red is warm, green and blue cool
    assert re.search(r'class="group"[^>]*>(cool|warm)<', colour)
    support = summary["metrics"]["heads"]["colour"]["support"]
    counts = [int(n.replace(",", "")) for n in re.findall(r"\(n=([\d,]+)\)", colour)]
    assert sum(counts) == support  # rows without a colour label are left out of that head only


def test_training_writes_a_batch_preview_lr_per_step_and_curves(multitask):
    run, _ = multitask
    preview = cv2.imread(str(run / "train_batch.jpg"))
    assert preview is not None and preview.shape[0] > 200
    with open(run / "lr.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # 12 training images in one full batch of 8 per epoch (the rest dropped), 2 epochs
    assert [(r["step"], float(r["epoch"])) for r in rows] == [("1", 0.0), ("2", 1.0)]
    assert float(rows[0]["lr"]) == pytest.approx(3e-3)
    assert cv2.imread(str(run / "curves.png")) is not None


def test_curve_panels_follow_the_task_and_metric_families(tmp_path, monkeypatch):
    from fashioncli import plots

    (tmp_path / "metrics.csv").write_text(
        "epoch,lr,train_loss,val_loss,val_accuracy,train_accuracy,val_f1_macro,val_miou,train_img_per_s,"
        "val_colour_accuracy,val_mean_accuracy\n1,0.1,1,1,0.5,0.4,0.3,0.2,300,0.5,0.5\n2,0.05,0.5,0.6,0.6,0.5,0.4,0.3,310,0.6,0.6\n")
    (tmp_path / "lr.csv").write_text("step,epoch,lr\n1,0,0.1\n2,0.5,0.08\n3,1,0.05\n4,1.5,0.02\n")
    drawn = {}

    def spy(fig, path, fmt="png"):
        drawn["panels"] = [ax.get_title() for ax in fig.axes if ax.get_title()]
        drawn["colours"] = [line.get_color() for ax in fig.axes for line in ax.get_lines()]
        drawn["lr"] = [list(line.get_ydata()) for ax in fig.axes if "per step" in ax.get_title() for line in ax.get_lines()]
        plots.plt.close(fig)

    monkeypatch.setattr(plots, "save_figure", spy)
    plots.plot_curves(tmp_path / "metrics.csv", tmp_path / "c.png", tmp_path / "lr.csv",
                      panel_of=lambda c: "head: colour" if "_colour_" in c else None)
    assert drawn["panels"] == ["loss", "accuracy", "precision / recall / F1", "IoU", "head: colour",
                               "throughput", "learning rate (per step)"]
    assert drawn["lr"] == [[0.1, 0.08, 0.05, 0.02]]  # per step, not the per-epoch column
    assert len(set(map(str, drawn["colours"]))) == len(drawn["colours"])  # every line its own colour


# -- segmentation -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def segmentation(tmp_path_factory):
    """Masks at 80 px, a model at 64 px: the report's sample rows must be at the masks' 80 px."""
    base = tmp_path_factory.mktemp("segr")
    runner = CliRunner()
    result = runner.invoke(cli, ["prepare", "synthetic-segmentation", str(base / "data"), "--image-size", "64",
                                 "--arg", "count=20", "--arg", "size=80"])
    assert result.exit_code == 0, result.output
    recipe = {
        "task": "segmentation", "data": {"root": str(base / "data"), "image_size": 64, "batch_size": 8,
                                         "num_workers": 0, "augment": {"hflip": True, "scale": None}},
        "model": {"name": "unet", "args": {"encoder": "test_efficientnet", "decoder_channels": [16, 8, 8, 8, 8]}},
        "loss": {"name": "dice_ce"}, "optimizer": {"name": "adam", "lr": 3e-3},
        "train": {"epochs": 1, "channels_last": False},
        "eval": {"reference": {"miou": 0.5, "fg_bg_miou": 0.9}},
        "output": {"dir": str(base / "runs"), "name": "seg"},
    }
    (base / "seg.yaml").write_text(yaml.safe_dump(recipe))
    result = runner.invoke(cli, ["train", str(base / "seg.yaml"), "-q"])
    assert result.exit_code == 0, result.output
    run = base / "runs" / "seg"
    return run, evaluate(run, num_workers=0)


def test_segmentation_report_shows_samples_at_their_size_iou_bars_and_reference(segmentation):
    run, summary = segmentation
    page, text = read_page(run / "eval-test" / "report.html")
    assert page.titles == ["Summary", "IoU per class", "Per class", "Confusion matrix", "Samples"]
    samples = text[text.index("<h2>Samples"):]
    pictures = re.findall(r'<img src="([^"]+)"', samples)
    assert len(pictures) == 3 * min(6, summary["num_samples"])  # image, truth, prediction per row
    assert all(decoded(p).shape[:2] == (80, 80) for p in pictures)
    ious = re.findall(r"IoU (\d\.\d{3}|n/a)", samples)
    assert len(ious) == len(pictures) // 3
    # the reference figures beside the IoU bars, measured against the recipe's eval.reference
    figures = text[text.index("<h2>IoU per class"):text.index("<h2>Per class")]
    assert "eval.reference" in figures and "<img" in figures
    assert f"{summary['metrics']['miou']:.3f}" in figures and "0.500" in figures and "0.900" in figures
    preview = cv2.imread(str(run / "train_batch.jpg"))
    assert preview is not None and preview.shape[0] > 200


# -- in a real browser --------------------------------------------------------------------------------

def open_in_chromium(paths):
    """Open each report in headless Chromium -> [(images, broken images, tables)]; skips without one."""
    import shutil

    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need `pip install playwright`")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("no Chromium installed (apt-get install chromium): report.html not opened in a browser")
    found = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            for path in paths:
                page.goto(path.resolve().as_uri(), wait_until="load")
                found.append(page.evaluate("""() => [
                    document.images.length,
                    [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length,
                    document.querySelectorAll('table').length]"""))
        finally:
            browser.close()
    return found


def test_reports_open_in_chromium(classification, multitask, segmentation):
    paths = [classification[0] / "report.html", multitask[0] / "eval-test" / "report.html",
             segmentation[0] / "eval-test" / "report.html"]
    for path, (images, broken, tables) in zip(paths, open_in_chromium(paths)):
        assert images > 0 and broken == 0 and tables >= 2, path
