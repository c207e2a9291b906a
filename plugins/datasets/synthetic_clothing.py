"""`synthetic-clothing`: a small clothing dataset drawn on the spot, so the quickstart needs no download."""
from pathlib import Path

import cv2
import numpy as np

from fashioncli.api import DataError, Imported, hookimpl

from .synthetic_garments import CLASSES, draw_garment

NAMES = ("synthetic", "synthetic-clothing")


@hookimpl
def register_datasets(register):
    register("synthetic-clothing", synthetic_clothing, detect=_detect)


def synthetic_clothing(source, out, per_class=100, size=96, data_seed=0):
    """Draw per_class JPEGs of each of 6 garments at size x size into <out>/images/<class>/ (no download)."""
    if int(per_class) < 1 or int(size) < 32:
        raise DataError("synthetic-clothing needs per_class >= 1 and size >= 32")
    samples = []
    for label, name in enumerate(CLASSES):
        folder = Path(out).absolute() / "images" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(int(per_class)):
            rng = np.random.default_rng([int(data_seed), label, i])  # independent of drawing order
            path = folder / f"{name}_{i:04d}.jpg"
            image = draw_garment(name, int(size), rng)
            quality = int(rng.integers(70, 96))
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
            samples.append((str(path), name, None))
    return Imported(list(CLASSES), samples)


def _detect(source):
    return 100 if str(source) in NAMES and not Path(str(source)).exists() else 0
