"""Nothing waits or grows forever: a FIFO or /dev/zero named like a photo, a recipe server that
trickles, redirects or sends too much, YAML aliases that expand a few bytes into gigabytes and
keys thousands of levels deep all end, quickly, in an error row or a one-line error."""
import csv
import json
import os
import resource
import subprocess
import threading
import time
import tracemalloc
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from helpers import fashion, make_image_folder, tiny_checkpoint, write_images

from fashioncli.download import DEADLINE_ENV
from fashioncli.errors import RecipeError
from fashioncli.recipe import MAX_BYTES, bundled_dir, load_recipe
from fashioncli.userfiles import MAX_BYTES as MAX_FILE_BYTES

LEAF = {"data": {"root": "somewhere"}, "model": {"name": "timm", "args": {"backbone": "test_resnet"}}}


def _limit_memory():
    """In the command's process: 4 GiB of address space, so a read of /dev/zero that a regression
    lets grow fails in seconds instead of taking the machine's memory."""
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


# What each special file must be reported as; write_specials makes them.
SPECIAL = {"x.jpg": "not a regular file (a FIFO)", "y.jpg": "not a regular file (a character device)",
           "z.jpg": "file larger than 256 MiB"}


def write_specials(folder):
    os.mkfifo(folder / "x.jpg")  # opening it would wait for a writer that never comes
    os.symlink("/dev/zero", folder / "y.jpg")  # endless zeros
    with open(folder / "z.jpg", "wb") as f:  # sparse: no disk used, but larger than any read allowed
        f.truncate(MAX_FILE_BYTES + 1)


def run_bounded(*args, timeout=120):
    """`fashion ARGS` with 4 GiB of address space; fails (and kills it) if it still runs after ``timeout``."""
    process = fashion(*args, preexec_fn=_limit_memory)
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"`fashion {args[0]}` still waiting after {timeout} s")
    assert process.returncode == 0, err[-3000:]


def test_predict_gives_a_fifo_dev_zero_and_a_huge_file_an_error_row(tmp_path, tally):
    folder = tmp_path / "photos"
    good = write_images(folder, 2)
    write_specials(folder)
    tally.tried(len(SPECIAL))
    out = tmp_path / "predictions.csv"
    run_bounded("predict", tiny_checkpoint(tmp_path), folder, "-o", out, "--workers", "2")
    with open(out, newline="", encoding="utf-8") as f:
        errors = {os.path.basename(r["path"]): r["error"] for r in csv.DictReader(f)}
    assert errors == {**{p.name: "" for p in good}, **SPECIAL}


def test_prepare_reports_a_fifo_dev_zero_and_a_huge_file(tmp_path, tally):
    src = make_image_folder(tmp_path / "src", per_class=4, size=16)
    write_specials(src / "red")
    tally.tried(len(SPECIAL))
    run_bounded("prepare", src, tmp_path / "prepared", "--image-size", "16")
    report = json.loads((tmp_path / "prepared" / "report.json").read_text(encoding="utf-8"))
    assert {os.path.basename(p["path"]): p["reason"] for p in report["problems"]} == SPECIAL


# -- recipes over http, from 127.0.0.1 only -------------------------------------
class _Handler(BaseHTTPRequestHandler):
    """Serves the server's ``routes``: {path: bytes, ("redirect", url), ("trickle", bytes) one byte a
    second, or ("unsized", bytes) without a Content-Length}; records each requested path."""

    def do_GET(self):
        self.server.requested.append(self.path)
        route = self.server.routes.get(self.path)
        kind, body = route if isinstance(route, tuple) else ("plain", route)
        if body is None:
            self.send_error(404)
        elif kind == "redirect":
            self.send_response(302)
            self.send_header("Location", body)
            self.end_headers()
        else:
            self.send_response(200)
            if kind != "unsized":
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if kind == "trickle":
                self._trickle(body)
            else:
                self.wfile.write(body)
            self.close_connection = True

    def _trickle(self, body):
        for i in range(len(body)):  # bounded: at most len(body) seconds, less once the client leaves
            try:
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
            except OSError:
                return
            time.sleep(1)

    def log_message(self, *args):
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads, block_on_close = True, False


@contextmanager
def serve(routes):
    server = _Server(("127.0.0.1", 0), _Handler)
    server.routes, server.requested = {k: (v if isinstance(v, tuple) else (
        "plain", v if isinstance(v, bytes) else yaml.safe_dump(v).encode())) for k, v in routes.items()}, []
    server.url = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_trickling_recipe_server_meets_a_deadline(monkeypatch, tally):
    monkeypatch.setenv(DEADLINE_ENV, "3")
    tally.tried()
    with serve({"/slow.yaml": ("trickle", yaml.safe_dump(LEAF).encode())}) as server:
        start = time.monotonic()
        with pytest.raises(RecipeError, match=r"slow.yaml'.*no complete answer within 3 s"):
            load_recipe(f"{server.url}/slow.yaml", validate_components=False)
        assert time.monotonic() - start < 6


