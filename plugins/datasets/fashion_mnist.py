"""`fashion-mnist`: Fashion-MNIST's four IDX files (28x28 grey, 60k train + 10k test), from a local
copy or downloaded on request."""
import gzip
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np

from fashioncli.api import DataError, Imported, download as fetch, hookimpl


@hookimpl
def register_datasets(register):
    register("fashion-mnist", fashion_mnist, detect=_detect_fashion_mnist)


FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# file -> MD5 as published in the zalandoresearch/fashion-mnist README
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
# Label order is the publisher's; '/' and spaces are left out so names are safe as folder names.
FASHION_MNIST_CLASSES = [
    "t-shirt-top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot",
]


def fashion_mnist(source, out, download: Annotated[bool, "fetch the IDX files into SOURCE when absent"] = False):
    """Fashion-MNIST from its IDX files (.gz or not); images are written as PNGs under <out>/images/."""
    root = Path(source)
    samples = []
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = _read_idx(_idx_file(root, f"{prefix}-images-idx3-ubyte", download), ndim=3)
        labels = _read_idx(_idx_file(root, f"{prefix}-labels-idx1-ubyte", download), ndim=1)
        if len(images) != len(labels) or labels.max(initial=0) >= len(FASHION_MNIST_CLASSES):
            raise DataError(f"'{root}': {prefix} images and labels do not match; re-download them")
        # The cache and `fashion predict` read files, so the arrays become ordinary PNGs.
        folder_out = Path(out) / "images" / split
        folder_out.mkdir(parents=True, exist_ok=True)
        paths = [str((folder_out / f"{i:05d}.png").absolute()) for i in range(len(images))]
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda i: cv2.imwrite(paths[i], images[i]), range(len(images))))
        samples.extend((p, FASHION_MNIST_CLASSES[y], split) for p, y in zip(paths, labels.tolist()))
    return Imported(list(FASHION_MNIST_CLASSES), samples)


def _idx_file(root, stem, download):
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    if not download:
        raise DataError(f"'{root}' has no {stem}.gz; pass download=true to fetch Fashion-MNIST there")
    name = stem + ".gz"
    return fetch(FASHION_MNIST_URL + name, root / name, md5=FASHION_MNIST_FILES[name])


def _read_idx(path, ndim):
    """IDX: 2 zero bytes, type 0x08 (uint8), ndim, then ndim big-endian int32 sizes, then data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read '{path}' ({exc}); re-download it") from None
    if len(data) < 4 + 4 * ndim or data[:2] != b"\0\0" or data[2] != 0x08 or data[3] != ndim:
        raise DataError(f"'{path}' is not a {ndim}-d uint8 IDX file")
    shape = tuple(np.frombuffer(data, ">i4", ndim, 4).tolist())
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"'{path}' is truncated ({body.size} of {int(np.prod(shape))} values); re-download it")
    return body.reshape(shape)


def _detect_fashion_mnist(source):
    root = Path(source)
    return 50 if any((root / n).is_file() for n in ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte")) else 0
