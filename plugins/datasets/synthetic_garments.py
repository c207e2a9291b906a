"""The garments the synthetic importers draw (synthetic_clothing.py, synthetic_segmentation.py).

Six garment silhouettes whose differences are the ones real classifiers must learn (sleeve
length, leg length, a bodice above a flared hem), each with a random colour and pattern, size,
aspect, rotation and position, on a cluttered, noisy background. Colour and texture carry no
class information: only shape does. Seeded per image, so a rerun draws identical files.
"""
import cv2
import numpy as np

# Outlines in a unit frame (x right, y down, about -1..1), traced clockwise from the left neck.
SHAPES = {
    "t-shirt": [(-0.25, -0.9), (-0.55, -0.85), (-0.95, -0.45), (-0.75, -0.22), (-0.5, -0.42),
                (-0.5, 0.9), (0.5, 0.9), (0.5, -0.42), (0.75, -0.22), (0.95, -0.45), (0.55, -0.85),
                (0.25, -0.9), (0.0, -0.72)],
    "longsleeve": [(-0.25, -0.9), (-0.55, -0.85), (-0.9, 0.75), (-0.68, 0.8), (-0.5, -0.3),
                   (-0.5, 0.9), (0.5, 0.9), (0.5, -0.3), (0.68, 0.8), (0.9, 0.75), (0.55, -0.85),
                   (0.25, -0.9), (0.0, -0.72)],
    "pants": [(-0.45, -0.95), (0.45, -0.95), (0.52, 0.95), (0.1, 0.95), (0.0, -0.3),
              (-0.1, 0.95), (-0.52, 0.95)],
    "shorts": [(-0.6, -0.45), (0.6, -0.45), (0.75, 0.4), (0.1, 0.45), (0.0, -0.05),
               (-0.1, 0.45), (-0.75, 0.4)],
    "dress": [(-0.2, -0.95), (-0.36, -0.95), (-0.36, -0.5), (-0.26, -0.2), (-0.8, 0.95),
              (0.8, 0.95), (0.26, -0.2), (0.36, -0.5), (0.36, -0.95), (0.2, -0.95), (0.0, -0.7)],
    "skirt": [(-0.35, -0.55), (0.35, -0.55), (0.8, 0.6), (0.3, 0.66), (-0.3, 0.66), (-0.8, 0.6)],
}
CLASSES = list(SHAPES)


def draw_garment(name, size, rng):
    """One size x size RGB uint8 picture of garment ``name``."""
    return draw_with_mask(name, size, rng)[0]


def draw_with_mask(name, size, rng):
    """(picture, boolean mask of the garment's pixels) of garment ``name``."""
    image = _background(size, rng)
    outline = _place(SHAPES[name], size, rng)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [outline], 255, lineType=cv2.LINE_AA)
    alpha = (mask.astype(np.float32) / 255)[..., None]
    image = image * (1 - alpha) + _fabric(size, rng, avoid=image.mean((0, 1))) * alpha
    if rng.random() < 0.5:  # a seam, so the outline is not always a clean colour edge
        cv2.polylines(image, [outline], True, tuple(float(c) for c in rng.uniform(0, 80, 3)), 1, cv2.LINE_AA)
    if rng.random() < 0.3:  # something in front of the garment now and then
        image = _clutter(image, size, rng, count=1, alpha=0.6)
    image = image + rng.normal(0, rng.uniform(2, 12), image.shape)
    if rng.random() < 0.4:
        image = cv2.GaussianBlur(image, (3, 3), 0)
    return np.clip(image, 0, 255).astype(np.uint8), mask > 127


def _place(points, size, rng):
    pts = np.array(points, np.float64)
    pts += rng.normal(0, 0.035, pts.shape)  # no two garments cut alike
    pts[:, 0] *= rng.uniform(0.8, 1.2)  # aspect
    angle = np.deg2rad(rng.uniform(-15, 15))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = pts @ rot.T
    scale = rng.uniform(0.3, 0.45) * size
    centre = size / 2 + rng.uniform(-0.1, 0.1, 2) * size
    return np.round(pts * scale + centre).astype(np.int32)


def _background(size, rng):
    a, b = rng.uniform(0, 255, (2, 3))
    ramp = np.linspace(0, 1, size)[:, None] if rng.random() < 0.5 else np.linspace(0, 1, size)[None, :]
    ramp = np.broadcast_to(ramp, (size, size))[..., None]
    image = a * (1 - ramp) + b * ramp
    return _clutter(image, size, rng, count=int(rng.integers(1, 5)), alpha=0.6)


def _clutter(image, size, rng, count, alpha):
    """Random circles, boxes and lines: distractors that look like nothing in particular."""
    layer = image.copy()
    for _ in range(count):
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(size // 20, size // 8))
        kind = rng.integers(3)
        if kind == 0:
            cv2.circle(layer, (x, y), r, colour, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(layer, (x - r, y - r // 2), (x + r, y + r // 2), colour, -1)
        else:
            x2, y2 = (int(v) for v in rng.integers(0, size, 2))
            cv2.line(layer, (x, y), (x2, y2), colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    return image * (1 - alpha) + layer * alpha


def _fabric(size, rng, avoid):
    """A plain, striped, checked or dotted fabric with soft shading, covering the whole frame;
    its main colour is kept away from ``avoid`` (the background's mean) so the outline shows."""
    base = rng.uniform(0, 255, 3)
    while np.abs(base - avoid).sum() < 150:
        base = rng.uniform(0, 255, 3)
    second = np.clip(base + rng.uniform(-90, 90, 3), 0, 255)  # a pattern, not a second garment
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    pattern = rng.integers(4)
    period = rng.uniform(4, 12)
    theta = rng.uniform(0, np.pi)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    if pattern == 1:
        weight = (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    elif pattern == 2:
        weight = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    elif pattern == 3:
        weight = ((np.mod(u, period) - period / 2) ** 2 + (np.mod(v, period) - period / 2) ** 2 < (period / 4) ** 2)
        weight = weight.astype(np.float32)
    else:
        weight = np.zeros((size, size), np.float32)
    fabric = base * (1 - weight[..., None]) + second * weight[..., None]
    shade = 1 + rng.uniform(-0.25, 0.25) * (u - u.mean()) / size  # light from one side
    return fabric * shade[..., None]
