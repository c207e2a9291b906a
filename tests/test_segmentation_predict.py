"""`fashion predict` and `fashion export` on a segmentation checkpoint: masks at the source size,
overlays, per-class areas, error rows, resume, and exports that give the same masks."""
import csv
import json

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from fashioncli import plugins
from fashioncli.checkpoint import save_checkpoint
from fashioncli.cli import cli
from fashioncli.data.images import read_resized
from fashioncli.data.preprocess import normalize
from fashioncli.tasks.segmentation.export import mask_agreement
from fashioncli.tasks.segmentation.predict import class_areas, resize_mask

CLASSES = ["background", "top", "skirt"]
PALETTE = [[0, 0, 0], [200, 30, 30], [30, 30, 200]]
SIZE = 64
ARGS = {"encoder": "test_efficientnet", "decoder_channels": [16, 8, 8, 8, 8]}
# (folder, name, height, width): odd sizes, portrait and landscape, one stem twice, a PNG
IMAGES = [("a", "look.jpg", 50, 70), ("b", "look.jpg", 70, 50), ("b", "plain.png", 33, 47), ("c", "big.jpg", 130, 90)]


def _model():
    torch.manual_seed(0)
    model = plugins.get("models").create("unet", num_classes=len(CLASSES), **ARGS)
    with torch.no_grad():  # sharper logits: masks with decisive pixels, not near-ties of a random head
        for p in model.segmentation_head.parameters():
            p.mul_(20)
    return model.eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("segpredict")
    meta = {
        "task": "segmentation", "classes": CLASSES, "palette": PALETTE, "ignore_index": 255,
        "class_sets": {"garments": ["top", "skirt"]},
        "model": {"name": "unet", "args": ARGS, "injected": {"num_classes": len(CLASSES)}},
        "preprocessing": {"image_size": SIZE, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                          "resize": "squash", "layout": "RGB"},
    }
    ckpt = root / "run" / "checkpoints" / "best.pt"
    save_checkpoint(ckpt, _model(), meta)
    images = root / "images"
    rng = np.random.default_rng(0)
    for folder, name, h, w in IMAGES:
        (images / folder).mkdir(parents=True, exist_ok=True)
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        image[h // 4:h // 2, w // 3:] = rng.integers(0, 256, 3)  # a flat block: regions, not only noise
        cv2.imwrite(str(images / folder / name), image)
    (images / "c" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return ckpt, images


def run_cli(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def read_rows(path):
    if str(path).endswith(".csv"):
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in open(path)]


def read_mask(path):
    image = Image.open(path)
    assert image.mode == "P"  # a class index per pixel, shown in the classes' colours
    colours = np.array(image.getpalette()).reshape(-1, 3)
    assert colours[:len(PALETTE)].tolist() == PALETTE  # the checkpoint's palette
    return np.asarray(image)


def expected_mask(ckpt, path):
    """The model's argmax at SIZE, resized to the source with PIL's nearest-neighbour (pixel centres)."""
    from fashioncli.checkpoint import load_model

    model, meta = load_model(ckpt)
    x = torch.from_numpy(read_resized(path, SIZE)).permute(2, 0, 1)[None]
    with torch.no_grad():
        small = model(normalize(x, meta["preprocessing"]["mean"], meta["preprocessing"]["std"]))[0].argmax(0)
    w, h = Image.open(path).size
    return np.asarray(Image.fromarray(small.numpy().astype(np.uint8)).resize((w, h), Image.NEAREST))


def test_csv_masks_overlays_and_areas(setup, tmp_path):
    ckpt, images = setup
    out = tmp_path / "preds.csv"
    summary = run_cli("predict", ckpt, images, "-o", out, "--batch-size", 2, "--workers", 1)
    assert summary["rows"] == len(IMAGES) + 1 and summary["errors"] == 1 and summary["classes"] == 3
    rows = read_rows(out)
    assert list(rows[0]) == ["path", "mask", "overlay", "height", "width",
                             "area_background", "area_top", "area_skirt", "error"]
    (bad,) = [r for r in rows if r["error"]]
    assert bad["path"].endswith("broken.jpg") and bad["mask"] == bad["overlay"] == bad["area_top"] == ""
    good = [r for r in rows if not r["error"]]
    assert len(good) == len(IMAGES)
    masks = [r["mask"] for r in good]
    assert len(set(masks)) == len(masks)  # the two look.jpg do not overwrite each other
    assert sorted(p.name for p in (tmp_path / "preds_masks").iterdir()) == sorted(p.rsplit("/", 1)[-1] for p in masks)
    assert not list((tmp_path / "preds_masks").glob("broken*"))
    seen = set()
    for row in good:
        source = Image.open(row["path"])
        mask = read_mask(row["mask"])
        assert mask.shape == (source.height, source.width) == (int(row["height"]), int(row["width"]))
        assert mask.max() < len(CLASSES)
        assert np.array_equal(mask, expected_mask(ckpt, row["path"]))
        areas = [float(row[f"area_{c}"]) for c in CLASSES]
        assert sum(areas) == pytest.approx(1, abs=1e-5)
        assert areas == pytest.approx(np.bincount(mask.ravel(), minlength=3) / mask.size, abs=1e-6)
        overlay = Image.open(row["overlay"])
        assert row["overlay"].endswith(".jpg") and overlay.size == source.size and overlay.mode == "RGB"
        seen.update(np.unique(mask).tolist())
    assert len(seen) > 1  # the masks show more than one class: the checks above test something


def test_jsonl_without_overlays(setup, tmp_path):
    ckpt, images = setup
    out = tmp_path / "preds.jsonl"
    run_cli("predict", ckpt, images / "b", images / "c" / "broken.jpg", "-o", out, "--overlay", "none")
    rows = read_rows(out)
    assert len(rows) == 3 and (tmp_path / "preds_masks").is_dir() and not (tmp_path / "preds_overlays").exists()
    for row in rows:
        assert row["overlay"] is None
        if row["error"]:
            assert row["mask"] is None and row["areas"] == {}
            continue
        mask = read_mask(row["mask"])
        assert [row["height"], row["width"]] == list(mask.shape)
        present = [CLASSES[i] for i in np.unique(mask)]
        assert list(row["areas"]) == present and all(v > 0 for v in row["areas"].values())
        assert sum(row["areas"].values()) == pytest.approx(1, abs=1e-5)


def test_resume_skips_done_rows_and_keeps_names(setup, tmp_path):
    ckpt, images = setup
    out = tmp_path / "preds.csv"
    first = run_cli("predict", ckpt, images / "a", "-o", out)
    assert first["rows"] == 1
    (row,) = read_rows(out)
    assert row["mask"].endswith("/preds_masks/look.png")
    before = (tmp_path / "preds_masks" / "look.png").stat().st_mtime_ns
    second = run_cli("predict", ckpt, images, "-o", out, "--resume")
    assert second["rows"] == len(IMAGES) and second["skipped"] == 1
    rows = read_rows(out)
    assert len(rows) == len(IMAGES) + 1 and rows[0] == row
    assert len({r["path"] for r in rows}) == len(rows)
    # b/look.jpg, predicted only after the resume, gets a name of its own
    (other,) = [r for r in rows if r["path"].endswith("b/look.jpg")]
    assert other["mask"] != row["mask"] and other["mask"].rsplit("/", 1)[-1].startswith("look-")
    assert (tmp_path / "preds_masks" / "look.png").stat().st_mtime_ns == before


def test_masks_and_overlays_go_beside_out_never_into_the_current_folder(setup, tmp_path, monkeypatch):
    ckpt, images = setup
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    run_cli("predict", ckpt, images / "a", "-o", "preds.csv")
    assert sorted(p.name for p in work.iterdir()) == ["preds.csv", "preds_masks", "preds_overlays"]
    (row,) = read_rows(work / "preds.csv")
    assert row["mask"] == "preds_masks/look.png" and row["overlay"] == "preds_overlays/look.jpg"
    # A second -o in the same folder writes masks of its own: the first rows still name theirs.
    run_cli("predict", ckpt, images / "b", "-o", "other.jsonl", "--overlay", "none")
    assert (work / "other_masks").is_dir() and [p.name for p in (work / "preds_masks").iterdir()] == ["look.png"]
    # --save-dir chooses the folder that holds masks/ and overlays/.
    summary = run_cli("predict", ckpt, images / "a", "-o", tmp_path / "out" / "p.csv", "--save-dir", tmp_path / "pics")
    assert summary["masks"] == str(tmp_path / "pics" / "masks")
    assert (tmp_path / "pics" / "masks" / "look.png").is_file() and (tmp_path / "pics" / "overlays" / "look.jpg").is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p.csv"]


def test_hflip_tta_maps_the_flipped_view_back_and_shift_is_refused(setup, tmp_path):
    from fashioncli.checkpoint import load_model

    ckpt, images = setup
    path = images / "a" / "look.jpg"
    run_cli("predict", ckpt, path, "-o", tmp_path / "p.csv", "--tta", "hflip")
    model, meta = load_model(ckpt)
    x = normalize(torch.from_numpy(read_resized(path, SIZE)).permute(2, 0, 1)[None],
                  meta["preprocessing"]["mean"], meta["preprocessing"]["std"])
    with torch.no_grad():  # the two views' probabilities, the flipped one flipped back, averaged
        probs = (model(x).softmax(1) + model(x.flip(-1)).softmax(1).flip(-1)) / 2
    w, h = Image.open(path).size
    want = np.asarray(Image.fromarray(probs[0].argmax(0).numpy().astype(np.uint8)).resize((w, h), Image.NEAREST))
    np.testing.assert_array_equal(read_mask(tmp_path / "p_masks" / "look.png"), want)

    result = CliRunner().invoke(cli, ["predict", str(ckpt), str(images), "-o", str(tmp_path / "s.csv"),
                                      "--tta", "shift=2"])
    assert result.exit_code == 1 and "segmentation takes hflip" in result.output
    assert not (tmp_path / "s.csv").exists() or not read_rows(tmp_path / "s.csv")  # refused before any row


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("torchscript", ".ts")])
def test_export_parity_and_identical_masks(setup, tmp_path, fmt, suffix):
    ckpt, images = setup
    model = tmp_path / f"model{suffix}"
    summary = run_cli("export", ckpt, "--format", fmt, "-o", model, "--check-images", images)
    parity = summary["parity"]
    assert parity["images"] == len(IMAGES) and parity["mask_agreement"] >= 0.999
    assert parity["max_abs_diff"] <= 1e-3 and summary["classes"] == 3
    if fmt == "onnx":
        import onnx

        meta = json.loads({p.key: p.value for p in onnx.load(str(model)).metadata_props}["fashion"])
        assert meta["task"] == "segmentation" and meta["classes"] == CLASSES and meta["palette"] == PALETTE
        assert meta["ignore_index"] == 255 and meta["preprocessing"]["image_size"] == SIZE
        assert meta["output"]["shape"] == ["N", 3, SIZE, SIZE]
    by_engine = {}
    for name, source in (("checkpoint", ckpt), (fmt, model)):
        trust = ["--trust-torchscript"] if name == "torchscript" else []  # our own export: trusted
        result = run_cli("predict", source, images, "-o", tmp_path / name / "preds.jsonl", *trust)
        assert result["engine"] == name
        by_engine[name] = {r["path"]: r for r in read_rows(tmp_path / name / "preds.jsonl")}
    assert by_engine["checkpoint"].keys() == by_engine[fmt].keys()
    for path, row in by_engine["checkpoint"].items():
        other = by_engine[fmt][path]
        assert bool(row["error"]) == bool(other["error"])
        if not row["error"]:
            assert np.array_equal(read_mask(row["mask"]), read_mask(other["mask"]))
            assert row["areas"] == pytest.approx(other["areas"], abs=1e-6)


