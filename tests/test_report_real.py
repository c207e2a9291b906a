"""report.html of an eval run on each real dataset in ../shared/datasets, opened in a real Chromium.

Each dataset is cut to a few images per class or split (links in a temporary folder; nothing is
copied), prepared at 64 px, trained one epoch by its bundled recipe with a tiny backbone in place
of the recipe's, and evaluated; the three reports then open in headless Chromium, which must load
every picture. Skipped when a dataset, Playwright or Chromium is absent.
"""
import json

from click.testing import CliRunner

from conftest import shared_dataset
from fashioncli.cli import cli
from test_report import open_in_chromium, read_page

# One short epoch at 64 px, on any machine.
FAST = ["--set", "train.epochs=1", "--set", "data.image_size=64", "--set", "data.num_workers=0",
        "--set", "train.channels_last=false", "--set", "train.amp=false"]


def link(source, target):
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source)


def clothing_subset(source, out, per_split={"train": 6, "validation": 2, "test": 4}):
    for split, count in per_split.items():
        for folder in sorted((source / split).iterdir()):
            for image in sorted(folder.iterdir())[:count]:
                link(image, out / split / folder.name / image.name)
    return out


def product_subset(source, out, rows=240):
    """Every 180th product of the parquet table (all master categories), the images folder linked."""
    import pyarrow.parquet as pq

    table = pq.read_table(source / "products.parquet")
    out.mkdir(parents=True)
    pq.write_table(table.take(list(range(0, len(table), len(table) // rows))[:rows]), out / "products.parquet")
    link(source / "images", out / "images")
    return out


def seg_subset(source, out, per_split={"train": 10, "test": 6}):
    """Images with index masks; prepare carves validation out of train (valid/ repeats test images)."""
    for name in ("class_dict.csv", "evaluated_classes.txt", "evaluated_classes_all.txt"):
        link(source / name, out / name)
    for split, count in per_split.items():
        for mask in sorted((source / split / "labels").glob("*.png"))[:count]:
            image = next((source / split / "images").glob(f"{mask.stem}.*"))
            link(mask, out / split / "labels" / mask.name)
            link(image, out / split / "images" / image.name)
    return out


CASES = {
    "clothing-small": (clothing_subset, "efficientnet_lite0_finetune_clothing-small",
                       ["--set", "model.args.backbone=test_resnet", "--set", "model.args.pretrained=false"]),
    "fashion-product-small": (product_subset, "multitask_efficientnet_lite0_fashion-product-small",
                              ["--set", "model.args.backbone=test_resnet", "--set", "model.args.pretrained=false",
                               "--set", "data.batch_size=32"]),
    "imat-fashion-seg": (seg_subset, "report001_unet_ce_cpu",
                         ["--set", "model.args.encoder=test_efficientnet", "--set", "model.args.pretrained=false",
                          "--set", "model.args.decoder_channels=[16,8,8,8,8]", "--set", "data.batch_size=4"]),
}


def test_real_dataset_reports_open_in_chromium(tmp_path):
    sources = {name: shared_dataset(name) for name in CASES}
    runner = CliRunner()

    def ok(*args):
        result = runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    pages = []
    for name, (subset, recipe, model) in CASES.items():
        source = subset(sources[name], tmp_path / "src" / name)
        data = tmp_path / "data" / name
        ok("prepare", source, data, "--image-size", "64")
        ok("train", recipe, "-q", "--set", f"data.root={data}", "--set", f"output.dir={tmp_path / 'runs'}",
           "--set", f"output.name={name}", *FAST, *model)
        summary = json.loads(ok("eval", tmp_path / "runs" / name))
        assert "report.html" in summary["files"]
        page, text = read_page(tmp_path / "runs" / name / "eval-test" / "report.html")
        assert page.images and page.tables >= 2
        pages.append(tmp_path / "runs" / name / "eval-test" / "report.html")
    # the segmentation page compares with report 001's figures, which the recipe carries (fg_bg_miou 0.8791)
    assert "eval.reference" in pages[2].read_text() and "0.879" in pages[2].read_text()
    for path, (images, broken, tables) in zip(pages, open_in_chromium(pages)):
        assert images > 0 and broken == 0 and tables >= 2, path
