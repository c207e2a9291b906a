"""Files written atomically get the permissions a plain open() would give them (0666 less the umask,
or the replaced file's own mode), not mkstemp's private 0600: a serving container or a teammate
must be able to read a checkpoint, model.onnx, metrics.csv, curves.png or dataset.json."""
import os
import stat

import pytest
import torch

from fashioncli.checkpoint import save_checkpoint
from fashioncli.io import write_csv, write_json, write_text
from fashioncli.plots import plt, save_figure


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_get_the_mode_open_would_give(tmp_path, umask):
    expected = 0o666 & ~umask
    write_text(tmp_path / "a.txt", "x")
    write_json(tmp_path / "dataset.json", {"a": 1})
    write_csv(tmp_path / "metrics.csv", ["epoch"], [[1]])
    save_figure(plt.figure(), tmp_path / "curves.png")
    save_checkpoint(tmp_path / "best.pt", torch.nn.Linear(2, 2), {"classes": []})
    with open(tmp_path / "plain.txt", "w"):
        pass
    written = ["a.txt", "dataset.json", "metrics.csv", "curves.png", "best.pt", "best.json"]
    assert {name: oct(mode(tmp_path / name)) for name in written + ["plain.txt"]} == {
        name: oct(expected) for name in written + ["plain.txt"]}


def test_a_replaced_file_keeps_its_own_mode(tmp_path, umask):
    path = tmp_path / "shared.json"
    path.write_text("{}")
    os.chmod(path, 0o640)
    write_json(path, {"b": 2})
    assert mode(path) == 0o640 and path.read_text().strip().endswith("}")