@pytest.mark.parametrize("where", ["url", "unsized url", "file"])
def test_a_recipe_over_the_limit_is_refused_not_cut(where, tmp_path, tally):
    # Valid YAML whose last key lies past the limit: cut, it would load without it.
    text = yaml.safe_dump(LEAF).encode() + b"#" * MAX_BYTES + b"\ntrain: {epochs: 7}\n"
    tally.tried()
    if where == "file":
        (tmp_path / "big.yaml").write_bytes(text)
        with pytest.raises(RecipeError, match="big.yaml': file larger than 4 MiB"):
            load_recipe(tmp_path / "big.yaml", validate_components=False)
        return
    with serve({"/big.yaml": ("unsized", text) if where == "unsized url" else text}) as server:
        with pytest.raises(RecipeError, match=r"big.yaml': larger than 4 MiB \(refused, not cut\)"):
            load_recipe(f"{server.url}/big.yaml", validate_components=False)


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1:9/x.yaml"])
def test_redirects_go_to_http_only(target, tally):
    tally.tried()
    with serve({"/r.yaml": ("redirect", target)}) as server:
        with pytest.raises(RecipeError, match=f"redirect to '{target}' refused: only http"):
            load_recipe(f"{server.url}/r.yaml", validate_components=False)


@pytest.mark.parametrize("base", ["/etc/passwd", "file:///etc/passwd", "~/.bashrc", "_base/../../../../etc/passwd"])
def test_a_remote_recipe_reads_no_local_file(base, tally):
    tally.tried()
    with serve({"/leaf.yaml": {**LEAF, "base": base}}) as server:
        # Absolute paths are refused; a relative one (even through a bundled folder's name) is the server's.
        refused = "not local files" if "_base" not in base else f"'{server.url}/etc/passwd': HTTP 404"
        with pytest.raises(RecipeError, match=refused):
            load_recipe(f"{server.url}/leaf.yaml", validate_components=False)


def test_a_remote_recipe_takes_bundled_bases_and_its_own_relative_ones(tmp_path, monkeypatch, tally):
    (tmp_path / "x.yaml").write_text("train: {epochs: 9}\n")  # a local decoy: never read
    monkeypatch.chdir(tmp_path.joinpath("work").mkdir() or tmp_path / "work")
    bundled = yaml.safe_load((bundled_dir() / "_base" / "classification.yaml").read_text(encoding="utf-8"))
    routes = {"/r/leaf.yaml": {**LEAF, "base": ["_base/classification.yaml", "a.yaml", "b.yaml"]},
              "/r/a.yaml": {"base": "../x.yaml", "description": "a"}, "/r/b.yaml": {"base": "../x.yaml"},
              "/x.yaml": {"train": {"epochs": 4}}}
    tally.tried()
    with serve(routes) as server:
        recipe = load_recipe(f"{server.url}/r/leaf.yaml", validate_components=False)
    assert recipe["train"]["epochs"] == 4 and recipe["description"] == "a"
    assert recipe["optimizer"].items() >= bundled["optimizer"].items() and recipe["loss"] == bundled["loss"]
    assert sorted(server.requested) == ["/r/a.yaml", "/r/b.yaml", "/r/leaf.yaml", "/x.yaml"]  # each once


# -- YAML that grows ---------------------------------------------------------------
# 9**9 'lol's from about 500 bytes: each level an alias of the one before, nine times.
LAUGHS = "{" + ", ".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i > 1 else 'lol'] * 9)}]"
                         for i in range(1, 10)) + "}"
EXPANDING = {
    "laughs": f"data: {{root: x, prepare: {{args: {LAUGHS}}}}}",
    "self-reference": "data: {root: x, prepare: {args: &a [*a]}}",  # nests forever once written out
    "deep": "data: {root: x, prepare: {args: " + "[" * 60 + "]" * 60 + "}}",
}


@pytest.mark.parametrize("case", [*EXPANDING, "laughs in --set"])
def test_yaml_that_expands_is_refused_quickly_in_bounded_memory(case, tmp_path, tally):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"model": LEAF["model"]}) + EXPANDING.get(case, "data: {root: x}") + "\n")
    sets = [f"data.prepare.args={LAUGHS}"] if case == "laughs in --set" else []
    tally.tried()
    tracemalloc.start()
    start = time.monotonic()
    try:
        with pytest.raises(RecipeError, match="expands to more than|nests deeper than"):
            load_recipe(path, sets, validate_components=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - start < 5 and peak < 50 << 20


def test_a_key_thousands_of_levels_deep_is_a_one_line_error(tally):
    key = ".".join(["a"] * 3000)
    tally.tried()
    with pytest.raises(RecipeError, match="the key has 3000 levels; recipes nest at most"):
        load_recipe("quickstart", [f"{key}=1"], validate_components=False)
    process = fashion("recipes", "quickstart", "--set", f"{key}=1")
    out, err = process.communicate(timeout=120)
    assert process.returncode != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err[-2000:]
