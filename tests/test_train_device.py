"""GPU readiness, checked on the CPU: a training step does not wait for the device, augmentation can
run on whole batches where the model is, and the CUDA defaults (bf16, channels_last) resolve per device."""
import pytest
import torch
from helpers import recipe_file

from fashioncli import train as training
from fashioncli.data.loaders import MASK_FILL, BatchAugment, build_augment
from fashioncli.recipe import load_recipe

# What reads a tensor's value on the host: on a GPU each waits for the device's queue to drain.
READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")


class CountedLoader:
    """A loader that says which step the trainer is in (``state["step"]``; "end" after the last)."""

    def __init__(self, loader, state):
        self.loader, self.state, self.generator = loader, state, loader.generator

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for step, batch in enumerate(self.loader, start=1):
            self.state["step"] = step
            yield batch
        self.state["step"] = "end"


def trainer_for(tiny_prepared, tmp_path, **overrides):
    spec = recipe_file(tmp_path, tiny_prepared, optimizer__name="sgd", **overrides)
    recipe = load_recipe(str(spec))
    return training.Trainer(recipe, tmp_path / "run", progress=False)


def test_a_training_step_reads_nothing_from_the_device(tiny_prepared, tmp_path, monkeypatch):
    """With data.gpu_augment, so one Trainer also shows augmentation moved from the loader to the batch."""
    monkeypatch.setattr(training, "READ_EVERY", 2)
    trainer = trainer_for(tiny_prepared, tmp_path, data__gpu_augment=True)
    dataset = trainer.train_set.dataset if hasattr(trainer.train_set, "dataset") else trainer.train_set
    assert dataset.transform is None and trainer.batch_augment.transform is not None
    state, reads, augmented = {"step": None}, [], []
    trainer.train_loader = CountedLoader(trainer.train_loader, state)
    batch_augment = trainer.batch_augment

    def augment(x, y):  # its random draws read small CPU tensors, which a GPU step does not wait for
        step, state["step"] = state["step"], None
        augmented.append(x.device)
        try:
            return batch_augment(x, y)
        finally:
            state["step"] = step

    trainer.batch_augment = augment
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            if state["step"] is not None:
                reads.append(state["step"])
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    row = trainer.train_epoch()
    steps = len(trainer.train_loader)
    assert steps == 4  # 36 images in batches of 8, the partial last batch dropped
    assert set(reads) <= {2, 4, "end"} and 2 in reads, reads  # every READ_EVERY steps, not every step
    assert row["train_loss"] > 0 and 0 <= row["train_accuracy"] <= 1
    assert augmented == [trainer.device] * steps  # each batch augmented where the model runs


def test_batch_augment_draws_per_image_and_keeps_targets_aligned():
    torch.manual_seed(0)
    n = 8
    # Image i is a gradient plus 20*i, so which crop it got shows, and its level says whose it is.
    ramp = torch.arange(24).repeat(24, 1)
    images = torch.stack([(ramp + 20 * i).expand(3, 24, 24) for i in range(n)]).to(torch.uint8)
    labels = torch.arange(n)
    x, y = BatchAugment(build_augment(16, {"hflip": True, "scale": [0.3, 1.0]}))(images, labels)
    assert x.shape == (n, 3, 16, 16) and x.dtype == torch.uint8 and torch.equal(y, labels)
    shifted = x.float() - 20 * torch.arange(n).view(n, 1, 1, 1)
    assert len({tuple(s.flatten().tolist()) for s in shifted}) == n  # each image drew its own crop

    augment = build_augment(16, {"hflip": True, "scale": [0.3, 1.0], "rotate": 30})
    masks = torch.arange(n).view(n, 1, 1).expand(n, 24, 24).long()  # mask i is class i everywhere
    levels = (100 + 10 * torch.arange(n)).view(n, 1, 1, 1).expand(n, 3, 24, 24).to(torch.uint8)
    x, m = BatchAugment(augment, masks=True)(levels, masks)
    assert x.shape == (n, 3, 16, 16) and m.shape == (n, 16, 16) and m.dtype == torch.long
    for i in range(n):
        labelled = m[i] != MASK_FILL  # rotation brings in unlabelled corners
        assert labelled.any() and (m[i][labelled] == i).all()
        assert (x[i][:, labelled] == 100 + 10 * i).all()  # the image under the mask is image i


@pytest.mark.parametrize("bf16, want", [(True, torch.bfloat16), (False, torch.float16)])
def test_amp_defaults_to_bf16_on_cuda_and_off_on_cpu(monkeypatch, bf16, want):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    recipe = load_recipe("quickstart")
    assert recipe["train"]["amp"] == "auto" and recipe["train"]["channels_last"] is True
    assert recipe["data"]["gpu_augment"] is False  # augmentation in the loader's workers unless asked
    assert training.amp_dtype("auto", torch.device("cuda")) is want
    assert training.amp_dtype("auto", torch.device("cpu")) is None
    assert training.amp_dtype(True, torch.device("cpu")) is torch.bfloat16
    assert training.amp_dtype(False, torch.device("cuda")) is None
