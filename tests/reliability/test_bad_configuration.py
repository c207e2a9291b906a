"""Bad configuration and a hostile environment: fuzzed recipes and --set strings fail only with a
clean FashionError (a RecipeError); a diverging run keeps its last good checkpoint; outputs that
cannot be written (read-only, full, under a file) are one-line CLI errors, never tracebacks."""
import errno
import itertools
import os
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from helpers import recipe_file, tiny_checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fashioncli import hookimpl, io, plugins
from fashioncli.checkpoint import load_checkpoint
from fashioncli.cli import cli
from fashioncli.errors import FashionError, RecipeError
from fashioncli.recipe import SCHEMA, load_recipe

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _keys(schema, prefix=""):
    for key, sub in schema.items():
        yield prefix + key
        if isinstance(sub, dict):
            yield from _keys(sub, f"{prefix}{key}.")


DOTTED = sorted(_keys(SCHEMA)) + ["model.name", "model.args.backbone", "loss.args.x", "base"]
LEAVES = sorted({k.rsplit(".", 1)[-1] for k in DOTTED} | {"name", "args"})
# Values YAML and the validators find awkward: numbers past float's range, impossible dates,
# words where numbers go, Python tags that safe_load must refuse.
AWKWARD = ["1e-3", "1e999", "9" * 400, "2020-13-45", ".nan", "-.inf", "auto", "timm", "adamw", "~",
           "!!python/object/apply:os.system ['true']", "[1, [2, [3]]]", "{a: 1}", "'", "\x00"]
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300) | st.floats()
           | st.text(max_size=12) | st.sampled_from(AWKWARD))
keys = st.sampled_from(LEAVES) | st.text(max_size=6) | st.integers()
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4),
                      max_leaves=12)
recipes = st.dictionaries(st.sampled_from(DOTTED).map(lambda k: k.split(".")[0]) | st.text(max_size=6), values,
                          max_size=6).map(lambda d: {"base": "quickstart", **d} if len(d) % 2 else d)
overrides = (st.builds(lambda k, v: f"{k}={v}", st.sampled_from(DOTTED) | st.text(max_size=10),
                       st.sampled_from(AWKWARD) | st.text(max_size=12))
             | st.text(max_size=20))


def _load(text, sets, tally):
    tally.tried()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, encoding="utf-8",
                                     errors="surrogateescape") as f:
        f.write(text)
    try:
        assert isinstance(load_recipe(f.name, sets), dict)
    except FashionError as exc:  # the only failure allowed; anything else fails with its traceback
        assert isinstance(exc, RecipeError), exc
    finally:
        os.unlink(f.name)


@FUZZ
@given(data=recipes, sets=st.lists(overrides, max_size=3))
def test_fuzzed_recipes_and_overrides_fail_only_with_recipe_errors(data, sets, tally):
    _load(yaml.safe_dump(data, allow_unicode=True), sets, tally)


