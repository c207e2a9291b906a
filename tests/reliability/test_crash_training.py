"""SIGKILL a real `fashion train` at any moment: --resume continues from the last checkpoint and,
in deterministic mode on CPU, ends with exactly the weights of a run that was never interrupted."""
import json
import random

import pytest
import torch
from helpers import fashion, finish, kill_when, make_image_folder, recipe_file

from fashioncli.checkpoint import load_checkpoint
from fashioncli.prepare import prepare

EPOCHS = 4


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Large enough that an epoch lasts a moment (a kill lands inside one), small enough for CI."""
    base = tmp_path_factory.mktemp("crash-train")
    src = make_image_folder(base / "src", per_class=40, size=32, splits=["train", "val"])
    prepare(str(src), str(base / "prepared"), image_size=32, progress=False)
    return base / "prepared"


def weights(run):
    return load_checkpoint(run / "checkpoints" / "last.pt")[0]["model"]


def saved_epoch(run):
    """The epoch of last.json (small, replaced atomically: cheap to poll); 0 before there is one."""
    path = run / "checkpoints" / "last.json"
    return json.loads(path.read_text())["epoch"] if path.exists() else 0


def train_spec(tmp_path, dataset, workers):
    return recipe_file(tmp_path, dataset, train__deterministic=True, train__epochs=EPOCHS, train__seed=3,
                       data__num_workers=workers)


# With a loader worker the same kills take as long again: that variant runs with -m slow, to keep
# the default suite within its 15 minutes on 2 cores.
@pytest.mark.parametrize("workers", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_killed_runs_resume_to_the_uninterrupted_weights(dataset, tmp_path, workers, tally):
    spec = train_spec(tmp_path, dataset, workers)
    straight = fashion("train", spec, "-q", "--set", "output.name=straight")
    finish(straight)
    run = tmp_path / "runs" / "tiny"
    last = run / "checkpoints" / "last.pt"
    rng = random.Random(workers)

    kills = []
    if workers == 0:  # before the first checkpoint: --resume starts the run over in its folder
        kills.append(kill_when(fashion("train", spec, "-q"), (run / "recipe.yaml").is_file))
        assert not last.exists()
    # Mid-epoch, after the first checkpoint (then again after a later one when resumed).
    first = fashion("train", run / "recipe.yaml", "-q", "--resume") if kills else fashion("train", spec, "-q")
    kills.append(kill_when(first, last.is_file, delay=rng.uniform(0.02, 0.08)))
    epoch = load_checkpoint(last)[0]["epoch"]
    assert 1 <= epoch < EPOCHS
    resumed = fashion("train", run / "recipe.yaml", "-q", "--resume")
    kills.append(kill_when(resumed, lambda: saved_epoch(run) > epoch, delay=rng.uniform(0.02, 0.08)))
    finish(fashion("train", run / "recipe.yaml", "-q", "--resume"))
    tally.injected(len(kills))
    tally.sent_signal(len(kills))
    assert all(kills), "a kill came after the run had finished: it tested nothing"

    a, b = weights(run), weights(tmp_path / "runs" / "straight")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    epochs = [row.split(",")[0] for row in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert tally.count_lost(EPOCHS - len(set(epochs))) == 0 and epochs == [str(e) for e in range(1, EPOCHS + 1)]
    assert not list((run / "checkpoints").glob(".*.tmp"))  # what the killed writes left is cleaned up
