"""`fashion train`: one recipe -> a run directory with checkpoints, metrics, curves and the resolved recipe."""
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from timm.utils import ModelEmaV3, dispatch_clip_grad
from torch.utils.data import Subset
from tqdm import tqdm

from . import distributed as dist
from . import recipe as recipes
from .checkpoint import load_checkpoint, save_checkpoint
from .data.loaders import BatchAugment, build_augment, check_augment, make_loader
from .data.mixing import build_mix
from .data.dataset import PreparedDataset
from .data.splits import seeded_subset
from .devices import check as check_device, resolve_device
from .errors import CheckpointError, DataError, FashionError, OutputError
from .inference import run_model
from .io import make_dir, remove_temporaries, write_csv, write_json, write_text
from .locks import Lock
from .loggers import Loggers
from .optim import build_optimizer, build_scheduler, current_lr, set_lr
from .plots import plot_curves, save_image_grid
from .plugins import get
from .data.preprocess import normalize
from .preprocessing import check_image_size, model_preprocessing
from .resume import check as resume_changes
from .resume import record as record_resume
from .runs import claim, run_directory
from .tasks import make_task

# Training steps between reads of the running loss and accuracy: each read waits for the device to
# finish its queue, so reading every step would keep a GPU idle while the next batch is prepared.
READ_EVERY = 25


def seed_everything(seed, deterministic=False):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def to_device(y, device):
    if isinstance(y, dict):
        return {k: v.to(device, non_blocking=True) for k, v in y.items()}
    return y.to(device, non_blocking=True)


def amp_dtype(setting, device):
    """bf16 where the GPU has it, fp16 otherwise; none on CPU unless asked for."""
    if setting is False or (setting == "auto" and device.type != "cuda"):
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


