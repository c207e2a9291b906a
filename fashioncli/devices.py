"""Device names (--device, train.device): the one place they are checked against this machine.

torch accepts any device name it was built to know and fails only at the first tensor moved
there, with a traceback; here a name is refused up front with the devices this machine has.
torch is imported only to look (without it only 'cpu' is present), so the ONNX engine can check names.
GPU indices as Ultralytics takes them are accepted too: '0' is cuda:0, '0,1' GPUs 0 and 1 (a
training process each; a command that runs on one device refuses several).
"""
import re

from .errors import DeviceError

FORMS = "auto, cpu, cuda, cuda:N, mps or GPU indices (0 or 0,1)"
_NAME = re.compile(r"(auto|cpu|mps|cuda(:\d+)?|\d+(,\d+)*)\Z")


def present():
    """The devices this process can use -> ['cpu', 'cuda:0', ..., 'mps']."""
    try:
        import torch
    except ImportError:
        return ["cpu"]
    found = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def check_name(device, what="device"):
    """Refuse a string that is no device name (tpu, gpu, cuda:x, ''), listing the accepted forms -> device."""
    if not isinstance(device, str) or not _NAME.match(device):
        have = ", ".join(present())
        raise DeviceError(f"{what} '{device}' is not a device name; use {FORMS} (devices present: {have})")
    return device


def gpu_ids(device):
    """The GPU indices a name like '0' or '0,1' lists -> [0, 1]; None for any other name."""
    if isinstance(device, str) and device[:1].isdigit():
        return [int(i) for i in device.split(",")]
    return None


def check(device="auto", several=False):
    """Refuse a device that is malformed or not on this machine -> the name ('auto': the best present;
    '1': 'cuda:1'). Several GPUs ('0,1') only with ``several`` (a process each), -> 'cuda': each
    process takes its own (distributed.setup)."""
    if device is None or check_name(device) == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    have = present()
    wanted = [f"cuda:{i}" for i in gpu_ids(device) or []] or [device + ":0" if device == "cuda" else device]
    if len(set(wanted)) < len(wanted):
        raise DeviceError(f"device '{device}' lists a GPU twice")
    if not set(wanted) <= set(have):
        raise DeviceError(f"device '{device}' is not available here; devices present: {', '.join(have)}")
    if len(wanted) > 1:
        if not several:
            raise DeviceError(f"device '{device}' names {len(wanted)} GPUs; this command runs on one: give one, "
                              f"e.g. {gpu_ids(device)[0]}")
        return "cuda"
    return wanted[0] if gpu_ids(device) else device


def resolve_device(device="auto"):
    """check() as a torch.device."""
    import torch

    return torch.device(check(device))
