"""Two commands on one run folder or one output file: the second refuses at once with a one-line
error, the first finishes untouched; a lock left by a SIGKILLed command is taken over."""
import csv
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import cv2
import numpy as np
import pytest
from helpers import fashion, finish, kill_when, make_image_folder, recipe_file, tiny_checkpoint

from fashioncli.locks import Lock
from fashioncli.prepare import prepare

N_IMAGES = 1500


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Enough tiny images that a prediction lasts a moment: a pause or a kill lands inside it."""
    root = tmp_path_factory.mktemp("concurrent-predict") / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        cv2.imwrite(str(root / f"{i}.png"), rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    base = tmp_path_factory.mktemp("concurrent-train")
    src = make_image_folder(base / "src", per_class=8, size=32, splits=["train", "val"])
    prepare(str(src), str(base / "prepared"), image_size=32, progress=False)
    return base / "prepared"


def lines(path):
    return path.read_bytes().count(b"\n") if path.exists() else 0


@contextmanager
def paused(process, ready, timeout=120):
    """SIGSTOP ``process`` once ``ready()`` holds (it keeps what it holds, as a slow command would),
    and SIGCONT it when the block ends -> whether it was still running when stopped."""
    deadline = time.monotonic() + timeout
    while not ready() and process.poll() is None:
        assert time.monotonic() < deadline, "the process never got ready to be paused"
        time.sleep(0.005)
    process.send_signal(signal.SIGSTOP)
    try:
        yield process.poll() is None
    finally:
        process.send_signal(signal.SIGCONT)


def refused(process, holder):
    """The second command's exit: 1, and one line naming the pid of the command holding the path."""
    _, err = process.communicate(timeout=120)
    one_line = len(err.strip().splitlines()) == 1
    return process.returncode == 1 and one_line and f"in use by fashion (pid {holder.pid}" in err


def prediction_rows(out):
    with open(out, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_second_predict_into_one_output_is_refused_and_the_first_completes(images, tmp_path, tally):
    model = tiny_checkpoint(tmp_path)
    out = tmp_path / "predictions.csv"
    args = ("predict", model, images, "-o", out, "--batch-size", "4", "--workers", "0")
    first = fashion(*args)
    with paused(first, lambda: lines(out) >= 1) as writing:  # its header is written: rows follow
        second, resumed = fashion(*args), fashion(*args, "--resume")
        refusals = [refused(second, first), refused(resumed, first)]
    finish(first)
    tally.ran_concurrently(3)
    tally.sent_signal(2)
    assert writing, "the first prediction finished before the others started: it tested nothing"
    assert refusals == [True, True]
    paths = [row["path"] for row in prediction_rows(out)]
    expected = {str(p) for p in images.iterdir()}
    assert tally.count_lost(len(expected - set(paths)) + len(paths) - len(set(paths))) == 0
    assert len(paths) == N_IMAGES and all(row["label"] and not row["error"] for row in prediction_rows(out))


def test_second_train_of_one_run_is_refused_and_the_first_completes(dataset, tmp_path, tally):
    spec = recipe_file(tmp_path, dataset, train__epochs=2)
    run = tmp_path / "runs" / "tiny"
    (run / "checkpoints").mkdir(parents=True)  # a run killed before its first checkpoint
    first = fashion("train", spec, "-q", "--resume")
    with paused(first, (run / "recipe.yaml").is_file) as training:
        # The run by its recipe's name, and by the recipe saved in it.
        others = [fashion("train", spec, "-q", "--resume"), fashion("train", run / "recipe.yaml", "-q", "--resume")]
        refusals = [refused(other, first) for other in others]
    finish(first)
    tally.ran_concurrently(3)
    tally.sent_signal(2)
    assert training, "the first run finished before the others started: it tested nothing"
    assert refusals == [True, True]
    epochs = [row.split(",")[0] for row in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == ["1", "2"] and (run / "checkpoints" / "last.pt").is_file()


def test_lock_of_a_killed_predict_is_taken_over(images, tmp_path, tally):
    model = tiny_checkpoint(tmp_path)
    out = tmp_path / "predictions.csv"
    args = ("predict", model, images, "-o", out, "--batch-size", "4", "--workers", "0")
    killed = kill_when(fashion(*args), lambda: lines(out) > 100)
    left = [p.name for p in tmp_path.iterdir() if p.name.endswith(".lock")]
    finish(fashion(*args, "--resume"))
    tally.injected()
    tally.sent_signal()
    assert killed, "the prediction finished before the kill: it tested nothing"
    assert left, "the killed prediction left no lock behind: there was nothing to take over"
    paths = [row["path"] for row in prediction_rows(out)]
    assert tally.count_lost(N_IMAGES - len(set(paths)) + len(paths) - len(set(paths))) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".lock")]  # released on exit


def test_lock_of_a_killed_command_is_not_kept_by_its_forked_worker(tmp_path, tally):
    """A DataLoader worker forked by `fashion train` outlives a SIGKILL by seconds: it must not hold the lock."""
    ready = tmp_path / "worker.pid"  # written by the worker once fork's after-child hooks have run
    script = (
        "import os, time\n"
        "from fashioncli.locks import Lock\n"
        f"Lock({str(tmp_path / 'run')!r}).acquire()\n"
        "if os.fork() == 0:\n"
        f"    open({str(ready) + '.part'!r}, 'w').write(str(os.getpid()))\n"
        f"    os.rename({str(ready) + '.part'!r}, {str(ready)!r})\n"
        "    time.sleep(30)\n"
        "    os._exit(0)\n"
        "time.sleep(30)\n"
    )
    with open(tmp_path / "holder.err", "w+") as err:
        holder = subprocess.Popen([sys.executable, "-c", script], stderr=err, cwd=tmp_path)
        # Kill the holder only once its worker has run: before that, the test would measure nothing
        # but the scheduler (the worker would still hold the descriptor it was forked with).
        deadline = time.monotonic() + 60
        while not ready.is_file() and holder.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if not ready.is_file():
            holder.kill()
            err.seek(0)
            pytest.fail(f"the holder never forked its worker (exit {holder.wait()}): {err.read()}")
    worker = int(ready.read_text())
    holder.kill()
    holder.wait()
    tally.injected()
    tally.sent_signal()
    try:
        os.kill(worker, 0)  # the worker still runs, yet the lock is free
        with Lock(tmp_path / "run"):
            pass
    finally:
        os.kill(worker, signal.SIGKILL)