class Trainer:
    """Holds the state that a checkpoint must capture to resume a run exactly."""

    def __init__(self, recipe, run_dir, progress=True, device=None, loggers=None):
        self.recipe, self.run_dir = recipe, Path(run_dir)
        self.loggers = loggers or Loggers()  # experiment trackers (loggers.py): told of every epoch
        self.progress = progress and dist.is_main()  # one progress bar, one report, one writer
        d, t = recipe["data"], recipe["train"]
        seed_everything(t["seed"], t["deterministic"])
        self.device = device or resolve_device(t["device"])
        self.data = PreparedDataset.open(d["root"])
        self.task = make_task(recipe, self.data)
        size = d["image_size"]
        # The model first: a wrong backbone or missing weights fail before caches are built.
        m = recipe["model"]
        entry = get("models").get(m["name"])
        self.model = entry.factory(**self.task.model_args(), **m["args"])
        # How inputs are normalised is declared with the model's registration, never guessed.
        self.preprocessing = model_preprocessing(entry, {**self.task.model_args(), **m["args"]})
        check_image_size(self.preprocessing, size, m["name"])

        check_augment(self.task, d["augment"])
        augment = build_augment(size, d["augment"])
        # data.gpu_augment: the loader hands over plain images, augmented as a batch on the device.
        self.batch_augment = BatchAugment(augment, masks=self.task.spatial_targets) if d["gpu_augment"] else None
        self.train_set = self.images(d["train_split"], None if d["gpu_augment"] else augment, fraction=d["fraction"])
        self.val_split = d["val_split"] if t["validate"] else None
        if self.val_split and self.val_split not in self.data.splits:
            raise DataError(f"'{d['root']}' has no '{self.val_split}' split to validate on: prepare it again with "
                            "--val-fraction above 0 (or set data.val_split), or set train.validate: false "
                            "to train without validation")
        # Deterministic runs restart workers each epoch, so their augmentation is a function of
        # (seed, epoch) and a resumed run replays it; persistent workers would carry RNG state over.
        self.train_loader = self.train_loader_for(d, t)
        self.val_loader = None
        if self.val_split:
            # Each process validates its share; the outputs meet on rank 0 (distributed.py).
            val_set = self.images(self.val_split)
            self.val_rows = dist.shard(len(val_set))
            if dist.active():
                val_set = Subset(val_set, self.val_rows)
            self.val_loader = make_loader(val_set, d.get("eval_batch_size") or d["batch_size"] * 2, num_workers=d["num_workers"])

        self.memory_format = torch.channels_last if t["channels_last"] else torch.contiguous_format
        if dist.active() and t["sync_bn"]:
            if self.device.type != "cuda":  # torch's SyncBatchNorm runs on GPUs only
                raise FashionError("train.sync_bn: SyncBatchNorm needs GPUs; CPU processes keep per-process "
                                   "batch-norm statistics (set it to false)")
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(self.device, memory_format=self.memory_format)
        self.forward = self.model
        if dist.active():  # self.model stays the plain module: checkpoints and validation use it
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if t["compile"]:
            self.forward = torch.compile(self.forward)
        self.criterion = self.task.criterion().to(self.device)
        self.mix = build_mix(d["augment"], self.task, self.criterion, recipe["loss"]["name"], self.device)
        if t.get("stages"):  # staged fine-tuning: the stages' epochs are the run's
            t["epochs"] = sum(stage["epochs"] for stage in t["stages"])
        self.optimizer = build_optimizer(self.model, recipe["optimizer"])
        # The schedule counts optimizer steps: train.accumulate micro-batches make one.
        self.steps_per_epoch = -(-len(self.train_loader) // t["accumulate"])
        self.scheduler = build_scheduler(
            self.optimizer, recipe["scheduler"], t["epochs"], self.steps_per_epoch, recipe["optimizer"]["lr"]
        )
        # Built after the model has its device and before any step: the average starts at the weights.
        self.ema = ModelEmaV3(self.model, decay=t["ema"]["decay"], use_warmup=t["ema"]["warmup"]) if t["ema"] else None
        self.steps = 0  # optimizer steps so far: the EMA's warm-up clock
        self.stage = None
        if t.get("stages"):
            self.enter_stage(0)
        self.amp = amp_dtype(t["amp"], self.device)
        self.scaler = torch.amp.GradScaler(enabled=self.amp is torch.float16)
        self.epoch, self.best, self.stale, self.history = 0, None, 0, []
        self.lr_steps = []  # (step, epoch, lr) per optimizer step: lr.csv, the curves' lr panel

    def train_loader_for(self, d, t):
        """Shuffled batches; with N processes each takes its slice of every global batch of
        data.batch_size, so together they see what one process would (distributed.RankSampler)."""
        # Deterministic runs restart workers each epoch, so their augmentation is a function of
        # (seed, epoch) and a resumed run replays it; persistent workers would carry RNG state over.
        common = {"num_workers": d["num_workers"], "seed": t["seed"], "persistent": not t["deterministic"]}
        world = dist.world_size() if dist.active() else 1
        if world == 1:
            return make_loader(self.train_set, d["batch_size"], shuffle=True,
                               drop_last=len(self.train_set) > d["batch_size"], **common)
        if d["batch_size"] % world:
            raise FashionError(f"data.batch_size: {d['batch_size']} does not split over {world} processes; "
                               f"use a multiple of {world}")
        local = d["batch_size"] // world
        generator = torch.Generator().manual_seed(t["seed"])  # reseeded per epoch: see train_epoch
        sampler = dist.RankSampler(len(self.train_set), local, generator, dist.rank(), world)
        return make_loader(self.train_set, local, sampler=sampler, generator=generator, **common)

    def images(self, split, transform=None, fraction=1.0):
        """A split's cached images and targets: the rows the task trains on (data.classes), of which
        a seeded ``fraction`` (data.fraction; per class where the task has one label per image)."""
        images = self.task.dataset(self.data.cache(split, self.recipe["data"]["image_size"]),
                                   self.task.targets(self.data, split), transform)
        rows = self.task.rows(self.data, split)
        if fraction < 1:
            rows = seeded_subset(range(len(images)) if rows is None else rows, self.task.strata(self.data, split),
                                 fraction, self.recipe["train"]["seed"])
        return images if rows is None else Subset(images, rows)

    # -- staged fine-tuning ---------------------------------------------------
    def stage_at(self, epoch):
        end = 0
        for i, stage in enumerate(self.recipe["train"]["stages"]):
            end += stage["epochs"]
            if epoch < end:
                return i
        return i

    def enter_stage(self, i):
        """Freeze what stage ``i`` keeps fixed, and give it its learning rate and its own schedule.

        The optimizer holds every parameter from the start (frozen ones get no gradient, so no
        update): unfreezing later needs no new optimizer, and its state carries over.
        """
        from .freeze import set_trainable

        stage = self.recipe["train"]["stages"][i]
        trainable = set_trainable(self.model, stage["backbone"])
        set_lr(self.optimizer, stage["lr"])
        self.scheduler = build_scheduler(self.optimizer, self.recipe["scheduler"], stage["epochs"],
                                         self.steps_per_epoch, stage["lr"])
        if self.stage is not None and self.progress:
            tqdm.write(f"stage {i + 1}: backbone {stage['backbone']}, lr {stage['lr']:g}, "
                       f"{trainable:,} trainable parameters", file=sys.stderr)
        self.stage = i

    # -- state -------------------------------------------------------------
    def meta(self, metrics):
        return {
            "task": self.task.name,
            **self.task.meta(),
            "model": {**self.recipe["model"], "injected": self.task.model_args()},
            "preprocessing": {
                "image_size": self.recipe["data"]["image_size"],
                "mean": list(self.preprocessing.mean), "std": list(self.preprocessing.std),
                "resize": "squash", "layout": "RGB",
            },
            "recipe": self.recipe,
            "epoch": self.epoch,
            "metrics": metrics,
        }

    @property
    def scored_model(self):
        """What validation scores and a checkpoint's "model" holds (eval, predict, export load it):
        the EMA of the weights when train.ema is on."""
        return self.ema.module if self.ema else self.model

    def save(self, name, metrics):
        # With an EMA, the weights being trained are saved beside it, for --resume.
        trained = {"trained_model": self.model.state_dict()} if self.ema else {}
        try:
            save_checkpoint(
                self.run_dir / "checkpoints" / f"{name}.pt", self.scored_model, self.meta(metrics),
                optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                scaler=self.scaler.state_dict(), epoch=self.epoch, best=self.best, stale=self.stale,
                history=self.history, lr_steps=self.lr_steps, torch_rng=torch.get_rng_state(), stage=self.stage,
                steps=self.steps, **trained,
            )
        except OutputError as exc:  # e.g. a full disk: the previous file was left as it was
            raise OutputError(f"{exc}; fix that and rerun with --resume to continue from the last checkpoint") from None

    def restore(self):
        last = self.run_dir / "checkpoints" / "last.pt"
        payload, _ = load_checkpoint(last)
        try:  # the recipes matched (resume.py), but the dataset under data.root may have other classes
            self.model.load_state_dict(payload.get("trained_model", payload["model"]))
            if self.ema:
                self.ema.module.load_state_dict(payload["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"--resume: '{last}' does not fit the model the recipe and dataset build "
                                  f"({' '.join(str(exc).split())[:300]})") from None
        if payload.get("stage") is not None:  # the schedule saved is that stage's
            self.enter_stage(payload["stage"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        self.epoch, self.best, self.stale = payload["epoch"], payload["best"], payload["stale"]
        self.history, self.steps = payload["history"], payload.get("steps", 0)
        self.lr_steps = payload.get("lr_steps", [])  # absent from checkpoints of older versions
        torch.set_rng_state(payload["torch_rng"])

    # -- loops -------------------------------------------------------------
    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp) if self.amp else nullcontext()

    def inputs(self, x):
        x = x.to(self.device, non_blocking=True)  # nothing to do for a batch already there
        pre = self.preprocessing
        return normalize(x, pre.mean, pre.std).contiguous(memory_format=self.memory_format)

    def train_epoch(self):
        self.model.train()
        if self.stage is not None:
            from .freeze import freeze_bn_of_frozen

            freeze_bn_of_frozen(self.model)  # train() woke the frozen BatchNorm layers up
        # Reseeding per epoch makes the data order a function of (seed, epoch): resume replays it.
        self.train_loader.generator.manual_seed(self.recipe["train"]["seed"] * 1000 + self.epoch)
        accumulate, batches = self.recipe["train"]["accumulate"], len(self.train_loader)
        # Sums stay on the device, read every READ_EVERY steps: a step never waits for the device.
        loss_sum = torch.zeros((), device=self.device)
        right = labelled = torch.zeros((), dtype=torch.int64, device=self.device)
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        seen, start = 0, time.perf_counter()
        bar = tqdm(self.train_loader, desc=f"epoch {self.epoch + 1}/{self.recipe['train']['epochs']}",
                   disable=not self.progress, leave=False, dynamic_ncols=True)
        self.optimizer.zero_grad(set_to_none=True)
        for step, (x, y) in enumerate(bar, start=1):
            x, y = x.to(self.device, non_blocking=True), to_device(y, self.device)
            if self.batch_augment is not None:
                x, y = self.batch_augment(x, y)
            inputs, targets = self.inputs(x), y
            if self.mix is not None:
                inputs, targets = self.mix(inputs, y)  # y stays the hard labels, for the accuracy shown
            # The micro-batches of one optimizer step: the last step of an epoch may have fewer.
            first = (step - 1) - (step - 1) % accumulate
            group, stepping = min(accumulate, batches - first), step == min(first + accumulate, batches)
            with self.no_sync(stepping), self.autocast():
                outputs = self.forward(inputs)
                loss = self.criterion(outputs, targets)
            finite &= torch.isfinite(loss.detach())
            self.scaler.scale(loss / group).backward()
            if stepping:
                self.step()
            n = x.shape[0]
            loss_sum += loss.detach().float() * n
            batch_right, batch_counted = self.task.correct(outputs, y)
            right, labelled, seen = right + batch_right, labelled + batch_counted, seen + n
            if step % READ_EVERY == 0:
                total_loss, correct, counted = self.read(finite, loss_sum, right, labelled)
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / max(1, counted):.3f}")
        total_loss, correct, labelled = self.read(finite, loss_sum, right, labelled) if seen else (0.0, 0, 0)
        elapsed = time.perf_counter() - start
        total_loss, correct, labelled, seen = dist.all_sum([total_loss, correct, labelled, seen], self.device)
        # A model without single-label outputs (multilabel heads only) has no accuracy to show.
        accuracy = {"train_accuracy": correct / labelled} if labelled else {}
        return {"train_loss": total_loss / max(1, seen), **accuracy,
                "train_img_per_s": seen / elapsed if elapsed else 0.0}

    def record_lr(self):
        """The learning rate this optimizer step uses, at its place in epochs (lr.csv)."""
        per_epoch = max(1, self.steps_per_epoch)  # every epoch has as many steps
        step = len(self.lr_steps)
        self.lr_steps.append((step + 1, round(self.epoch + step % per_epoch / per_epoch, 6), current_lr(self.optimizer)))

    def preview(self, count=16):
        """train_batch.jpg: ``count`` training images as the model sees them (augmented), with their
        labels as the task shows them. Drawn on a forked RNG, so the run trains as it would without."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.recipe["train"]["seed"])
            picked = torch.randperm(len(self.train_set))[:count].tolist()
            tiles = [self.task.preview_tile(x.permute(1, 2, 0).numpy(), y)
                     for x, y in (self.train_set[i] for i in picked)]
        save_image_grid(self.run_dir / "train_batch.jpg", tiles)

    def no_sync(self, stepping):
        """Processes average gradients once per optimizer step, not per micro-batch."""
        ddp = getattr(self.forward, "_orig_mod", self.forward)
        return ddp.no_sync() if not stepping and hasattr(ddp, "no_sync") else nullcontext()

    def step(self):
        """One optimizer step from the accumulated gradients: unscaled (AMP) before clipping, then
        the per-step schedule and the EMA follow."""
        t = self.recipe["train"]
        if t["grad_clip"]:
            self.scaler.unscale_(self.optimizer)
            dispatch_clip_grad(self.model.parameters(), t["grad_clip"], mode=t["grad_clip_mode"])
        self.record_lr()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.steps += 1
        if self.ema:
            self.ema.update(self.model, step=self.steps)

    def read(self, finite, loss_sum, right, labelled):
        """The running sums as numbers (this waits for the device); a non-finite loss stops the run,
        at most READ_EVERY steps after it, before anything of it is saved."""
        if not finite:
            raise self.diverged(f"loss became {loss_sum.item()}")  # nan (or inf)
        return loss_sum.item(), int(right), int(labelled)

    def validate(self):
        if self.val_loader is None:
            return {}
        pre = self.preprocessing
        outputs, targets = run_model(self.scored_model, self.val_loader, self.device, pre.mean, pre.std,
                                     memory_format=self.memory_format, autocast=self.autocast,
                                     reduce=self.task.reduce, progress="validation" if self.progress else None)
        outputs, targets = dist.gather_outputs(self.val_rows, outputs, targets)
        # Rank 0 measures; every rank gets its figures, so all take the same early-stopping decision.
        return dist.broadcast(self.task.validate(outputs, targets) if dist.is_main() else None)

    def diverged(self, what):
        """The error that stops a run gone non-finite; nothing of it is saved, last.pt stays good."""
        last = self.run_dir / "checkpoints" / "last.pt"
        kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was saved yet"
        return FashionError(f"{what} at epoch {self.epoch + 1}; lower optimizer.lr or set train.grad_clip ({kept})")

    def improved(self, metrics):
        es = self.recipe["train"]["early_stopping"]
        value = metrics.get(es["monitor"])
        if value is None:
            known = ", ".join(k for k, v in metrics.items() if isinstance(v, float))
            raise FashionError(f"train.early_stopping.monitor: '{es['monitor']}' is not measured; measured: {known}")
        if value != value:  # NaN: undefined this epoch (e.g. no positives yet), so never a best to beat
            first = not (self.run_dir / "checkpoints" / "best.pt").is_file()
            self.stale = 0 if first else self.stale + 1
            return first  # but a run always has a best.pt
        better = self.best is None or (value > self.best if es["mode"] == "max" else value < self.best)
        if better:
            self.best, self.stale = value, 0
        else:
            self.stale += 1
        return better

    def fit(self):
        t = self.recipe["train"]
        patience = t["early_stopping"]["patience"]
        if t["early_stopping"]["monitor"] == "auto":
            t["early_stopping"].update(monitor=self.task.monitor(), mode="max")
        if self.val_loader is None and t["early_stopping"]["monitor"].startswith("val_"):
            t["early_stopping"].update(monitor="train_loss", mode="min")
        while self.epoch < t["epochs"]:
            if self.stage is not None and self.stage_at(self.epoch) != self.stage:
                self.enter_stage(self.stage_at(self.epoch))
            row = {"epoch": self.epoch + 1, "lr": current_lr(self.optimizer)}
            row.update(self.train_epoch())
            # The last step of an epoch can turn the weights non-finite after a finite loss.
            if not all(torch.isfinite(t).all() for t in self.model.state_dict().values()):
                raise self.diverged("the weights became non-finite")
            row.update(self.validate())
            self.epoch += 1
            best = self.improved(row)
            self.history.append(row)
            if dist.is_main():
                self.write_metrics()
                # best before last: a kill between the two resumes from the previous last.pt and
                # redoes this epoch, so best.pt is never behind the best value last.pt records.
                if best:
                    self.save("best", row)
                self.save("last", row)
                self.report(row, best)
                self.loggers.epoch(row)
            if patience and self.stale >= patience:
                if dist.is_main():
                    tqdm.write(f"early stopping: {t['early_stopping']['monitor']} has not improved for {patience} epochs",
                               file=sys.stderr)
                break
        return self.summary()

    # -- outputs -----------------------------------------------------------
    def write_metrics(self):
        keys = list(dict.fromkeys(k for row in self.history for k in row))
        write_csv(self.run_dir / "metrics.csv", keys, [[row.get(k, "") for k in keys] for row in self.history])
        write_csv(self.run_dir / "lr.csv", ["step", "epoch", "lr"], self.lr_steps)
        plot_curves(self.run_dir / "metrics.csv", self.run_dir / "curves.png", self.run_dir / "lr.csv",
                    panel_of=self.task.curve_panel)

    def report(self, row, best):
        parts = [f"epoch {row['epoch']}/{self.recipe['train']['epochs']}"]
        parts += [f"{k}={v:.4f}" for k, v in row.items() if k not in ("epoch", "lr") and isinstance(v, float)]
        tqdm.write("  ".join(parts) + ("  *best*" if best else ""), file=sys.stderr)  # stdout: the JSON summary

    def summary(self):
        es = self.recipe["train"]["early_stopping"]
        return {"run_dir": str(self.run_dir), "epochs": self.epoch, "train_images": len(self.train_set),
                "best": {es["monitor"]: self.best},
                "last": self.history[-1] if self.history else {}}


def train(recipe, spec="run", resume=False, progress=True, replace=False):
    """Train from a resolved recipe (``spec`` is where it came from); returns a summary.

    ``replace`` (the command line's --replace, never a recipe key) lets a new run take the place
    of the marked run folder of the same name (runs.py).

    Under torchrun (or `fashion train --devices N`) every process runs this: rank 0 picks the run
    directory and writes to it, the others train beside it (distributed.py).
    """
    # A device not present: refused before any work. GPU indices '0,1' name one GPU per process.
    device = dist.setup(check_device(recipe["train"]["device"], several=dist.world_size() > 1))
    try:
        run_dir = Path(dist.broadcast(str(run_directory(recipe, spec, resume, replace)) if dist.is_main() else None))
        # First the lock: a second train of this run (a resume, a --replace) is refused before it reads or moves it.
        with Lock(run_dir) if dist.is_main() else nullcontext():
            # None: nothing to resume from. Before anything is written: a refused change leaves the run as it was.
            changes = resume_changes(recipe, run_dir) if resume else None
            # Built first: a logger whose package is missing fails before data and model are.
            loggers = Loggers.create(recipe) if dist.is_main() else Loggers()
            trainer = Trainer(recipe, run_dir, progress=progress, device=device, loggers=loggers)
            if dist.is_main():
                with claim(run_dir, replace=replace and not resume, recipe=spec):
                    make_dir(run_dir / "checkpoints")  # marks a run, even before its first epoch
                    for folder in (run_dir, run_dir / "checkpoints"):
                        remove_temporaries(folder)  # what a killed run was writing
                    if changes is None:  # a resumed run's recipe changes only once its checkpoint has loaded
                        write_text(run_dir / "recipe.yaml", recipes.dump(recipe))
                        trainer.preview()
                    if trainer.task.class_weights:  # what class_weight: balanced|sqrt gave the losses
                        write_json(run_dir / "class_weights.json", trainer.task.class_weights)
            if changes is not None:
                trainer.restore()
                if dist.is_main():
                    record_resume(run_dir, recipe, changes, trainer.epoch)
            with loggers.training(run_dir, recipe, resumed=changes is not None):
                return trainer.fit()
    finally:
        dist.cleanup()
