"""Realistic test images made in code, and the copy transforms infringers use.

Two kinds of image, both seeded (a local ``np.random.default_rng(seed)``, never the global generators):

- ``photo_like``: a landscape-like photograph: sky gradient, fractal-noise terrain ridges with texture,
  soft blobs of foliage and sensor grain.
- ``illustration``: a rendered avatar-style character: gradient backdrop with patterned shapes, a figure
  built from hair, face, eyes and clothes with outlines, and hand-drawn text strokes.

Their PDQ quality is high (>= 80) and different seeds land far apart (> 80 bits), which the tests measure.
``sample_photographs`` returns the real photographs that matplotlib's wheel ships (no download).

The copy transforms (``resize``, ``jpeg``, ``crop``, ``hflip``, ``brightness``, ``rotate``) return new images.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

__all__ = [
    "TRANSFORMS",
    "brightness",
    "crop",
    "hflip",
    "illustration",
    "jpeg",
    "photo_like",
    "resize",
    "rotate",
    "sample_photographs",
]

_Rng = np.random.Generator
_Array = np.ndarray[Any, Any]


def photo_like(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A photograph-like landscape (RGB), fully determined by ``seed``."""
    rng = np.random.default_rng(seed)
    width, height = size
    # Sky: a vertical gradient between two random sky colours, with faint cloud noise.
    top, horizon = _colour(rng, 0.55, 1.0), _colour(rng, 0.75, 1.0)
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    sky = top * (1 - t) + horizon * t
    sky = np.broadcast_to(sky, (height, width, 3)) + 40 * (
        _fractal(rng, size, octaves=5, base=3)[..., None] - 0.5
    )
    image = sky
    # Terrain: three ridge lines, far to near, each darker and more textured.
    rows = np.arange(height)[:, None]
    for layer in range(3):
        ridge = _fractal(rng, (width, 1), octaves=6, base=2 + 2 * layer)[0]
        line = height * (0.35 + 0.18 * layer) + height * (0.25 - 0.05 * layer) * (ridge - 0.5) * 2
        mask = (rows >= line[None, :])[..., None]
        shade = _colour(rng, 0.1 + 0.1 * layer, 0.7 - 0.15 * layer)
        texture = _fractal(rng, size, octaves=7, base=4 + 4 * layer)[..., None]
        ground = shade * (0.55 + 0.9 * texture)
        image = np.where(mask, ground, image)
    picture = Image.fromarray(_to_uint8(image))
    # Foliage and rocks: soft blobs in the foreground.
    overlay = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for _ in range(int(rng.integers(6, 12))):
        cx, cy = rng.uniform(0, width), rng.uniform(0.55 * height, height)
        rx, ry = rng.uniform(0.03, 0.12) * width, rng.uniform(0.03, 0.1) * height
        fill = (*_colour_int(rng, 0.05, 0.5), int(rng.integers(140, 230)))
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill)
    picture = Image.alpha_composite(picture.convert("RGBA"), overlay.filter(ImageFilter.GaussianBlur(3)))
    # Lens softness, then sensor grain.
    pixels = np.asarray(picture.convert("RGB").filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float64)
    pixels += rng.normal(0.0, 4.0, pixels.shape)
    return Image.fromarray(_to_uint8(pixels))


