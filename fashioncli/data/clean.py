"""The checks every task's prepare applies to an importer's samples: split names and bounding boxes."""
from .images import ImageError, check_box, format_box
from .importing import normalize_split


def checked_samples(imported, problems, boxes=True):
    """(path, label, split or None, box or None) per imported sample, its split normalised; a
    sample with an invalid box or an unknown split becomes one of ``problems`` instead.

    The same path with two boxes is two samples (two garments of one photo). boxes=False: every
    image whole, the importer's boxes unread (a task that cannot crop, e.g. masks of whole images).
    """
    given = imported.boxes if boxes and imported.boxes is not None else [None] * len(imported.samples)
    for (path, label, split), box in zip(imported.samples, given):
        try:
            box = check_box(box)
        except ImageError as exc:
            problems.append({"path": path, "reason": str(exc)})
            continue
        if split and normalize_split(split) is None:
            problems.append({"path": path, "reason": f"unknown split '{split}' (use train/val/test)"})
            continue
        yield path, label, normalize_split(split) if split else None, box


def listed_twice(box):
    """The start of the problem a repeated sample (the same path and box) gets."""
    return "listed twice" + (f" with box {format_box(box)}" if box is not None else "")
