"""Device names (--device, train.device): the one place they are checked against this machine.

torch accepts any device name it was built to know and fails only at the first tensor moved
there, with a traceback; here a name is refused up front with the devices this machine has.
torch is imported only to look (without it only 'cpu' is present), so the ONNX engine can check names.
"""
import re

from .errors import DeviceError

FORMS = "auto, cpu, cuda, cuda:N or mps"
_NAME = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)\Z")


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


def check(device="auto"):
    """Refuse a device that is malformed or not on this machine -> the name ('auto': the best present)."""
    if device is None or check_name(device) == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cpu":
        have = present()
        if (device + ":0" if device == "cuda" else device) not in have:
            raise DeviceError(f"device '{device}' is not available here; devices present: {', '.join(have)}")
    return device


def resolve_device(device="auto"):
    """check() as a torch.device."""
    import torch

    return torch.device(check(device))
