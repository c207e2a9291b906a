"""`clothing-dataset`: alexeygrigorev's clothing dataset (full: images.csv + images/; small: class
folders), from a local copy or downloaded on request."""
import shutil
from pathlib import Path
from typing import Annotated

from fashioncli.api import DataError, Imported, download as fetch, extract, hookimpl, read_table

from .folder import folder


@hookimpl
def register_datasets(register):
    register("clothing-dataset", clothing_dataset, detect=_detect_clothing_full)


# GitHub publishes no checksum for these archives; download() then checks the zip's CRCs.
CLOTHING_URLS = {
    "small": "https://github.com/alexeygrigorev/clothing-dataset-small/archive/refs/heads/master.zip",
    "full": "https://github.com/alexeygrigorev/clothing-dataset/archive/refs/heads/master.zip",
}
# Annotators' non-answers in the full set's label column, not classes.
CLOTHING_NON_LABELS = {"Not sure", "Skip"}


def clothing_dataset(
    source,
    download: Annotated[bool, "fetch the dataset into SOURCE when it is not there"] = False,
    variant: Annotated[str, "which set to download: small (train/validation/test folders) or full (images.csv)"] = "small",
):
    """alexeygrigorev's clothing dataset: the full set (images.csv) or the small set (train/validation/test)."""
    root = Path(source)
    if not root.exists():
        if not download:
            raise DataError(f"'{root}' not found; pass download=true to fetch the {variant} clothing dataset there")
        _download_clothing(root, variant)
    if (root / "images.csv").is_file():
        return _clothing_full(root)
    return folder(root)


def _download_clothing(root, variant):
    if variant not in CLOTHING_URLS:
        raise DataError(f"variant must be one of {', '.join(CLOTHING_URLS)}, not '{variant}'")
    archive = fetch(CLOTHING_URLS[variant], root.with_name(root.name + ".zip"))
    staging = root.with_name(root.name + ".extracting")
    shutil.rmtree(staging, ignore_errors=True)
    extract(archive, staging)
    inner = [p for p in staging.iterdir() if p.is_dir()]  # GitHub archives hold one <repo>-<branch>/
    if len(inner) != 1:
        raise DataError(f"'{archive}' does not hold the expected single folder; delete it and rerun")
    inner[0].rename(root)
    shutil.rmtree(staging)
    archive.unlink()


def _clothing_full(root):
    columns = read_table(root / "images.csv")
    if not {"image", "label"} <= set(columns):
        raise DataError(f"'{root / 'images.csv'}' needs columns image,label (has: {', '.join(columns)})")
    samples, problems = [], []
    for image_id, label in zip(columns["image"], columns["label"]):
        path = str((root / "images" / f"{image_id}.jpg").absolute())
        if label in CLOTHING_NON_LABELS or not label:
            problems.append({"path": path, "reason": f"label '{label}' is not a class (dropped)",
                             "kind": "label is not a class"})
        else:
            samples.append((path, label, None))
    return Imported(sorted({label for _, label, _ in samples}), samples, problems)


def _detect_clothing_full(source):
    root = Path(source)
    return 50 if (root / "images.csv").is_file() and (root / "images").is_dir() else 0