def test_mask_agreement_tolerates_a_few_flipped_pixels():
    rng = np.random.default_rng(0)
    want = rng.random((2, 3, 40, 50)).astype(np.float32)
    got = want.copy()
    got[0, :, 0, 0] = np.roll(got[0, :, 0, 0], 1)  # 1 pixel of 4000 flips its argmax (a near-tie)
    result = mask_agreement(want, got, atol=1.0)
    assert result["ok"] and result["mask_agreement"] == pytest.approx(1 - 1 / 4000)
    got[:, :, :2] = np.roll(got[:, :, :2], 1, axis=1)  # 2 rows of 40: 5% of the pixels
    assert not mask_agreement(want, got, atol=1.0)["ok"]
    assert not mask_agreement(want, want + 0.01, atol=1e-3)["ok"]  # far apart, though the masks agree


def test_resize_mask_and_areas():
    mask = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    big = resize_mask(mask, 4, 6)
    assert big.shape == (4, 6)
    assert np.array_equal(big, np.kron(mask, np.ones((2, 3), dtype=np.uint8)))
    assert class_areas(big, CLASSES) == {"background": 0.25, "top": 0.5, "skirt": 0.25}
    assert class_areas(np.zeros((3, 3), np.uint8), CLASSES) == {"background": 1.0}


