"""MLflow logger: ``log: [mlflow]`` or ``log: {mlflow: {tracking_uri: ..., experiment: ...}}``.

By default runs go to a local file store, ``<output.dir>/mlruns`` (``runs/mlruns``), beside the run
folders; ``MLFLOW_TRACKING_URI`` or the ``tracking_uri`` option choose any other store or server.
Only a remote URI the user gave makes network calls: MLflow's usage telemetry is turned off (unless
``MLFLOW_DISABLE_TELEMETRY`` says otherwise), and the run is made through ``MlflowClient``, which
reads no git remote or notebook context.
"""
import os
import re
import time
from pathlib import Path

from fashioncli.api import Logger, RecipeError, hookimpl

PIP = "pip install mlflow-skinny"
MAX_PARAM = 6000  # MLflow refuses longer parameter values
_KEY_CHARS = re.compile(r"[^\w\-. :/]")  # what MLflow accepts in metric and parameter names
STATUS = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}


def _key(name):
    return _KEY_CHARS.sub("_", str(name))


def _is_file_store(uri):
    scheme = uri.split(":", 1)[0] if "://" in uri or uri.startswith("file:") else ""
    return scheme in ("", "file")


class MlflowLogger(Logger):
    """Logs params, per-epoch metrics, the eval summary and the run's pictures to an MLflow run."""

    def __init__(self, tracking_uri=None, experiment="fashion"):
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # before mlflow is imported
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise RecipeError(f"log.mlflow: the mlflow package is not installed; {PIP}") from None
        self.client_class, self.tracking_uri, self.experiment = MlflowClient, tracking_uri, str(experiment)
        self.client = self.run_id = None

    def start(self, run):
        uri = (run.state.get("tracking_uri") if run.resumed else None) or self.tracking_uri \
            or os.environ.get("MLFLOW_TRACKING_URI") or (run.dir.parent / "mlruns").resolve().as_uri()
        if _is_file_store(uri):
            # MLflow 3 keeps its file store in maintenance mode behind this switch; it needs no
            # database or server, which is what a local default must not need.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = self.client_class(tracking_uri=uri)
        self.run_id = run.state.get("run_id") if run.resumed else None
        if self.run_id is None:
            found = self.client.get_experiment_by_name(self.experiment)
            experiment_id = found.experiment_id if found else self.client.create_experiment(self.experiment)
            tags = {"fashion.run_dir": str(run.dir.resolve()), "fashion.task": str(run.recipe.get("task", ""))}
            self.run_id = self.client.create_run(experiment_id, run_name=run.name, tags=tags).info.run_id
            run.state.update(run_id=self.run_id, tracking_uri=uri, experiment=self.experiment)
        elif run.command == "train":  # a resumed run is running again
            self.client.update_run(self.run_id, status="RUNNING")
        # Parameters cannot change in MLflow: a resumed run logs only keys it does not have yet.
        have = self.client.get_run(self.run_id).data.params
        self._log_params({k: v for k, v in run.params.items() if _key(k) not in have})

    def _log_params(self, params):
        from mlflow.entities import Param

        batch = [Param(_key(k), str(v)[:MAX_PARAM]) for k, v in params.items()]
        for i in range(0, len(batch), 100):  # MLflow takes at most 100 parameters per call
            self.client.log_batch(self.run_id, params=batch[i:i + 100])

    def log_metrics(self, metrics, step):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(_key(k), v, now, step) for k, v in metrics.items()]
        for i in range(0, len(batch), 1000):  # MLflow's limit per call
            self.client.log_batch(self.run_id, metrics=batch[i:i + 1000])

    def log_artifacts(self, paths, folder=None):
        for path in paths:
            self.client.log_artifact(self.run_id, str(Path(path)), artifact_path=folder)

    def finish(self, status):
        if status is not None:
            self.client.set_terminated(self.run_id, STATUS[status])


def mlflow(tracking_uri=None, experiment="fashion"):
    """MLflow: a local file store under <output.dir>/mlruns, or any tracking URI."""
    return MlflowLogger(tracking_uri=None if tracking_uri is None else str(tracking_uri), experiment=experiment)


@hookimpl
def register_loggers(register):
    register("mlflow", mlflow)
