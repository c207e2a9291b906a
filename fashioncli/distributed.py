"""Data-parallel training on torch.distributed: NCCL on GPUs, gloo on CPU.

`fashion train --devices N` relaunches itself under torchrun (torch.distributed.run), so N
processes and a job started by hand with torchrun (one node or many) take the same path: each
process reads RANK / LOCAL_RANK / WORLD_SIZE, joins the group and trains a DistributedDataParallel
copy of the model.

A recipe's data.batch_size is the global batch: every rank takes its slice of each global batch
(``RankSampler``), so N processes see exactly the batches one process would, and with
SyncBatchNorm (train.sync_bn) they compute the same updates up to floating-point order. Only
rank 0 writes files and shows progress; validation runs on every rank's share and is gathered
on rank 0, whose metrics are sent back so that every rank takes the same early-stopping decision.
`fashion predict --devices N` (or under torchrun) joins a gloo group the same way (shards.py).
"""
import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from .devices import check as check_device, gpu_ids
from .errors import FashionError


def world_size():
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank():
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_main():
    return rank() == 0


def active():
    # A one-process torchrun job is distributed too (DDP on one GPU): it checks the launch path.
    return dist.is_available() and dist.is_initialized()


def launched():
    """Whether torchrun (or `--devices N`) started this process as a rank of a job."""
    return world_size() > 1 or ("WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ)


def cpu_share():
    """This process's share of the cores it may run on, when the job's processes on this machine
    (torchrun's LOCAL_WORLD_SIZE) split them: its torch threads on the CPU."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def setup(device_setting, backend=None, timeout=timedelta(minutes=30)):
    """Join the process group when launched by torchrun -> this process's device (or None: not distributed).

    ``backend`` None: NCCL on GPUs, gloo on CPU."""
    if not launched():
        return None
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_setting in ("auto", "cuda") or str(device_setting).startswith("cuda")
    if use_cuda:
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if device.type == "cuda" else "gloo"), timeout=timeout)
    return device


def cleanup():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def processes(devices, device):
    """--devices (None: not given) and the train.device setting -> how many processes to train in:
    --devices, else one per GPU the device lists ('0,1': 2), else 1."""
    listed = len(gpu_ids(device) or [])
    if devices is None:
        return max(1, listed)
    if listed and devices != listed:
        raise FashionError(f"--devices {devices} and device '{device}' ({listed} GPU{'s' * (listed > 1)}, a process "
                           "each) disagree; give one of them")
    return devices


def launch(argv, devices, device="auto"):
    """Run ``fashion <argv>`` in ``devices`` processes under torchrun on this machine -> exit code.

    The device is checked first: a device that is not here would fail in every process, and
    torchrun would bury the one-line reason under its own traceback. GPUs listed by index ('2,3')
    are the only ones the processes see, each taking one (cuda:LOCAL_RANK).
    """
    if devices < 2:
        raise FashionError(f"--devices must be 2 or more to launch processes, not {devices}")
    check_device(device, several=True)
    if torch.cuda.is_available() and devices > torch.cuda.device_count():
        raise FashionError(f"--devices {devices}: this machine has {torch.cuda.device_count()} GPUs")
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    if gpu_ids(device):  # the processes see only these GPUs, renumbered from 0
        os.environ["CUDA_VISIBLE_DEVICES"] = device
        argv = [*argv, "--set=train.device=cuda"]
    # torchrun gives each process one thread unless told; on the CPU they share the cores instead.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // devices)))
    try:  # torchrun in this process: torch is imported already, a second interpreter would import it again
        torchrun(["--standalone", f"--nproc-per-node={devices}", "-m", "fashioncli", *argv])
    except ChildFailedError:  # torchrun has reported which process failed and how
        return 1
    return 0


class RankSampler(Sampler):
    """Indices of this rank's slice of every global batch of a seeded permutation.

    With world size 1 it is a plain shuffle; with W ranks, rank r takes items [r*b, (r+1)*b) of
    each global batch of W*b, so the union of the ranks' batches is the one-process batch.
    ``generator`` is the loader's: reseeding it (per epoch) reseeds the order.
    """

    def __init__(self, size, local_batch, generator, rank=0, world=1, drop_last=True):
        self.size, self.local, self.generator = size, local_batch, generator
        self.rank, self.world, self.drop_last = rank, world, drop_last

    def __len__(self):
        step = self.local * self.world
        full, rest = divmod(self.size, step)
        tail = 0 if self.drop_last else min(self.local, max(0, rest - self.rank * self.local))
        return full * self.local + tail

    def __iter__(self):
        order = torch.randperm(self.size, generator=self.generator).tolist()
        step = self.local * self.world
        end = self.size - self.size % step if self.drop_last else self.size
        for start in range(self.rank * self.local, end, step):
            yield from order[start:min(start + self.local, end)]


def shard(size):
    """This rank's share of an evaluation set: indices rank, rank + W, ... (every item once overall)."""
    return list(range(rank(), size, world_size())) if active() else list(range(size))


def gather_outputs(indices, outputs, targets):
    """Every rank's (indices, outputs, targets) -> on rank 0 the whole set in index order, elsewhere None."""
    from .tasks.base import concat, rows_of

    if not active():
        return outputs, targets
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (indices, outputs, targets))
    if not is_main():
        return None, None
    order = torch.tensor([i for part in parts for i in part[0]]).argsort()
    return rows_of(concat([p[1] for p in parts]), order), rows_of(concat([p[2] for p in parts]), order)


def broadcast(obj):
    """Rank 0's ``obj`` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(values, device):
    """Sum a list of numbers over the ranks."""
    if not active():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()
