"""The one preprocessing every path shares (cache, train, eval, predict, export), so they agree."""
import cv2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_rgb(image, size):
    """Squash an HxWx3 uint8 RGB image to size x size: clothing fills the frame, nothing is cropped away."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    interp = cv2.INTER_AREA if h > size or w > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def normalize(batch, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """uint8 NxCxHxW (on any device) -> normalised float; done on the device, not in workers."""
    import torch

    mean = torch.tensor(mean, device=batch.device).view(1, -1, 1, 1) * 255
    std = torch.tensor(std, device=batch.device).view(1, -1, 1, 1) * 255
    return (batch.float() - mean) / std
