"""predict on the CPU: intra-op threads, decoding threads and how far decoding runs ahead,
and the memory layout the checkpoint engine runs in. Behaviour only; speed is benchmarks/' job."""
import os
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fashioncli.checkpoint import load_model, save_checkpoint
from fashioncli.cli import cli
from fashioncli.export import export
from fashioncli.engines import CheckpointEngine, Engine, open_engine
from fashioncli.predict import predict
from helpers import tiny_checkpoint, write_images


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("threads")
    ckpt = tiny_checkpoint(root)
    write_images(root / "images", 7)
    return ckpt, root / "images"


@pytest.fixture
def torch_threads():
    """Engines set torch's process-wide thread count: put it back after each test."""
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def plan(monkeypatch, cores, cpu_threads, workers=None):
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    engine = Engine.__new__(Engine)  # decode_plan needs nothing but cpu_threads
    engine.cpu_threads = cpu_threads
    return engine.decode_plan(workers)


def test_decode_plan(monkeypatch):
    # A GPU does the compute: decode ahead on every core.
    assert plan(monkeypatch, 8, None) == (8, 2, False)
    assert plan(monkeypatch, 8, None, workers=3) == (3, 2, False)
    # The model has every core: one thread decodes ahead in the background, at the lowest priority.
    assert plan(monkeypatch, 2, 2) == (1, 2, True)
    assert plan(monkeypatch, 2, 2, workers=2) == (2, 2, True)
    # Cores left free: decoding runs ahead on those, at the normal priority.
    assert plan(monkeypatch, 8, 6) == (2, 2, False)
    assert plan(monkeypatch, 8, 6, workers=2) == (2, 2, False)
    assert plan(monkeypatch, 8, 6, workers=4) == (4, 2, True)
    # 0: one thread, decoding in turn with the model (as a DataLoader's num_workers=0).
    assert plan(monkeypatch, 8, None, workers=0) == plan(monkeypatch, 8, 6, workers=0) == (1, 0, False)


def test_a_batch_is_never_kept_waiting_on_a_starved_decoder(setup):
    """What no decoding thread has started when its batch is due, the caller decodes itself."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from fashioncli.engines import _collect

    _, images = setup
    paths = sorted(str(p) for p in images.iterdir())
    starved = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(starved.wait, 10)  # the only decoding thread gets no time at all
        futures = [pool.submit(lambda: pytest.fail("decoded by the starved thread")) for _ in paths]
        start = time.perf_counter()
        got, batch, errors = _collect(paths, futures, 32)
        assert time.perf_counter() - start < 5
        starved.set()
    assert got == paths and batch.shape == (len(paths), 3, 32, 32) and errors == [""] * len(paths)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="threads have priorities of their own on Linux")
def test_background_decoders_run_at_the_lowest_priority_and_only_they():
    import threading

    from fashioncli.threads import LOWEST_PRIORITY, background_thread, thread_priority

    before = thread_priority()
    seen = []

    def worker():
        background_thread()
        seen.append(thread_priority())

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [LOWEST_PRIORITY] and thread_priority() == before


def test_openmp_threads_sleep_when_they_wait(monkeypatch):
    """fashioncli asks OpenMP for passive waiting before torch loads; a user's own setting stands."""
    import subprocess

    from fashioncli.threads import passive_openmp

    code = "import os, fashioncli, torch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert subprocess.check_output([sys.executable, "-c", code], env=env, text=True).strip() == "PASSIVE"
    assert "torch" in sys.modules  # too late to change anything: it only says what applies
    assert passive_openmp({"OMP_WAIT_POLICY": "active"}) is False and passive_openmp({"OMP_WAIT_POLICY": "passive"})
    monkeypatch.delitem(sys.modules, "torch")
    environ = {}
    assert passive_openmp(environ) is True and environ == {"OMP_WAIT_POLICY": "PASSIVE"}
    environ = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert passive_openmp(environ) is False and environ == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_threads_option_sets_the_engines_threads(setup, torch_threads):
    ckpt, _ = setup
    engine = CheckpointEngine(ckpt, device="cpu", threads=1)
    assert torch.get_num_threads() == 1 and engine.cpu_threads == 1
    assert CheckpointEngine(ckpt, device="cpu").cpu_threads == torch.get_num_threads()


def test_onnx_engine_threads(setup, tmp_path):
    ckpt, images = setup
    onnx = export(ckpt, "onnx", out=tmp_path / "m.onnx", check_images=images)["path"]
    assert open_engine(onnx, device="cpu", threads=1).cpu_threads == 1
    assert open_engine(onnx, device="cpu").cpu_threads >= 1


@pytest.mark.parametrize("cores", [1, 4])  # 1: decode then run each batch; 4: decode runs ahead
def test_rows_do_not_depend_on_the_decode_plan(setup, tmp_path, monkeypatch, torch_threads, cores):
    ckpt, images = setup
    reference = predict(ckpt, [images], tmp_path / "ref.csv", batch_size=3, threads=1, num_workers=1)
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    summary = predict(ckpt, [images], tmp_path / "plan.csv", batch_size=3, threads=1)
    assert summary["rows"] == reference["rows"] == 7
    assert (tmp_path / "plan.csv").read_text() == (tmp_path / "ref.csv").read_text()


def checkpoint_with(root, ckpt, channels_last):
    model, meta = load_model(ckpt)
    meta["recipe"] = {"train": {"channels_last": channels_last}}
    save_checkpoint(root / f"cl-{channels_last}.pt", model, meta)
    return root / f"cl-{channels_last}.pt"


def test_checkpoint_engine_runs_in_the_recipes_memory_format(setup, tmp_path, torch_threads):
    ckpt, _ = setup
    engines = {cl: CheckpointEngine(checkpoint_with(tmp_path, ckpt, cl), device="cpu") for cl in (True, False)}
    assert engines[True].memory_format is torch.channels_last
    assert engines[False].memory_format is torch.contiguous_format
    conv = next(m for m in engines[True].model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    images = np.random.default_rng(0).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    np.testing.assert_allclose(engines[True].run(images), engines[False].run(images), atol=1e-5)


@pytest.mark.parametrize("option, value", [("--threads", "0"), ("--workers", "-1")])
def test_cli_refuses_impossible_thread_counts(setup, tmp_path, option, value):
    ckpt, images = setup
    result = CliRunner().invoke(cli, ["predict", str(ckpt), str(images), "-o", str(tmp_path / "p.csv"), option, value])
    assert result.exit_code == 2 and option in result.output


def test_cli_threads_and_workers(setup, tmp_path, torch_threads):
    ckpt, images = setup
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(cli, ["predict", str(ckpt), str(images), "-o", str(out), "--threads", "1",
                                      "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 8  # header + 7 rows
