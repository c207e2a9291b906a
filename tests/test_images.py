"""read_image: every colour layout becomes HxWx3 uint8 RGB; every broken file a short reason."""
import io
import os

import cv2
import numpy as np
import pytest
from PIL import Image
from helpers import bomb_png

from fashioncli.errors import DataError
from fashioncli.data.images import ImageError, decode_image, decode_resized, is_image_file, iter_image_files, read_image
from fashioncli.data.preprocess import resize_rgb


def _pil_bytes(image, fmt, **kw):
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _marked(h=20, w=30):
    """Black RGB image with a red top-left corner: shows both channel order and orientation."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:5, :5] = (255, 0, 0)
    return img


def test_png_is_rgb_not_bgr(tmp_path):
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), cv2.cvtColor(_marked(), cv2.COLOR_RGB2BGR))
    img = read_image(path)
    assert img.dtype == np.uint8 and img.shape == (20, 30, 3)
    assert img[0, 0].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied():
    im = Image.fromarray(_marked())
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    img = decode_image(_pil_bytes(im, "JPEG", exif=exif.tobytes(), quality=95))
    assert img.shape == (30, 20, 3)
    assert img[:5, -5:, 0].mean() > 200 and img[:5, :5].mean() < 30  # red corner moved top-right


def _smooth(h, w):
    """A photo-like JPEG body: smooth gradients (random noise would not survive any downscale)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (h + w)], -1).astype(np.uint8)


def test_large_jpegs_decode_at_a_reduced_scale_with_the_same_result():
    image = _smooth(480, 360)
    image[:60, :60] = (255, 0, 0)
    im = Image.fromarray(image)
    exif = im.getexif()
    exif[0x0112] = 6  # rotated, so the source size must be turned like the pixels
    data = _pil_bytes(im, "JPEG", exif=exif.tobytes(), quality=95)
    full = resize_rgb(decode_image(data), 64)
    for box, size in ((None, 64), (None, 200), ([40, 20, 440, 320], 64)):
        small, source = decode_resized(data, size, box)
        assert source == [360, 480] and small.shape == (size, size, 3)
        want = resize_rgb(decode_image(data)[20:320, 40:440] if box else decode_image(data), size)
        assert np.abs(small.astype(int) - want).mean() < 1.5  # within a grey level or so of a full decode
    small, _ = decode_resized(data, 64)
    assert small[:8, -8:, 0].mean() > 200 and small[:8, :8, 0].mean() < 120  # red corner moved top-right
    assert np.abs(small.astype(int) - full).mean() < 1.5


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "I;16"])
def test_other_colour_layouts_become_8bit_rgb(mode):
    rgb = np.full((8, 8, 3), (200, 40, 40), np.uint8)
    if mode == "I;16":
        data = cv2.imencode(".png", np.full((8, 8), 40000, np.uint16))[1].tobytes()
    else:
        data = _pil_bytes(Image.fromarray(rgb).convert(mode), "JPEG" if mode == "CMYK" else "PNG")
    img = decode_image(data)
    assert img.dtype == np.uint8 and img.shape == (8, 8, 3)
    if mode == "I;16":
        assert img[0, 0].tolist() == [40000 >> 8] * 3
    elif mode == "CMYK":
        assert np.abs(img[4, 4].astype(int) - [200, 40, 40]).max() < 12


def test_transparent_pixels_become_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red under alpha 0 on the left half, opaque on the right
    rgba[:, 2:, 3] = 255
    img = decode_image(_pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert img[0, 0].tolist() == [255, 255, 255] and img[0, 3].tolist() == [200, 0, 0]


def test_non_utf8_and_unicode_names(tmp_path):
    data = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    names = ["kleid_größe_ü.png", "衣服.png"]
    if os.name == "posix":
        names.append(os.fsdecode(b"latin1_\xe9.png"))  # not valid UTF-8
    for name in names:
        (tmp_path / name).write_bytes(data)
        assert read_image(tmp_path / name).shape == (4, 4, 3)


def _jpeg(n=64):
    return cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (n, n, 3), dtype=np.uint8))[1].tobytes()


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"this is a text file, not an image", "not a readable image"),
        (_jpeg()[:-300], "truncated or corrupt JPEG"),
        (cv2.imencode(".png", np.ones((64, 64, 3), np.uint8))[1].tobytes()[:100], "truncated or corrupt PNG"),
    ],
)
def test_broken_files_raise_image_error_with_reason(tmp_path, data, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageError, match=reason):
        read_image(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        read_image(tmp_path)
    assert issubclass(ImageError, DataError)  # the CLI prints it as a one-line message


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's own, milder check
def test_decompression_bomb_refused_from_header():
    with pytest.raises(ImageError, match="too large: 12000x12000"):  # 144 megapixels claimed, refused before any decode
        decode_image(bomb_png(12000, 12000))
    with pytest.raises(ImageError, match="too large"):
        decode_image(_jpeg(), max_pixels=100)


def test_iter_image_files_sorted_filtered_and_loop_safe(tmp_path):
    for rel in ["b/2.jpg", "b/1.PNG", "a/x.webp", "top.jpeg", "b/notes.txt", ".hidden/h.jpg",
                "b/._mac.jpg", "__MACOSX/b/._1.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    if hasattr(os, "symlink"):
        os.symlink(tmp_path, tmp_path / "b" / "loop")  # a link back to an ancestor
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_files(tmp_path)]
    assert found == ["a/x.webp", "b/1.PNG", "b/2.jpg", "top.jpeg"]
    assert [p.name for p in iter_image_files(tmp_path, recursive=False)] == ["top.jpeg"]
    assert is_image_file("a/B.JPG") and not is_image_file("a/.B.jpg") and not is_image_file("c.txt")
