"""Devices this machine lacks (cuda, cuda:99, mps) and names no torch knows (tpu, cuda:x, ''), given
to train, eval and predict: one error line naming the devices present, no traceback, nothing written."""
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from helpers import fashion, recipe_file, tiny_checkpoint, write_images

from fashioncli import devices
from fashioncli.cli import cli
from fashioncli.errors import DeviceError
from fashioncli.engines import _ort_providers

PRESENT = ", ".join(devices.present())  # 'cpu' here; 'cpu, cuda:0, ...' on a GPU machine
ABSENT = [
    pytest.param("cuda", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")),
    "cuda:99",
    pytest.param("mps", marks=pytest.mark.skipif(torch.backends.mps.is_available(), reason="mps is present")),
]
MALFORMED = ["tpu", "gpu", "cuda:x", "CUDA", ""]


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_prepared):
    return tiny_checkpoint(tmp_path_factory.mktemp("devices"), data_root=tiny_prepared)


def one_line_error(result):
    """exit 1, and stderr is one 'Error:' line (a traceback leaves no such line and a non-SystemExit)."""
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: "), line
    return line


def commands(model, data, tmp_path, device):
    image = write_images(tmp_path / "images", 1)[0]
    spec = recipe_file(tmp_path, data)
    return {
        "train": ["train", spec, "-q", "--set", f"train.device='{device}'"],
        "eval": ["eval", model, "--device", device, "-o", tmp_path / "eval"],
        "predict": ["predict", model, image, "-o", tmp_path / "preds.csv", "--device", device],
    }


@pytest.mark.parametrize("verb", ["train", "eval", "predict"])
@pytest.mark.parametrize("device", ABSENT + ["tpu"])
def test_a_device_not_here_is_one_line_naming_the_devices_present(model, tiny_prepared, tmp_path, verb, device,
                                                                  tally):
    tally.tried()
    command = commands(model, tiny_prepared, tmp_path, device)[verb]
    line = one_line_error(CliRunner().invoke(cli, [str(a) for a in command]))
    assert f"'{device}' is not " in line and PRESENT in line, line
    assert not {"runs", "eval", "preds.csv"} & {p.name for p in tmp_path.iterdir()}  # refused before any work


@pytest.mark.parametrize("device", MALFORMED)
def test_a_malformed_train_device_is_refused_by_key_with_the_accepted_forms(model, tiny_prepared, tmp_path, device,
                                                                             tally):
    tally.tried()
    result = CliRunner().invoke(cli, [str(a) for a in commands(model, tiny_prepared, tmp_path, device)["train"]])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.stderr.strip() == (f"Error: train.device '{device}' is not a device name; use auto, cpu, "
                                     f"cuda, cuda:N, mps or GPU indices (0 or 0,1) (devices present: {PRESENT})")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("verb", ["train", "eval", "predict"])
def test_a_real_process_prints_one_line_and_no_traceback(model, tiny_prepared, tmp_path, verb, tally):
    tally.tried()
    process = fashion(*commands(model, tiny_prepared, tmp_path, "cuda:99")[verb])
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1 and err.splitlines() == [
        f"Error: device 'cuda:99' is not available here; devices present: {PRESENT}"], err


@pytest.mark.parametrize("device", ["cuda:99", "tpu", ""])
def test_onnx_devices_are_checked_the_same_way(device, tally):
    tally.tried()
    with pytest.raises(DeviceError, match=rf"devices present: {PRESENT}"):
        _ort_providers(SimpleNamespace(get_available_providers=lambda: ["CPUExecutionProvider"]), device)


def test_gpus_present_are_listed_and_auto_still_picks_the_best(monkeypatch, tally):
    tally.tried(2)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert [devices.check(d) for d in ("auto", "cpu", "cuda", "cuda:1")] == ["cuda", "cpu", "cuda", "cuda:1"]
    for device in ("cuda:2", "mps"):
        with pytest.raises(DeviceError) as error:
            devices.check(device)
        assert str(error.value) == f"device '{device}' is not available here; devices present: cpu, cuda:0, cuda:1"


NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")


@NO_GPU
@pytest.mark.parametrize("verb", ["train", "eval", "predict"])
@pytest.mark.parametrize("device", ["cuda", "0", "0,1"])
def test_gpus_asked_for_by_name_or_index_without_a_gpu_are_one_line(model, tiny_prepared, tmp_path, verb, device,
                                                                   tally):
    """`--device cuda`, and Ultralytics' `--device 0` / `0,1` (train takes --device too), on a machine
    without a GPU: the same one line for every verb."""
    tally.tried()
    command = commands(model, tiny_prepared, tmp_path, device)[verb]
    if verb == "train":
        command = [*command[:3], "--device", device]
    line = one_line_error(CliRunner().invoke(cli, [str(a) for a in command]))
    assert line == f"Error: device '{device}' is not available here; devices present: cpu"
    assert not {"runs", "eval", "preds.csv"} & {p.name for p in tmp_path.iterdir()}


@NO_GPU
@pytest.mark.parametrize("args", [["--devices", "2", "--set", "train.device=cuda"], ["--device", "0,1"]])
def test_several_processes_on_absent_gpus_are_refused_before_any_starts(tiny_prepared, tmp_path, args, tally):
    """torchrun would start the processes, each would fail, and torchrun would print ~45 lines."""
    tally.tried()
    result = CliRunner().invoke(cli, ["train", str(recipe_file(tmp_path, tiny_prepared)), "-q", *args])
    device = args[-1].rpartition("=")[2]
    assert one_line_error(result) == f"Error: device '{device}' is not available here; devices present: cpu"


def test_gpu_indices_name_cuda_devices(monkeypatch, tally):
    from fashioncli.distributed import processes

    tally.tried(3)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert devices.check("0") == "cuda:0" and devices.check("1") == "cuda:1"
    assert devices.check("0,1", several=True) == "cuda"  # each process takes cuda:LOCAL_RANK
    assert devices.gpu_ids("0,1") == [0, 1] and devices.gpu_ids("cuda:1") is None
    with pytest.raises(DeviceError, match="'0,1' names 2 GPUs; this command runs on one: give one, e.g. 0"):
        devices.check("0,1")
    with pytest.raises(DeviceError, match="device '0,2' is not available here; devices present: cpu, cuda:0, cuda:1"):
        devices.check("0,2", several=True)
    assert processes(None, "0,1") == 2 and processes(None, "cuda") == 1 and processes(3, "auto") == 3
    for count, device in ((3, "0,1"), (2, "1")):
        with pytest.raises(Exception, match=f"--devices {count} and device '{device}' .* disagree"):
            processes(count, device)
