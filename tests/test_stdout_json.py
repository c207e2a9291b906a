"""Every verb prints its JSON summary alone on stdout, so `fashion VERB ... | jq` works: epoch lines,
progress bars and notes go to stderr, and nothing reaches file descriptor 1 behind Python's back."""
import json

from click.testing import CliRunner

from fashioncli.cli import cli
from helpers import make_image_folder, recipe_file


def run(capfd, *args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert capfd.readouterr().out == ""  # what a library wrote to fd 1 directly
    return json.loads(result.stdout)


def test_every_verb_prints_only_its_json_summary_on_stdout(tmp_path, capfd):
    src = make_image_folder(tmp_path / "src", per_class=4, size=32, splits=["train", "val", "test"])
    assert run(capfd, "prepare", src, tmp_path / "data", "--image-size", 32)["splits"]["train"] == 12
    spec = recipe_file(tmp_path, tmp_path / "data", train__epochs=1)
    run_dir = run(capfd, "train", spec, "-q")["run_dir"]
    assert "accuracy" in json.dumps(run(capfd, "eval", run_dir))
    assert run(capfd, "predict", run_dir, src / "test", "-o", tmp_path / "preds.csv")["rows"] == 12
    assert run(capfd, "export", run_dir, "--format", "torchscript")["parity"]["images"] > 0
