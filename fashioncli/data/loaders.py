"""Torch datasets and loaders: uint8 images in workers, float normalisation on the device."""
import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..errors import RecipeError
from .preprocess import resize_rgb


# A segmentation mask's "no label" value: pixels that rotation brings in from outside the image.
MASK_FILL = 255


def build_augment(image_size, augment):
    """Train-time augmentation on uint8 CxHxW tensors (torchvision transforms v2).

    Called as ``t(image)``, or ``t(image, tv_tensors.Mask)`` for segmentation: v2 moves the mask
    with the image (nearest-neighbour, so no blended class values) and leaves its values alone
    under colour jitter."""
    augment = augment or {}
    ops = []
    scale = augment.get("scale")
    if scale:
        ops.append(v2.RandomResizedCrop(image_size, scale=tuple(scale), ratio=tuple(augment.get("ratio", (3 / 4, 4 / 3))), antialias=True))
    if augment.get("hflip", True):
        ops.append(v2.RandomHorizontalFlip())
    if augment.get("rotate"):
        ops.append(v2.RandomRotation(augment["rotate"], fill={tv_tensors.Mask: MASK_FILL, "others": 0}))
    # Search-free policies (timm's --aa rand-m9-n2 / trivial): after the crop, before colour jitter.
    if augment.get("randaugment"):
        ops.append(v2.RandAugment(**augment["randaugment"]))
    if augment.get("trivialaugment"):
        ops.append(v2.TrivialAugmentWide())
    if augment.get("color_jitter"):
        j = augment["color_jitter"]
        ops.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j))
    return v2.Compose(ops) if ops else None


AUTO_AUGMENT = ("randaugment", "trivialaugment")


def check_augment(task, augment):
    """torchvision's RandAugment and TrivialAugmentWide refuse masks: a task whose targets are
    images (``task.spatial_targets``) with either set is a recipe error naming the key, at start."""
    keys = [k for k in AUTO_AUGMENT if (augment or {}).get(k)]
    if keys and task.spatial_targets:
        raise RecipeError(f"data.augment.{keys[0]}: torchvision applies it to images only, not to a "
                          f"{task.name} model's masks; remove it")


class BatchAugment:
    """``build_augment``'s transforms on a whole batch where it is (data.gpu_augment: on the GPU, when
    the loader's CPU workers cannot keep it fed): each image draws its own parameters, as in the
    loader, and a mask target (``masks``) moves with its image."""

    def __init__(self, transform, masks=False):
        self.transform, self.masks = transform, masks

    def __call__(self, images, targets):
        """uint8 N x C x H x W images (any device) and their targets -> the augmented batch."""
        if self.transform is None:
            return images, targets
        if not self.masks:
            return torch.stack([self.transform(x) for x in images]), targets
        pairs = [self.transform(x, tv_tensors.Mask(m)) for x, m in zip(images, targets)]
        return torch.stack([x for x, _ in pairs]), torch.stack([m.as_subclass(torch.Tensor) for _, m in pairs])


class CachedImages(Dataset):
    """Rows of a decoded-once uint8 cache (N,H,W,3) with targets; no JPEG decode per epoch.

    ``labels``: class indices (N,), or {head: array with N rows} for a multi-task model.
    """

    def __init__(self, array, labels, transform=None, image_size=None):
        self.array, self.transform, self.image_size = array, transform, image_size
        self.labels = {k: np.asarray(v) for k, v in labels.items()} if isinstance(labels, dict) else np.asarray(labels)

    def __len__(self):
        return len(next(iter(self.labels.values())) if isinstance(self.labels, dict) else self.labels)

    def target(self, i):
        if isinstance(self.labels, dict):
            return {k: torch.from_numpy(np.asarray(v[i])) for k, v in self.labels.items()}
        return int(self.labels[i])

    def __getitem__(self, i):
        img = np.array(self.array[i])  # a copy: the memmap is read-only and torch wants writable memory
        if self.image_size and img.shape[0] != self.image_size:
            img = resize_rgb(img, self.image_size)
        x = torch.from_numpy(img).permute(2, 0, 1)
        if self.transform is not None:
            x = self.transform(x)
        return x, self.target(i)


class CachedMasks(Dataset):
    """Rows of the image cache with their masks (N,H,W,1 uint8), augmented together.

    Targets are (H, W) int64 class indices (``MASK_FILL`` where unlabelled).
    """

    def __init__(self, array, masks, transform=None):
        if len(array) != len(masks):
            raise ValueError(f"{len(array)} images but {len(masks)} masks")
        self.array, self.masks, self.transform = array, masks, transform

    def __len__(self):
        return len(self.array)

    def __getitem__(self, i):
        x = torch.from_numpy(np.array(self.array[i])).permute(2, 0, 1)
        mask = tv_tensors.Mask(torch.from_numpy(np.array(self.masks[i][..., 0])))
        if self.transform is not None:
            x, mask = self.transform(x, mask)
        return x, mask.as_subclass(torch.Tensor).long()


class FileImages(Dataset):
    """Image files decoded on the fly; an unreadable file yields a blank image and its error."""

    def __init__(self, paths, image_size, labels=None):
        self.paths, self.image_size, self.labels = list(paths), image_size, labels

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from .images import read_resized

        error = ""
        try:
            img = read_resized(self.paths[i], self.image_size)
        except Exception as exc:  # reported per row by the caller, never fatal
            img = np.zeros((self.image_size, self.image_size, 3), np.uint8)
            error = str(exc) or type(exc).__name__
        x = torch.from_numpy(img).permute(2, 0, 1)
        label = -1 if self.labels is None else int(self.labels[i])
        return x, label, i, error


def default_loader_workers():
    """DataLoader worker processes when the caller does not say: a core is left for the main
    process, which runs the model."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def make_loader(dataset, batch_size, shuffle=False, num_workers=None, seed=0, drop_last=False, pin_memory=None,
                persistent=True, sampler=None, generator=None):
    """``persistent=False`` starts workers afresh each epoch, seeded from ``loader.generator``:
    reseeding the generator then makes the workers' augmentation a function of that seed.
    ``sampler`` (e.g. distributed.RankSampler) replaces ``shuffle``; it should draw from ``generator``."""
    num_workers = default_loader_workers() if num_workers is None else num_workers
    # Always a generator of its own: a loader never draws from the global RNG, so creating one
    # (e.g. the first validation after a resume) cannot shift training's random stream.
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=persistent and num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
        drop_last=drop_last,
        generator=generator,
    )
