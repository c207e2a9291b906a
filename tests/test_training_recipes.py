"""timm's training recipes as recipe keys: optimizers (no decay on norms and biases, lamb, lion, layer
decay), EMA of the weights, MixUp/CutMix, RandAugment/TrivialAugment, label smoothing on soft
targets, gradient clipping and accumulation."""
import pytest
import torch
from helpers import recipe_file, stop_then_resume

from fashioncli.checkpoint import load_checkpoint, load_model
from fashioncli.errors import RecipeError
from fashioncli.recipe import DEFAULTS, load_recipe
from fashioncli.train import Trainer, train


def optimizer_cfg(**keys):
    return {**DEFAULTS["optimizer"], **keys}


def tiny_timm():
    import timm

    return timm.create_model("test_efficientnet", num_classes=3)


# -- optimizers -------------------------------------------------------------------

def test_no_weight_decay_on_norms_and_biases():
    from fashioncli.optim import build_optimizer

    model = tiny_timm()
    opt = build_optimizer(model, optimizer_cfg(weight_decay=0.05))
    decay = {id(p) for g in opt.param_groups if g["weight_decay"] == 0.05 for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decay) == (p.ndim > 1), name  # conv/linear weights decay; biases, norms do not


@pytest.mark.parametrize("name, cls", [("lamb", "Lamb"), ("lion", "Lion"), ("adamw", "AdamW")])
def test_timm_optimizers_by_name(name, cls):
    from fashioncli.optim import build_optimizer

    opt = build_optimizer(tiny_timm(), optimizer_cfg(name=name, lr=0.01))
    assert type(opt).__name__ == cls and all(g["lr"] == 0.01 for g in opt.param_groups)


def test_sgd_keeps_plain_momentum_unless_nesterov_is_asked():
    from fashioncli.optim import build_optimizer

    assert not build_optimizer(tiny_timm(), optimizer_cfg(name="sgd")).defaults["nesterov"]
    assert build_optimizer(tiny_timm(), optimizer_cfg(name="sgd", nesterov=True)).defaults["nesterov"]


def test_unknown_optimizer_lists_the_known_ones(tmp_path, tiny_prepared):
    spec = recipe_file(tmp_path, tiny_prepared, optimizer__name="lamd")
    with pytest.raises(RecipeError, match=r"optimizer.name: 'lamd' is not an optimizer timm knows.*known: .*lamb, .*lion, "):
        load_recipe(spec)


def test_layer_decay_gives_deeper_layers_smaller_lrs_through_the_schedule():
    from fashioncli.optim import build_optimizer, build_scheduler

    model = tiny_timm()
    opt = build_optimizer(model, optimizer_cfg(lr=0.1, layer_decay=0.5))
    head = {id(p) for p in model.get_classifier().parameters()}
    stem = {id(model.conv_stem.weight)}
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert max(lr_of[i] for i in head) == pytest.approx(0.1)
    assert lr_of[next(iter(stem))] < 0.1 * 0.5 ** 3  # the stem is several groups below the head
    # torch's schedules keep each group's own lr: the ratios survive warm-up and decay.
    sched = build_scheduler(opt, {**DEFAULTS["scheduler"], "warmup_epochs": 1}, 2, 4, 0.1)
    ratios = [g["lr"] / opt.param_groups[-1]["lr"] for g in opt.param_groups]
    for _ in range(5):
        opt.step()
        sched.step()
    assert [g["lr"] / opt.param_groups[-1]["lr"] for g in opt.param_groups] == pytest.approx(ratios)


def test_layer_decay_needs_a_timm_model():
    from fashioncli.optim import build_optimizer

    with pytest.raises(RecipeError, match="optimizer.layer_decay"):
        build_optimizer(torch.nn.Linear(2, 2), optimizer_cfg(layer_decay=0.7))


# -- recipe keys ------------------------------------------------------------------

def test_switch_keys_take_true_or_a_mapping(tmp_path, tiny_prepared):
    spec = recipe_file(tmp_path, tiny_prepared, train__ema=True, data__augment={"randaugment": True})
    recipe = load_recipe(spec)
    assert recipe["train"]["ema"] == {"decay": 0.9998, "warmup": True}
    assert recipe["data"]["augment"]["randaugment"] == {"num_ops": 2, "magnitude": 9}
    assert load_recipe(spec, ["train.ema={decay: 0.99}"])["train"]["ema"] == {"decay": 0.99, "warmup": True}
    with pytest.raises(RecipeError, match=r"train.ema.decai: unknown key.*did you mean 'decay'"):
        load_recipe(spec, ["train.ema={decai: 0.99}"])
    with pytest.raises(RecipeError, match=r"train.accumulate: must be greater than 0"):
        load_recipe(spec, ["train.accumulate=0"])


# -- augmentation -------------------------------------------------------------------

@pytest.mark.parametrize("key, value, op", [("trivialaugment", True, "TrivialAugmentWide"),
                                            ("randaugment", {"num_ops": 3, "magnitude": 5}, "RandAugment")])
def test_auto_augment_policies_change_the_image(key, value, op):
    from fashioncli.data.loaders import build_augment

    t = build_augment(32, {"hflip": False, key: value})
    assert [type(o).__name__ for o in t.transforms] == [op]
    if key == "randaugment":
        assert (t.transforms[0].num_ops, t.transforms[0].magnitude) == (3, 5)
    torch.manual_seed(0)
    x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    assert any(not torch.equal(t(x), x) for _ in range(10))


