"""No model file runs code: a `.pt` is only ever read as weights (weights_only=True), whatever is
inside it, and TorchScript (a program) is opened only under its own suffix and --trust-torchscript.

The hostile files are real TorchScript programs dressed as `fashion export` output (with the
extra/fashion.json that used to make any zip count as TorchScript): one reads a private file
through torch.from_file and returns its bytes as scores, one never returns."""
import json
import warnings

import pytest
import torch
from click.testing import CliRunner
from helpers import fashion, write_images

from fashioncli.cli import cli

SECRET = b"hunter2-secret"
META = {"classes": ["a", "b", "c"], "preprocessing": {"image_size": 8, "mean": [0, 0, 0], "std": [1, 1, 1]}}


class Reader(torch.nn.Module):
    """Returns the first bytes of ``path`` as class scores: a model file that exfiltrates a file."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def forward(self, x):
        data = torch.from_file(self.path, shared=False, size=3, dtype=torch.uint8)
        return data.float().unsqueeze(0).expand(x.shape[0], 3)


class Spinner(torch.nn.Module):
    """Never returns."""

    def forward(self, x):
        n = 0
        while n >= 0:
            n = n + 1
        return x


def program(module, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(module), str(path), _extra_files={"fashion.json": json.dumps(META)})
    return path


@pytest.fixture
def scene(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    photos = tmp_path / "photos"
    write_images(photos, 2)
    return tmp_path, secret, photos


def test_a_torchscript_program_named_like_a_checkpoint_is_never_run(scene, tally):
    root, secret, photos = scene
    run = root / "run" / "checkpoints"
    run.mkdir(parents=True)
    files = [program(Reader(str(secret)), root / "model.pt"), program(Reader(str(secret)), run / "best.pt"),
             program(Reader(str(secret)), root / "model.bin")]
    for model in [*files, run.parent]:
        for verb in (["predict", model, photos, "-o", root / "out.csv"], ["export", model, "-o", root / "m.onnx"],
                     ["eval", model, "--data", photos]):
            result = CliRunner().invoke(cli, [str(a) for a in verb])
            assert result.exit_code == 1 and "not a fashion checkpoint" in result.output, result.output
            assert SECRET.decode() not in result.output
            tally.tried()
            tally.refused_code()
    assert not (root / "out.csv").exists() and not (root / "m.onnx").exists()


def test_a_program_that_never_returns_is_refused_at_once(scene, tally):
    root, secret, photos = scene
    model = program(Spinner(), root / "best.pt")
    process = fashion("predict", model, photos, "-o", root / "out.csv")
    out, err = process.communicate(timeout=120)  # it used to spin forever, deaf to Ctrl-C
    assert process.returncode == 1 and "not a fashion checkpoint" in err
    tally.tried()
    tally.refused_code()


def test_torchscript_runs_only_under_its_suffix_and_the_trust_flag(scene, tally):
    root, secret, photos = scene
    model = program(Reader(str(secret)), root / "model.torchscript")
    refused = CliRunner().invoke(cli, ["predict", str(model), str(photos), "-o", str(root / "out.csv")])
    assert refused.exit_code == 1 and "--trust-torchscript" in refused.output and "runs its code" in refused.output
    assert not (root / "out.csv").exists()
    tally.tried()
    tally.refused_code()
    # Asked for explicitly, it runs, as documented: the flag is the user's statement of trust.
    trusted = CliRunner().invoke(cli, ["predict", str(model), str(photos), "-o", str(root / "out.csv"),
                                       "--trust-torchscript"])
    assert trusted.exit_code == 0, trusted.output
    assert json.loads(trusted.stdout)["engine"] == "torchscript"
