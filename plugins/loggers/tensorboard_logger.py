"""TensorBoard logger: ``log: [tensorboard]`` writes event files to ``<run>/tensorboard``, so
``tensorboard --logdir runs`` shows every run side by side.

Params go to the HParams dashboard (and the resolved recipe to the Text one), each epoch's metrics
are scalars under their metrics.csv names, an eval's under ``eval-<split>/``, and pictures are
images. Written by torch's ``SummaryWriter``: local files only, flushed by a background thread.
"""
from fashioncli.api import Logger, RecipeError, hookimpl, read_image

PIP = "pip install tensorboard"
FOLDER = "tensorboard"


class TensorBoardLogger(Logger):
    """Scalars, hyper-parameters and pictures in TensorBoard event files."""

    def __init__(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch raises it when the tensorboard package is missing
            raise RecipeError(f"log.tensorboard: the tensorboard package is not installed; {PIP}") from None
        self.writer_class, self.writer, self.step = SummaryWriter, None, 0

    def start(self, run):
        self.writer = self.writer_class(log_dir=str(run.dir / FOLDER))
        if not run.resumed:
            import yaml

            # run_name=".": the hyper-parameters belong to this run's folder, not to a sub-run.
            self.writer.add_hparams(run.params, {}, run_name=".")
            self.writer.add_text("recipe", "```yaml\n" + yaml.safe_dump(run.recipe, sort_keys=False) + "```")

    def log_metrics(self, metrics, step):
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.step = step

    def log_artifacts(self, paths, folder=None):
        for path in paths:
            if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
                tag = f"{folder}/{path.stem}" if folder else path.stem
                self.writer.add_image(tag, read_image(path), self.step, dataformats="HWC")

    def finish(self, status):
        self.writer.close()


def tensorboard():
    """TensorBoard event files in <run>/tensorboard."""
    return TensorBoardLogger()


@hookimpl
def register_loggers(register):
    register("tensorboard", tensorboard)
