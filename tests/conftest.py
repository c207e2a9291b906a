import os
from pathlib import Path

import pytest

# Tests never reach the network: a hub lookup must fail fast, never hang.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def shared_dataset(name):
    """Path of a dataset in ../shared/datasets, or skip the test when it is absent."""
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"{path} is not present")
    return path




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


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory):
    """A prepared 3-class dataset (train/val/test) at 32 px, built by the real `prepare`."""
    from fashioncli.prepare import prepare

    base = tmp_path_factory.mktemp("tiny")
    src = make_image_folder(base / "src", splits=["train", "val", "test"])
    prepare(str(src), str(base / "prepared"), image_size=32)
    return base / "prepared"
