"""Small data and models the tests make for themselves."""
import numpy as np
import torch

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
