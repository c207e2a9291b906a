"""Outputs never overwrite inputs: predict's -o, eval's --out, export's -o and prepare's OUT are
refused, with one line and before anything is written, when they resolve (after symlinks) to an
input, the model, or an image inside an input folder."""
import json
import shutil

import pytest
import torch
from click.testing import CliRunner
from helpers import make_image_folder, snapshot, tiny_checkpoint, write_images

from fashioncli.checkpoint import save_checkpoint
from fashioncli.cli import cli


def refused(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1, result.output
    return result.output


@pytest.fixture
def world(tmp_path):
    """A checkpoint in a run folder, a folder of photos, one loose photo and a .txt list of photos."""
    ckpt = tiny_checkpoint(tmp_path)
    photos = tmp_path / "photos"
    write_images(photos, 3)
    loose = write_images(tmp_path / "loose", 1)[0]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(str(p) for p in sorted(photos.iterdir())) + "\n")
    (tmp_path / "link.csv").symlink_to(listing)
    return tmp_path, ckpt, photos, loose, listing


def test_predict_refuses_every_output_that_is_an_input(world, tally):
    root, ckpt, photos, loose, listing = world
    run = ckpt.parent.parent
    cases = [  # (model, inputs, -o, extra args)
        (run, [listing], listing, ["--format", "csv"]),              # the list it reads
        (run, [listing], photos / "img_0.png", ["--format", "csv"]),  # an entry of the list
        (run, [loose], loose, ["--format", "csv"]),                   # the photo itself
        (run, [photos], photos / "new.jpg", ["--format", "csv"]),     # a new image among the inputs
        (run, [photos], ckpt, ["--format", "csv"]),                   # the checkpoint
        (run, [photos], ckpt.with_suffix(".json"), ["--format", "jsonl"]),  # its metadata
        (run, [photos], run / "recipe.yaml", ["--format", "csv"]),
        (ckpt, [photos], ckpt, ["--format", "csv"]),
        (run, [listing], root / "link.csv", []),                      # a link to the list
        (run, [str(photos / "*.png")], photos / "img_1.png", ["--format", "csv"]),  # a glob's match
    ]
    (run / "recipe.yaml").write_text("{}\n")
    before = snapshot(root)
    for model, inputs, out, extra in cases:
        message = refused("predict", model, *inputs, "-o", out, *extra)
        assert "-o" in message and "Traceback" not in message
        tally.tried()
        tally.refused_overwrite()
    assert snapshot(root) == before
    assert tally.count_lost(sum(a != b for a, b in zip(before.values(), snapshot(root).values()))) == 0


def test_predict_may_write_a_table_beside_the_photos_and_never_reads_its_own_files(world):
    root, ckpt, photos, loose, listing = world
    out = photos / "preds.csv"
    for _ in range(2):
        result = CliRunner().invoke(cli, ["predict", str(ckpt), str(photos), "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["rows"] == 3


@pytest.fixture
def segmentation_checkpoint(tmp_path):
    from fashioncli import plugins

    torch.manual_seed(0)
    args = {"encoder": "test_efficientnet", "decoder_channels": [16, 8, 8, 8, 8]}
    model = plugins.get("models").create("unet", num_classes=2, **args).eval()
    meta = {"task": "segmentation", "classes": ["background", "top"], "palette": [[0, 0, 0], [200, 30, 30]],
            "ignore_index": 255, "model": {"name": "unet", "args": args, "injected": {"num_classes": 2}},
            "preprocessing": {"image_size": 32, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                              "resize": "squash", "layout": "RGB"}}
    ckpt = tmp_path / "seg" / "checkpoints" / "best.pt"
    save_checkpoint(ckpt, model, meta)
    return ckpt


def test_segmentation_predict_inside_its_input_folder_never_predicts_its_own_masks(segmentation_checkpoint, tmp_path):
    photos = tmp_path / "shop"
    write_images(photos, 2)
    out = photos / "preds.csv"
    for _ in range(3):  # each rerun would add the previous run's masks and overlays as inputs
        result = CliRunner().invoke(cli, ["predict", str(segmentation_checkpoint), str(photos), "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["rows"] == 2
    assert sorted(p.name for p in (photos / "preds_masks").iterdir()) == ["img_0.png", "img_1.png"]


def test_eval_and_export_refuse_outputs_on_their_inputs(tiny_prepared, tmp_path, tally):
    ckpt = tiny_checkpoint(tmp_path, data_root=tiny_prepared)
    run = ckpt.parent.parent
    (run / "recipe.yaml").write_text("{}\n")
    photos = tmp_path / "photos"
    write_images(photos, 2)
    before = snapshot(tmp_path) | {f"data/{k}": v for k, v in snapshot(tiny_prepared).items()}
    refused("eval", run, "--out", tiny_prepared)                       # into the dataset it scores
    refused("eval", run, "--out", tiny_prepared / "eval")
    refused("eval", run, "--out", ckpt.parent)                         # among the checkpoints
    refused("export", run, "-o", ckpt)                                 # over the checkpoint
    refused("export", run, "-o", run / "recipe.yaml")
    refused("export", ckpt, "-o", ckpt.with_suffix(".json"))
    refused("export", run, "--check-images", photos, "-o", photos / "model.png")
    tally.tried(7)
    tally.refused_overwrite(7)
    after = snapshot(tmp_path) | {f"data/{k}": v for k, v in snapshot(tiny_prepared).items()}
    assert after == before


def test_prepare_refuses_out_inside_its_source_and_a_source_inside_out(tmp_path, tally):
    src = make_image_folder(tmp_path / "src", per_class=3, size=24)
    (tmp_path / "alias").symlink_to(src)
    table_home = tmp_path / "prepared"
    table_home.mkdir()
    shutil.copy(next(src.rglob("*.png")), table_home / "a.png")
    (table_home / "train.csv").write_text("path,label\na.png,red\n")
    before = snapshot(tmp_path)
    refused("prepare", src, tmp_path / "alias" / "out")  # through a link into the source
    refused("prepare", src, src)
    refused("prepare", table_home / "train.csv", table_home)  # prepare rewrites OUT/train.csv
    tally.tried(3)
    tally.refused_overwrite(3)
    assert snapshot(tmp_path) == before
