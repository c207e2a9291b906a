"""The foundation's acceptance run on ../shared/datasets/clothing-small (slow: about 10-15 minutes on 2 cores).

    python -m pytest -m slow tests/test_real_clothing_small.py
"""
import csv
import json

import pytest
from click.testing import CliRunner

from conftest import shared_dataset
from fashioncli.cli import cli

pytestmark = pytest.mark.slow


def test_finetune_efficientnet_lite0_reaches_092_on_test(tmp_path, monkeypatch):
    source = shared_dataset("clothing-small")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def ok(*args):
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    ok("prepare", str(source), "data/clothing-small")
    ok("train", "efficientnet_lite0_finetune_clothing-small", "-q")
    run = tmp_path / "runs" / "efficientnet_lite0_finetune_clothing-small"
    summary = json.loads(ok("eval", str(run), "--split", "test"))
    print("test metrics:", json.dumps(summary["metrics"], indent=1)[:600])
    assert summary["metrics"]["accuracy"] >= 0.92

    ok("predict", str(run), str(source / "test"), "-o", "test.csv")
    rows = list(csv.DictReader(open("test.csv")))
    assert len(rows) == 372 and not any(r["error"] for r in rows)
    report = json.loads(ok("export", str(run), "--format", "onnx"))
    assert report["parity"]["top1_agreement"] == 1.0
