import os
from pathlib import Path

import pytest

from helpers import make_image_folder

# Tests never reach the network: a hub lookup must fail fast, never hang.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Plugins installed on this machine stay out of the suite; a test that wants entry-point plugins
# sets FASHION_LOAD_PLUGINS in the environment of the process it starts.
os.environ["FASHION_LOAD_PLUGINS"] = ""

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def shared_dataset(name):
    """Path of a dataset in ../shared/datasets, or skip the test when it is absent."""
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"{path} is not present")
    return path




@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory):
    """A prepared 3-class dataset (train/val/test) at 32 px, built by the real `prepare`."""
    from fashioncli.prepare import prepare

    base = tmp_path_factory.mktemp("tiny")
    src = make_image_folder(base / "src", splits=["train", "val", "test"])
    prepare(str(src), str(base / "prepared"), image_size=32)
    return base / "prepared"
