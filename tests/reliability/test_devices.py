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
    assert result.stderr.strip() == (f"Error: train.device '{device}' is not a device name; "
                                     f"use auto, cpu, cuda, cuda:N or mps (devices present: {PRESENT})")
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
