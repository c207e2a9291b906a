"""Small data, recipes, models and hostile files the tests make for themselves."""
import io
import os
import struct
import threading
import zlib
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import torch
import yaml

from fashioncli.checkpoint import save_checkpoint

CLASSES = ["red", "green", "blue"]


def make_image_folder(root, classes=("red", "green", "blue"), per_class=12, size=40, splits=None):
    """Class folders of solid-colour noisy images: learnable in one epoch, made in milliseconds."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    colours = {"red": (0, 0, 220), "green": (0, 200, 0), "blue": (220, 0, 0)}
    for split in splits or [None]:
        for c in classes:
            folder = root / split / c if split else root / c
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                img = np.clip(np.array(colours.get(c, (128, 128, 128))) + rng.normal(0, 30, (size, size, 3)), 0, 255)
                cv2.imwrite(str(folder / f"{c}_{i}.png"), img.astype(np.uint8))
    return root


def tiny_checkpoint(root, image_size=32, data_root=None):
    """<root>/run/checkpoints/best.pt holding timm's test_resnet (~0.4 M parameters)."""
    from fashioncli import create_model

    torch.manual_seed(0)
    model = create_model("timm", backbone="test_resnet", num_classes=len(CLASSES))
    with torch.no_grad():  # a sharper head: top-1 is decisive, not a near-tie between random logits
        model.get_classifier().weight.mul_(20)
    meta = {
        "task": "classification", "classes": CLASSES, "epoch": 1,
        "model": {"name": "timm", "args": {"backbone": "test_resnet", "pretrained": False}},
        "preprocessing": {"image_size": image_size, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "resize": "squash"},
        "recipe": {"data": {"root": str(data_root)}} if data_root else {},
    }
    path = root / "run" / "checkpoints" / "best.pt"
    save_checkpoint(path, model, meta)
    return path


def write_images(folder, n, seed=0):
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        paths.append(folder / f"img_{i}.png")
        cv2.imwrite(str(paths[-1]), rng.integers(0, 256, (40 + i, 48, 3), dtype=np.uint8))
    return paths


def recipe_file(tmp_path, data_root, **overrides):
    """<tmp_path>/tiny.yaml: test_resnet at 32 px for 2 epochs; ``train__epochs=3`` sets train.epochs."""
    data = {
        "data": {"root": str(data_root), "image_size": 32, "batch_size": 8, "num_workers": 0},
        "model": {"name": "timm", "args": {"backbone": "test_resnet"}},
        "optimizer": {"name": "adam", "lr": 3e-3},
        "train": {"epochs": 2, "channels_last": False},
        "output": {"dir": str(tmp_path / "runs")},
    }
    for dotted, value in overrides.items():
        node = data
        *head, last = dotted.split("__")
        for part in head:
            node = node.setdefault(part, {})
        node[last] = value
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def bomb_png(width=50000, height=50000):
    """A 1x1 PNG whose header claims width x height pixels (CRC fixed, so only the size is a lie)."""
    import cv2

    png = bytearray(cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))[1].tobytes())
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


# The file names write_hostile_images uses for the inputs that must be reported and skipped.
UNREADABLE = "unreadable.jpg"


def write_hostile_images(folder):
    """Every awkward kind of image file -> {name: "ok" (decoded: converted, rotated) or "bad"
    (reported and skipped)}. One name is not valid UTF-8; ``UNREADABLE`` is chmod 000, which
    does not stop root: tests running as root must make its reads fail themselves."""
    import cv2
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (24, 16, 3), dtype=np.uint8)  # taller than wide: a rotation shows

    def pil(mode, fmt="PNG", **kw):
        buf = io.BytesIO()
        Image.fromarray(rgb).convert(mode).save(buf, fmt, **kw)
        return buf.getvalue()

    png = cv2.imencode(".png", rgb)[1].tobytes()
    noisy_jpeg = cv2.imencode(".jpg", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))[1].tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    files = {
        "empty.jpg": (b"", "bad"),
        "truncated.jpg": (noisy_jpeg[:-300], "bad"),
        "text.jpg": (b"this is a text file, not an image", "bad"),
        "bomb.png": (bomb_png(), "bad"),
        UNREADABLE: (png, "bad"),
        "png_named.jpg": (png, "ok"),
        "cmyk.jpg": (pil("CMYK", "JPEG"), "ok"),
        "gray16.png": (cv2.imencode(".png", rgb[..., 0].astype(np.uint16) * 257)[1].tobytes(), "ok"),
        "gray.png": (pil("L"), "ok"),
        "rgba.png": (pil("RGBA"), "ok"),
        "palette.png": (pil("P"), "ok"),
        "exif_rotated.jpg": (pil("RGB", "JPEG", exif=exif.tobytes()), "ok"),
        "one_pixel.png": (cv2.imencode(".png", rgb[:1, :1])[1].tobytes(), "ok"),
        os.fsdecode(b"latin1_\xe9.png"): (png, "ok"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    os.chmod(folder / UNREADABLE, 0)
    os.symlink("loop.jpg", folder / "loop.jpg")  # a link to itself: ELOOP on open
    os.symlink(".", folder / "again")  # a folder loop: walked once
    return {**{name: outcome for name, (_, outcome) in files.items()}, "loop.jpg": "bad"}


def fashion(*args, **popen):
    """`python -m fashioncli ARGS` as a real process (one thread: steady timing, same numerics)."""
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", **popen.pop("env", {})}
    return subprocess.Popen([sys.executable, "-m", "fashioncli", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def finish(process, timeout=300):
    """Wait for a fashion() process -> its stdout; fails with its stderr when it did not exit 0."""
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return out


def kill_when(process, ready, delay=0.0, timeout=120):
    """SIGKILL ``process`` ``delay`` seconds after ``ready()`` first holds -> True if it was still running."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the process never got ready to be killed"
        time.sleep(0.005)
    time.sleep(delay)
    alive = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.communicate()
    return alive


class _FileHandler(BaseHTTPRequestHandler):
    """Serves its server's ``files`` with Range support; a path in ``cut`` sends half once, then hangs up."""

    def do_GET(self):
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        wanted = self.headers.get("Range")
        self.server.ranges.append(wanted)
        start = int(wanted.split("=")[1].split("-")[0]) if wanted else 0
        body = body[start:]
        self.send_response(206 if wanted else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.server.cut:
            self.server.cut.discard(self.path)
            body = body[:len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def file_server(files, cut=()):
    """An HTTP server on 127.0.0.1 (tests never reach the network) serving ``files`` ({"/path": bytes})
    -> the server: ``.url``, ``.ranges`` (the Range header of each request); see _FileHandler for ``cut``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FileHandler)
    server.files, server.cut, server.ranges = files, set(cut), []
    server.url = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def snapshot(folder):
    """{relative path: bytes} of every file under ``folder``: two equal snapshots are a byte-identical tree."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def stop_then_resume(spec, run, monkeypatch):
    """Train ``spec`` until its first epoch is reported, stop it there (KeyboardInterrupt), then
    resume ``run`` from its saved recipe -> the resumed run's summary."""
    from fashioncli.recipe import load_recipe
    from fashioncli.train import Trainer, train

    report = Trainer.report

    def stop_after_first_epoch(self, row, best):
        report(self, row, best)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "report", stop_after_first_epoch)
    try:
        train(load_recipe(spec), spec=spec, progress=False)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the run was not stopped after its first epoch")
    monkeypatch.setattr(Trainer, "report", report)
    return train(load_recipe(run / "recipe.yaml"), spec=run / "recipe.yaml", resume=True, progress=False)