def test_ranked_scores_skip_the_softmax_and_keep_each_pixels_class(setup):
    # predict's masks read only the argmax: the checkpoint engine returns logits (no softmax over the
    # map), a channels_last batch is reduced over its classes-last view, and the classes agree.
    from fashioncli.engines import open_engine
    from fashioncli.tasks.segmentation.predict import top_class

    ckpt, _ = setup
    engine = open_engine(ckpt)
    images = np.random.default_rng(1).integers(0, 256, (3, 3, SIZE, SIZE), dtype=np.uint8)
    probs, logits = engine.run_tta(images, None), engine.run_tta(images, None, ranked=True)
    assert np.allclose(probs.sum(1), 1, atol=1e-5) and not np.allclose(logits.sum(1), 1, atol=1e-2)
    assert np.moveaxis(logits, 1, -1).flags.c_contiguous  # the model's channels_last memory, as served
    assert np.array_equal(top_class(logits), probs.argmax(1))
    assert np.array_equal(top_class(np.ascontiguousarray(logits)), probs.argmax(1))
    assert engine.run_tta(images, {"hflip": True}, ranked=True).sum(1) == pytest.approx(1, abs=1e-5)


def test_segmentation_softmax_of_a_channels_last_map():
    from fashioncli.tasks import get_task

    scores = torch.randn(2, 5, 6, 7)
    activate = get_task("segmentation").activation({})
    out = activate(scores.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(out, scores.softmax(1), atol=1e-6)
    assert torch.allclose(activate(scores), scores.softmax(1))