def illustration(seed: int, size: tuple[int, int] = (512, 640)) -> Image.Image:
    """A rendered avatar-style character illustration (RGB), fully determined by ``seed``."""
    rng = np.random.default_rng(seed)
    width, height = size
    # Backdrop: a diagonal two-colour gradient at a random angle, with a large soft pattern.
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width]
    t = (np.cos(angle) * xx / width + np.sin(angle) * yy / height + 1.5) / 3.0
    a, b = _colour(rng, 0.3, 1.0), _colour(rng, 0.0, 0.7)
    back = a * (1 - t[..., None]) + b * t[..., None]
    back += 50 * (_fractal(rng, size, octaves=3, base=2)[..., None] - 0.5)
    picture = Image.fromarray(_to_uint8(back)).convert("RGBA")
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    # Background shapes: stars, circles and stripes.
    for _ in range(int(rng.integers(5, 10))):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.04, 0.15) * width
        fill = (*_colour_int(rng, 0.2, 1.0), int(rng.integers(90, 200)))
        if rng.random() < 0.5:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        else:
            draw.regular_polygon(
                (cx, cy, r), int(rng.integers(3, 7)), rotation=rng.uniform(0, 360), fill=fill
            )
    picture = Image.alpha_composite(picture, layer)
    draw = ImageDraw.Draw(picture)
    ink = (*_colour_int(rng, 0.0, 0.25), 255)
    # The figure, placed off-centre so that seeds differ in composition, not just in colour.
    cx = width * rng.uniform(0.3, 0.7)
    head_y = height * rng.uniform(0.25, 0.4)
    head_r = width * rng.uniform(0.16, 0.24)
    hair = (*_colour_int(rng, 0.1, 0.9), 255)
    # Hair mass behind the head, then the body.
    hair_len = head_r * rng.uniform(1.2, 2.6)
    draw.polygon(
        [
            (cx - head_r * 1.25, head_y),
            (cx - head_r * 1.4, head_y + hair_len),
            (cx + head_r * 1.4, head_y + hair_len),
            (cx + head_r * 1.25, head_y),
        ],
        fill=hair,
        outline=ink,
        width=3,
    )
    cloth = (*_colour_int(rng, 0.1, 0.9), 255)
    shoulder = head_y + head_r * 1.6
    body = [
        (cx - head_r * 0.5, shoulder - head_r * 0.3),
        (cx - head_r * 2.0, height),
        (cx + head_r * 2.0, height),
        (cx + head_r * 0.5, shoulder - head_r * 0.3),
    ]
    draw.polygon(body, fill=cloth, outline=ink, width=3)
    skin = (int(rng.integers(200, 255)), int(rng.integers(170, 225)), int(rng.integers(140, 200)), 255)
    draw.ellipse(
        (cx - head_r, head_y - head_r * 1.1, cx + head_r, head_y + head_r * 1.1),
        fill=skin,
        outline=ink,
        width=3,
    )
    # Fringe: a row of spikes over the forehead.
    spikes = int(rng.integers(4, 8))
    for i in range(spikes):
        x0 = cx - head_r * 1.05 + 2.1 * head_r * i / spikes
        x1 = x0 + 2.1 * head_r / spikes
        tip = head_y - head_r * rng.uniform(0.0, 0.5)
        draw.polygon(
            [(x0, head_y - head_r * 1.15), (x1, head_y - head_r * 1.15), ((x0 + x1) / 2, tip)], fill=hair
        )
    # Eyes with highlights, and a mouth.
    iris = (*_colour_int(rng, 0.1, 0.8), 255)
    for side in (-1, 1):
        ex, ey = cx + side * head_r * 0.4, head_y + head_r * 0.15
        draw.ellipse(
            (ex - head_r * 0.18, ey - head_r * 0.25, ex + head_r * 0.18, ey + head_r * 0.25),
            fill=iris,
            outline=ink,
            width=2,
        )
        draw.ellipse(
            (ex - head_r * 0.07, ey - head_r * 0.18, ex + head_r * 0.02, ey - head_r * 0.05),
            fill=(255, 255, 255, 255),
        )
    draw.arc(
        (cx - head_r * 0.3, head_y + head_r * 0.35, cx + head_r * 0.3, head_y + head_r * 0.7),
        20,
        160,
        fill=ink,
        width=3,
    )
    # Hand-drawn strokes and a caption, as on stream overlays.
    for _ in range(int(rng.integers(3, 7))):
        points = [(rng.uniform(0, width), rng.uniform(0, height)) for _ in range(4)]
        draw.line(
            points, fill=(*_colour_int(rng, 0.0, 1.0), 255), width=int(rng.integers(3, 9)), joint="curve"
        )
    font = ImageFont.load_default(size=int(height * 0.07))
    caption = "".join(chr(int(c)) for c in rng.integers(65, 91, size=int(rng.integers(4, 9))))
    draw.text((rng.uniform(0.02, 0.4) * width, rng.uniform(0.8, 0.9) * height), caption, fill=ink, font=font)
    pixels = np.asarray(picture.convert("RGB"), dtype=np.float64)
    # Paper texture and mild grain, so flat fills are not perfectly flat.
    pixels += 12 * (_fractal(rng, size, octaves=6, base=16)[..., None] - 0.5) + rng.normal(
        0.0, 2.0, pixels.shape
    )
    return Image.fromarray(_to_uint8(pixels))


