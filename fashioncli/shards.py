"""Sharded `fashion predict`: under torchrun (or `fashion predict --devices N`) each process predicts a
contiguous block of the inputs into a shard file; rank 0 then merges the shards into the one output.

Every process lists the inputs the same way (inputs.py: sorted folders, de-duplicated in order), so
rank r of W takes the same block [n*r/W, n*(r+1)/W) in every run and the blocks concatenated are the
inputs in order: the merge is a concatenation, one row per input, in input order. A shard is
``OUT.shards/RANK-of-WORLD.FORMAT``, appended batch by batch like any predict output, so --resume
continues each one after a kill of any process; the shards are removed once merged. A process runs
on its GPU (LOCAL_RANK), or on the CPU with its share of the cores; the group (gloo) only waits and
sums counts, so a GPU job needs no NCCL for it.
"""
import os
import shutil
from datetime import timedelta
from pathlib import Path

from .errors import DataError, FashionError
from .inputs import iter_inputs, path_key, unique
from .io import atomic_path
from .locks import Lock
from .rows import read_done

# A rank that resumes a finished shard waits for the others at the merge: as long as they take.
WAIT = timedelta(days=7)


def launched():
    """Whether this process is a rank of a torchrun job (without importing torch otherwise)."""
    if "WORLD_SIZE" not in os.environ:
        return False
    from .distributed import launched

    return launched()


def shard_dir(out):
    return Path(f"{out}.shards")


def shard_file(out, fmt, rank, world):
    return shard_dir(out) / f"{rank:05d}-of-{world:05d}.{fmt}"


def block(n, rank, world):
    """Rank ``rank``'s slice of ``n`` inputs: contiguous, sizes differing by at most one."""
    return slice(n * rank // world, n * (rank + 1) // world)


def predict_shard(job):
    """This process's part of a sharded predict job (predict.predict's options) -> the job's summary
    (counts summed over the processes) on every rank."""
    from . import distributed as dist
    from .predict import open_job, summary, write_rows

    device = dist.setup(job.device, backend="gloo", timeout=WAIT)
    try:
        rank, world = dist.rank(), dist.world_size()
        if device.type == "cpu":
            job.device = "cpu"
            job.threads = job.threads or dist.cpu_share()
            if job.num_workers is None:  # decode in turn with the model: the share has no core to spare
                job.num_workers = 0
        else:
            job.device = str(device)
        engine, layout, tta = open_job(job)
        if layout.folders:  # its file names depend on the names already taken: one writer only
            raise FashionError(f"a {engine.task.name} model writes files beside --out, which several processes "
                               f"cannot name consistently yet; predict it in one process (no --devices, no torchrun)")
        listed = {"duplicates": 0, "skipped": 0}
        paths = list(unique(iter_inputs(job.inputs, skip=layout.folders), set(), listed))
        if not paths:
            raise DataError(f"no images found in: {', '.join(job.inputs)}")
        shard = shard_file(job.out, job.fmt, rank, world)
        stats = {"rows": 0, "errors": 0, "skipped": 0}
        with Lock(shard):
            done = read_done(shard, job.fmt, layout.columns) if job.resume else set()
            mine = unique(paths[block(len(paths), rank, world)], done, stats)
            seconds = write_rows(job, engine, layout, tta, mine, shard, stats, progress=dist.is_main())
        # Every rank gets here with its shard complete and closed: then the merge may read them all.
        counts = dist.all_sum([stats["rows"], stats["errors"], stats["skipped"], seconds], "cpu")
        stats = {"rows": int(counts[0]), "errors": int(counts[1]), "duplicates": listed["duplicates"],
                 "skipped": int(counts[2])}
        if dist.is_main():
            merge(job.out, job.fmt, layout.columns, paths, world)
        result = summary(job, engine, layout, stats, counts[3] / world)
        return {**result, "processes": world, "device": engine.device_name()}
    finally:
        dist.cleanup()


def merge(out, fmt, columns, paths, world):
    """Concatenate the ``world`` shards of ``out`` into ``out`` (atomically), after checking that each
    holds exactly its block of ``paths``; then remove them."""
    shards = [shard_file(out, fmt, r, world) for r in range(world)]
    for r, shard in enumerate(shards):
        want = {path_key(p) for p in paths[block(len(paths), r, world)]}
        if read_done(shard, fmt, columns) != want:
            raise DataError(f"shard '{shard}' does not hold its {len(want)} inputs; rerun with --resume")
    with Lock(out), atomic_path(out) as tmp:
        with open(tmp, "wb") as dest:
            for r, shard in enumerate(shards):
                with open(shard, "rb") as src:
                    if fmt == "csv" and r > 0:
                        src.readline()  # its header: column names hold no line breaks
                    shutil.copyfileobj(src, dest)
    for shard in shards:
        shard.unlink()
    try:
        shard_dir(out).rmdir()
    except OSError:  # shards of another process count, or the user's files: left alone
        pass