def test_auto_augment_on_masks_is_a_recipe_error():
    from fashioncli.data.loaders import check_augment
    from fashioncli.tasks.classification.task import ClassificationTask
    from fashioncli.tasks.segmentation.task import SegmentationTask

    with pytest.raises(RecipeError, match="data.augment.trivialaugment: .*segmentation model's masks"):
        check_augment(SegmentationTask, {"trivialaugment": True})
    check_augment(ClassificationTask, {"trivialaugment": True, "randaugment": {"num_ops": 2, "magnitude": 9}})
    check_augment(SegmentationTask, {"trivialaugment": False, "randaugment": None})


class _Task:
    name, mixes = "classification", True

    @staticmethod
    def model_args():
        return {"num_classes": 4}


def test_mixup_cutmix_give_soft_targets_and_blended_images():
    from fashioncli.data.mixing import build_mix

    ce = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    mix = build_mix({"mixup": 0.4, "cutmix": 1.0, "mix_prob": 1.0}, _Task, ce, "cross_entropy", "cpu")
    torch.manual_seed(0)
    x, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    mixed, soft = mix(x.clone(), y)
    assert soft.shape == (6, 4) and torch.allclose(soft.sum(1), torch.ones(6))
    assert (soft.max(1).values < 1).all() and not torch.equal(mixed, x)
    assert torch.isfinite(ce(torch.randn(6, 4), soft))  # the loss takes them, label smoothing too
    assert build_mix({"mixup": 0, "cutmix": 0}, _Task, ce, "cross_entropy", "cpu") is None
    never = build_mix({"mixup": 0.4, "mix_prob": 0.0}, _Task, ce, "cross_entropy", "cpu")
    assert never(x, y)[1] is y


def test_mixing_is_refused_where_it_does_not_apply():
    from fashion_plugins.losses.classification import focal

    from fashioncli.data.mixing import build_mix
    from fashioncli.tasks.segmentation.task import SegmentationTask

    with pytest.raises(RecipeError, match="data.augment.cutmix: a segmentation model cannot"):
        build_mix({"cutmix": 1.0}, SegmentationTask, None, "cross_entropy", "cpu")
    with pytest.raises(RecipeError, match="loss.name: 'focal' does not take the soft targets data.augment.mixup"):
        build_mix({"mixup": 0.2}, _Task, focal(), "focal", "cpu")


def test_label_smoothing_applies_to_soft_targets():
    """cross_entropy's label_smoothing (loss.args) also smooths the targets MixUp makes."""
    from fashion_plugins.losses.classification import cross_entropy

    logits, soft = torch.randn(2, 4), torch.tensor([[0.7, 0.3, 0, 0], [0, 0, 1.0, 0]])
    smoothed = soft * 0.8 + 0.2 / 4
    want = -(smoothed * logits.log_softmax(1)).sum(1).mean()
    assert cross_entropy(label_smoothing=0.2)(logits, soft).item() == pytest.approx(want.item(), rel=1e-5)


# -- the training loop ---------------------------------------------------------------

def test_accumulation_steps_the_optimizer_and_schedule_once_per_group(tiny_prepared, tmp_path, monkeypatch):
    import fashioncli.train as training

    clipped = []
    monkeypatch.setattr(training, "dispatch_clip_grad", lambda params, value, mode: clipped.append((value, mode)))
    spec = recipe_file(tmp_path, tiny_prepared, train__epochs=1, train__accumulate=2, train__grad_clip=0.5,
                       train__grad_clip_mode="value", data__batch_size=4)
    trainer = Trainer(load_recipe(spec), tmp_path / "run", progress=False)
    batches = len(trainer.train_loader)
    assert batches % 2 == 1  # 36 images in batches of 4: the epoch's last step has one micro-batch
    trainer.train_epoch()
    steps = (batches + 1) // 2
    assert trainer.steps == steps and trainer.scheduler.last_epoch == steps
    assert clipped == [(0.5, "value")] * steps


def test_ema_is_what_validation_scores_and_checkpoints_hold(tiny_prepared, tmp_path):
    spec = recipe_file(tmp_path, tiny_prepared, train__epochs=1, train__ema={"decay": 0.5, "warmup": False},
                       data__augment={"mixup": 0.2, "cutmix": 1.0, "trivialaugment": True},
                       optimizer__name="lamb", optimizer__layer_decay=0.8)
    train(load_recipe(spec), spec=spec, progress=False)
    payload, _ = load_checkpoint(tmp_path / "runs" / "tiny" / "checkpoints" / "last.pt")
    model, _ = load_model(tmp_path / "runs" / "tiny")
    ema, trained = payload["model"], payload["trained_model"]
    assert any(not torch.equal(ema[k], trained[k]) for k in ema if ema[k].is_floating_point())
    assert all(torch.equal(v, ema[k]) for k, v in model.state_dict().items())  # eval/predict/export load the EMA


def test_resume_with_ema_matches_an_uninterrupted_run(tiny_prepared, tmp_path, monkeypatch):
    keys = dict(train__deterministic=True, train__ema={"decay": 0.9}, train__accumulate=2, data__augment={"mixup": 0.4})
    straight = recipe_file(tmp_path, tiny_prepared, output__name="straight", **keys)
    train(load_recipe(straight), spec=straight, progress=False)

    spec = recipe_file(tmp_path, tiny_prepared, **keys)
    run = tmp_path / "runs" / "tiny"
    stop_then_resume(spec, run, monkeypatch)

    a, _ = load_checkpoint(run / "checkpoints" / "last.pt")
    b, _ = load_checkpoint(tmp_path / "runs" / "straight" / "checkpoints" / "last.pt")
    assert a["steps"] == b["steps"] > 0
    for part in ("model", "trained_model"):
        for key in a[part]:
            assert torch.allclose(a[part][key].float(), b[part][key].float(), atol=1e-6), (part, key)
