"""Experiment loggers: a real tiny run logged to MLflow and TensorBoard, read back with their own
readers; the register_loggers hook; recipe errors; a missing package; a failing logger."""
import csv
import json
import socket
import sys

import pytest
import yaml
from click.testing import CliRunner
from helpers import recipe_file

from fashioncli import hookimpl
from fashioncli.cli import cli
from fashioncli.errors import RecipeError
from fashioncli.evaluate import evaluate
from fashioncli.loggers import Logger
from fashioncli.plugins import plugin_registered
from fashioncli.recipe import _check_remote_output, load_recipe
from fashioncli.train import train


def rows(run):
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to resolve a host or open an internet connection, recorded and refused (local
    sockets, which multiprocessing uses, go through)."""
    attempts = []
    connect = socket.socket.connect

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network refused by the test")

    def internet_refused(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            return refuse(sock, address)
        return connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", internet_refused)
    return attempts


def test_mlflow_and_tensorboard_read_back(tiny_prepared, tmp_path, no_network):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    spec = recipe_file(tmp_path, tiny_prepared, log=["mlflow", "tensorboard"])
    train(load_recipe(spec), spec=spec, progress=False)
    run = tmp_path / "runs" / "tiny"
    summary = evaluate(run, split="test")
    epochs = rows(run)
    assert no_network == []  # a local store: nothing left the machine

    # MLflow, read with its own client from the default file store beside the run folders
    client = MlflowClient(tracking_uri=(tmp_path / "runs" / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("fashion")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.run_name == "tiny" and logged.info.status == "FINISHED"
    assert logged.info.run_id == json.loads((run / "loggers.json").read_text())["mlflow"]["run_id"]
    params = logged.data.params
    assert params["optimizer.lr"] == "0.003" and params["data.image_size"] == "32"
    assert params["model.args.backbone"] == "test_resnet" and params["log.mlflow"] == "{}"
    for name in ("train_loss", "val_accuracy", "lr"):
        history = client.get_metric_history(logged.info.run_id, name)
        assert [m.step for m in history] == [1, 2]
        assert [m.value for m in history] == pytest.approx([float(r[name]) for r in epochs])
    (accuracy,) = client.get_metric_history(logged.info.run_id, "eval-test/accuracy")
    best_epoch = json.loads((run / "checkpoints" / "best.json").read_text())["epoch"]  # the checkpoint eval scored
    assert accuracy.value == pytest.approx(summary["metrics"]["accuracy"]) and accuracy.step == best_epoch
    files = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"curves.png", "metrics.csv", "recipe.yaml", "eval-test"} <= files
    assert "eval-test/confusion_matrix.png" in {a.path for a in client.list_artifacts(logged.info.run_id, "eval-test")}

    # TensorBoard, read with tensorboard's event reader
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    loss = events.Scalars("train_loss")
    assert [e.step for e in loss] == [1, 2]
    assert [e.value for e in loss] == pytest.approx([float(r["train_loss"]) for r in epochs], rel=1e-5)
    assert events.Scalars("eval-test/accuracy")[0].value == pytest.approx(summary["metrics"]["accuracy"], rel=1e-5)
    assert {"curves", "eval-test/confusion_matrix"} <= set(events.Tags()["images"])
    start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    assert hparams["optimizer.lr"].number_value == pytest.approx(0.003)
    assert hparams["model.args.backbone"].string_value == "test_resnet"


class Memory(Logger):
    """A third-party logger that keeps every call."""

    calls = []

    def __init__(self, tag="x"):
        self.tag = tag

    def start(self, run):
        run.state["tag"] = self.tag
        self.calls.append(("start", run.command, run.resumed, run.params["optimizer.lr"]))

    def log_metrics(self, metrics, step):
        self.calls.append(("metrics", step, metrics))

    def log_artifacts(self, paths, folder=None):
        self.calls.append(("artifacts", folder, sorted(p.name for p in paths)))

    def finish(self, status):
        self.calls.append(("finish", status))


class Broken(Logger):
    def log_metrics(self, metrics, step):
        raise ConnectionError("tracking server gone")


class LoggerPlugin:
    @staticmethod
    @hookimpl
    def register_loggers(register):
        register("memory", Memory)
        register("broken", Broken)


def test_hook_registers_a_third_party_logger(tiny_prepared, tmp_path, capsys):
    Memory.calls.clear()
    with plugin_registered(LoggerPlugin(), name="logger-plugin"):
        spec = recipe_file(tmp_path, tiny_prepared, log={"memory": {"tag": "t1"}, "broken": None})
        summary = train(load_recipe(spec), spec=spec, progress=False)
        run = tmp_path / "runs" / "tiny"
        assert summary["epochs"] == 2  # the broken logger cost nothing but a warning
        assert "logger 'broken' failed and is turned off for this run: tracking server gone" in capsys.readouterr().err
        evaluate(run, split="test")
    calls = Memory.calls
    assert calls[0] == ("start", "train", False, 0.003)
    epochs = [c for c in calls if c[0] == "metrics"]
    assert [c[1] for c in epochs[:2]] == [1, 2]
    assert epochs[0][2]["val_accuracy"] == pytest.approx(float(rows(run)[0]["val_accuracy"]))
    (logged,) = [c[2] for c in calls if c[:2] == ("artifacts", None)]
    assert {"curves.png", "metrics.csv", "recipe.yaml"} <= set(logged)
    assert calls.index(("finish", "finished")) > calls.index(epochs[1])
    # the eval reopens the run: its metrics at the checkpoint's epoch, its pictures, no status change
    assert ("start", "eval", True, 0.003) in calls
    assert "eval-test/accuracy" in epochs[-1][2] and calls[-1] == ("finish", None)
    (logged,) = [c[2] for c in calls if c[:2] == ("artifacts", "eval-test")]
    assert "confusion_matrix.png" in logged
    assert json.loads((run / "loggers.json").read_text())["memory"] == {"tag": "t1"}


def test_log_key_is_validated(tiny_prepared, tmp_path):
    with pytest.raises(RecipeError, match=r"^log: unknown logger 'tensorbord' \(did you mean 'tensorboard'\?\); "
                                          r"known: mlflow, tensorboard$"):
        load_recipe(recipe_file(tmp_path, tiny_prepared, log=["tensorbord"]))
    with pytest.raises(RecipeError, match=r"^log.mlflow.tracking_url: unknown argument \(did you mean 'tracking_uri'\?\); "
                                          r"'mlflow' takes: tracking_uri, experiment$"):
        load_recipe(recipe_file(tmp_path, tiny_prepared, log={"mlflow": {"tracking_url": "x"}}))
    with pytest.raises(RecipeError, match="^log: expected a list of loggers"):
        load_recipe(recipe_file(tmp_path, tiny_prepared, log=3))
    # both forms resolve to one mapping, so --set reaches an option
    spec = recipe_file(tmp_path, tiny_prepared, log=["mlflow"])
    assert load_recipe(spec, ["log.mlflow.experiment=mine"])["log"] == {"mlflow": {"experiment": "mine"}}


def test_a_remote_recipe_names_loggers_but_not_where_they_send():
    _check_remote_output({"log": ["mlflow"]}, "http://example.org/r.yaml")
    with pytest.raises(RecipeError, match=r"^log.mlflow: the remote recipe .* may name loggers only"):
        _check_remote_output({"log": {"mlflow": {"tracking_uri": "http://evil"}}}, "http://example.org/r.yaml")


@pytest.mark.parametrize("logger, module, pip", [("mlflow", "mlflow", "pip install mlflow-skinny"),
                                                  ("tensorboard", "torch.utils.tensorboard", "pip install tensorboard")])
def test_a_missing_package_is_one_line_naming_pip(tiny_prepared, tmp_path, monkeypatch, logger, module, pip):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    if module == "mlflow":
        monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    spec = recipe_file(tmp_path, tiny_prepared, log=[logger])
    result = CliRunner().invoke(cli, ["train", str(spec), "-q"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: log.{logger}: the {logger} package is not installed; {pip}"]
    assert not (tmp_path / "runs" / "tiny").exists()  # refused before the run folder was made


def test_training_without_loggers_writes_no_logger_state(tiny_prepared, tmp_path):
    spec = recipe_file(tmp_path, tiny_prepared, train__epochs=1)
    recipe = load_recipe(spec)
    assert recipe["log"] == {}
    assert yaml.safe_load(open(spec)).get("log") is None
    train(recipe, spec=spec, progress=False)
    assert not (tmp_path / "runs" / "tiny" / "loggers.json").exists() and not (tmp_path / "runs" / "mlruns").exists()


def test_resume_continues_the_mlflow_run(tiny_prepared, tmp_path):
    from mlflow.tracking import MlflowClient

    spec = recipe_file(tmp_path, tiny_prepared, log=["mlflow"], train__epochs=1)
    train(load_recipe(spec), spec=spec, progress=False)
    saved = tmp_path / "runs" / "tiny" / "recipe.yaml"
    train(load_recipe(saved, ["train.epochs=2"]), spec=saved, resume=True, progress=False)
    client = MlflowClient(tracking_uri=(tmp_path / "runs" / "mlruns").as_uri())
    (logged,) = client.search_runs([client.get_experiment_by_name("fashion").experiment_id])
    assert logged.info.status == "FINISHED" and logged.data.params["train.epochs"] == "1"
    assert [m.step for m in client.get_metric_history(logged.info.run_id, "train_loss")] == [1, 2]