@FUZZ
@given(text=st.text(max_size=80) | st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape")))
def test_any_text_as_a_recipe_fails_only_with_a_recipe_error(text, tally):
    _load(text, [], tally)


def test_recipe_with_python_tags_runs_nothing(tmp_path, tally):
    tally.tried()
    marker = tmp_path / "ran"
    (tmp_path / "evil.yaml").write_text(f"data: !!python/object/apply:os.mkdir ['{marker}']\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(tmp_path / "evil.yaml")
    assert not marker.exists()


# --- a diverging run ---------------------------------------------------------------------------

class NanLossPlugin:
    """A loss that turns NaN from call ``steps`` on, or (``gradient``) stays finite at that call
    but sends NaN gradients back, so that the weights go bad after a finite loss."""

    __name__ = "nan-loss"

    @staticmethod
    @hookimpl
    def register_losses(register):
        class NanAfter(torch.nn.CrossEntropyLoss):
            def __init__(self, steps, gradient):
                super().__init__()
                self.calls, self.steps, self.gradient = itertools.count(), steps, gradient

            def forward(self, logits, target):
                value, call = super().forward(logits, target), next(self.calls)
                if self.gradient:  # sqrt(0) is 0, its derivative infinite: NaN once chained
                    return value + torch.sqrt((logits - logits.detach()).abs().sum()) if call == self.steps else value
                return value * float("nan") if call >= self.steps else value

        def nan_after(steps=5, gradient=False):
            return NanAfter(steps, gradient)

        register("nan_after", nan_after)


@pytest.fixture
def nan_loss():
    with plugins.plugin_registered(NanLossPlugin(), name="nan-loss"):
        yield "nan_after"


def one_line_error(result):
    """The message of a clean CLI failure: exit 1, one 'Error:' line, no traceback (epoch lines may precede)."""
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    return line


@pytest.mark.parametrize("gradient, what", [(False, "loss became nan"), (True, "the weights became non-finite")])
def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_prepared, tmp_path, nan_loss, gradient,
                                                                     what, tally):
    tally.injected()
    # 36 training images in batches of 8: 4 steps an epoch, so step 7 is the last of epoch 2.
    args = {"steps": 7 if gradient else 5, "gradient": gradient}
    spec = recipe_file(tmp_path, tiny_prepared, train__epochs=3, loss={"name": nan_loss, "args": args})
    message = one_line_error(CliRunner().invoke(cli, ["train", str(spec), "-q"]))
    last = tmp_path / "runs" / "tiny" / "checkpoints" / "last.pt"
    assert f"{what} at epoch 2" in message and f"the last good checkpoint is {last}" in message
    payload, meta = load_checkpoint(last)
    assert payload["epoch"] == meta["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in payload["model"].values())


# --- outputs that cannot be written ------------------------------------------------------------

def full_disk_for(monkeypatch, name, after=0):
    """Make the atomic write of ``name`` hit a full disk (the real ENOSPC of /dev/full) after
    ``after`` successful writes of it; the bytes go nowhere and the old file must survive."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    real, writes = io._create_beside, itertools.count()

    def create_beside(path):
        tmp = real(path)
        if path.name == name and next(writes) >= after:
            os.unlink(tmp)
            os.symlink("/dev/full", tmp)
        return tmp

    monkeypatch.setattr(io, "_create_beside", create_beside)


def test_full_disk_mid_training_keeps_the_checkpoint_and_resume_finishes(tiny_prepared, tmp_path, monkeypatch,
                                                                          tally):
    tally.injected()
    spec = recipe_file(tmp_path, tiny_prepared, train__epochs=2)
    full_disk_for(monkeypatch, "last.pt", after=1)
    message = one_line_error(CliRunner().invoke(cli, ["train", str(spec), "-q"]))
    run = tmp_path / "runs" / "tiny"
    assert f"cannot write '{run / 'checkpoints' / 'last.pt'}': No space left on device" in message
    assert "--resume" in message
    assert load_checkpoint(run / "checkpoints" / "last.pt")[0]["epoch"] == 1  # the old file survived
    monkeypatch.undo()
    result = CliRunner().invoke(cli, ["train", str(run / "recipe.yaml"), "-q", "--resume"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(run / "checkpoints" / "last.pt")[0]["epoch"] == 2
    assert not list((run / "checkpoints").glob(".*"))


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_prepared):
    return tiny_checkpoint(tmp_path_factory.mktemp("outputs"), data_root=tiny_prepared)


def read_only(monkeypatch):
    """chmod does not stop root: a read-only file system is simulated where temporary files are made."""
    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path.parent))

    monkeypatch.setattr(io, "_create_beside", refuse)


@pytest.mark.parametrize("case", ["eval-under-a-file", "eval-read-only", "export-read-only", "predict-full",
                                  "predict-under-a-file", "prepare-under-a-file", "train-under-a-file"])
def test_unwritable_outputs_are_one_line_errors(case, model, tiny_prepared, tmp_path, monkeypatch, tally):
    tally.injected()
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    under = blocker / "out"
    command, expected = {
        "eval-under-a-file": (["eval", model, "-o", under], f"cannot write '{under}/"),
        "eval-read-only": (["eval", model, "-o", tmp_path / "e"], "Read-only file system"),
        "export-read-only": (["export", model, "--format", "torchscript", "-o", tmp_path / "m.ts"],
                             f"cannot write '{tmp_path / 'm.ts'}': Read-only file system"),
        "predict-full": (["predict", model, tiny_prepared.parent / "src", "-o", "/dev/full"],
                         "cannot write '/dev/full': No space left on device"),
        "predict-under-a-file": (["predict", model, tiny_prepared.parent / "src", "-o", under / "p.csv"],
                                 f"cannot write '{under}'"),  # its folder, made first for the lock
        "prepare-under-a-file": (["prepare", tiny_prepared.parent / "src", under], f"cannot write '{under}'"),
        "train-under-a-file": (["train", recipe_file(tmp_path, tiny_prepared, output__dir=str(under))],
                               f"cannot write '{under}'"),  # the runs folder, made first for the lock
    }[case]
    if case.endswith("read-only"):
        read_only(monkeypatch)
    if case == "predict-full" and not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    message = one_line_error(CliRunner().invoke(cli, [str(a) for a in command]))
    assert expected in message
    if case.endswith("under-a-file"):
        assert message.endswith(f"'{blocker}' is a file, not a folder")
    assert Path(blocker).read_text() == "a file, not a folder"


def test_other_refusals_of_the_system_are_one_line_errors_too(monkeypatch, tally):
    tally.injected()

    def failing_disk(*args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO), "recipe.yaml")

    monkeypatch.setattr("fashioncli.recipe.load_recipe", failing_disk)
    message = one_line_error(CliRunner().invoke(cli, ["train", "recipe.yaml"]))
    assert message == f"Error: 'recipe.yaml': {os.strerror(errno.EIO)}"