def sample_photographs() -> dict[str, Image.Image]:
    """The real photographs inside matplotlib's wheel (``mpl-data/sample_data``), decoded as RGB."""
    import matplotlib  # a test-only dependency; its wheel ships these files, so nothing is downloaded

    folder = Path(matplotlib.get_data_path()) / "sample_data"
    names = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")
    photos = {}
    for name in names:
        with Image.open(folder / name) as img:
            photos[name] = img.convert("RGB")
    return photos


# -- copy transforms --------------------------------------------------------------------------------------


def resize(img: Image.Image, scale: float = 0.5) -> Image.Image:
    """Rescale by ``scale`` (both sides), as a re-upload at another resolution does."""
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


def jpeg(img: Image.Image, quality: int = 60) -> Image.Image:
    """Re-encode as JPEG at ``quality`` and decode again (in memory)."""
    buffer = io.BytesIO()
    img.convert("RGB").save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def crop(img: Image.Image, fraction: float = 0.05) -> Image.Image:
    """Cut ``fraction`` of the width and of the height away, unevenly between opposite edges."""
    dx, dy = img.width * fraction, img.height * fraction
    box = (round(dx * 0.6), round(dy * 0.4), img.width - round(dx * 0.4), img.height - round(dy * 0.6))
    return img.crop(box)


def hflip(img: Image.Image) -> Image.Image:
    """Mirror left to right (the most common evasion: PDQ itself is not flip-invariant)."""
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def brightness(img: Image.Image, factor: float = 1.25) -> Image.Image:
    """Scale brightness by ``factor``."""
    return ImageEnhance.Brightness(img).enhance(factor)


def rotate(img: Image.Image, degrees: float = 3.0) -> Image.Image:
    """Rotate by ``degrees`` about the centre, keeping the size (corners filled with the mean colour)."""
    mean = tuple(int(v) for v in np.asarray(img.convert("RGB")).reshape(-1, 3).mean(axis=0))
    return img.rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=mean)


# The transforms the tests apply, by name, each at the strength an infringer would use.
TRANSFORMS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "resize_half": lambda img: resize(img, 0.5),
    "resize_up": lambda img: resize(img, 1.6),
    "jpeg_q40": lambda img: jpeg(img, 40),
    "crop_5pct": lambda img: crop(img, 0.05),
    "hflip": hflip,
    "brighter": lambda img: brightness(img, 1.25),
    "darker": lambda img: brightness(img, 0.75),
    "rotate_2deg": lambda img: rotate(img, 2.0),
    "rotate_3deg": lambda img: rotate(img, -3.0),
    "resize_jpeg_crop": lambda img: crop(jpeg(resize(img, 0.7), 60), 0.03),
}


# -- helpers ----------------------------------------------------------------------------------------------


def _fractal(rng: _Rng, size: tuple[int, int], *, octaves: int, base: int) -> _Array:
    """Layered value noise in [0, 1] of ``size`` (width, height): ``octaves`` octaves from a ``base`` grid."""
    width, height = size
    total = np.zeros((height, width))
    weight_sum = 0.0
    for octave in range(octaves):
        cells = base * 2**octave
        grid = rng.random((max(2, round(cells * height / max(width, height))) + 1, cells + 1))
        layer = Image.fromarray(grid.astype(np.float32), mode="F").resize(size, Image.Resampling.BICUBIC)
        weight = 0.55**octave
        total += weight * np.asarray(layer, dtype=np.float64)
        weight_sum += weight
    total /= weight_sum
    low, high = total.min(), total.max()
    return (total - low) / (high - low) if high > low else np.zeros_like(total)


def _colour(rng: _Rng, low: float, high: float) -> _Array:
    """A random RGB colour with channels in [low, high] * 255, as floats."""
    return rng.uniform(low, high, 3) * 255.0


def _colour_int(rng: _Rng, low: float, high: float) -> tuple[int, int, int]:
    red, green, blue = (int(v) for v in _colour(rng, low, high))
    return red, green, blue


def _to_uint8(pixels: _Array) -> _Array:
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
