"""Safe decoding of uploaded reference images (PNG, JPEG, WebP) with Pillow.

Every image part of a registration or match request goes through :func:`decode_image`, which either
returns fully decoded RGB pixels or raises a :mod:`registry.errors` exception naming the part. Hostile
input (decompression bombs, truncated or corrupt files, text named ``.png``, formats we do not accept)
ends in a 4xx, never in an unhandled exception or an unbounded allocation.

Rules decided here:

- **Pixel limit per call.** The limit is checked against the size declared in the header, after
  :func:`PIL.Image.open` has read the header and before any pixel is decoded. Pillow's process-wide
  ``Image.MAX_IMAGE_PIXELS`` is never changed (changing it would race with other threads decoding
  images); it stays as a backstop, and its ``DecompressionBombError`` (or ``DecompressionBombWarning``
  when warnings are errors) maps to the same error as our own check. The effective limit is the lower
  of ``max_pixels`` and Pillow's, so every image that makes Pillow warn is one we refuse anyway, whether
  the warnings filter prints the warning (production) or raises it (our tests).
- **Still images only.** An animated PNG (APNG) or animated WebP with more than one frame is refused
  (415, ``image_animated``): a reference image is one picture, and fingerprinting only the first frame
  would let the other frames carry a likeness nobody checked. A multi-picture JPEG (MPO, e.g. a phone
  photo carrying a depth or gain map) is not an animation: it is accepted as ``JPEG`` and its primary
  picture is used.
- **Only accepted formats are parsed.** Pillow only tries the plugins of the allowed formats. A refused
  format is named from its leading bytes (:func:`sniff_format`), never by running its plugin; bytes that
  start like an accepted format but whose header does not parse are corrupt (422), not unsupported.
- **Fully decoded.** PNG files are structurally verified through ``IEND`` (chunk CRCs), then every format
  is fully decoded with ``load()``; a truncated or corrupt file is a 422, not a half-grey image.
- **Pillow's own warnings.** Pillow warns (rather than raises) about some damaged metadata, e.g. a corrupt
  EXIF block. With the default warnings filter it prints and decoding goes on without that metadata;
  where warnings are errors (our tests, ``python -W error``) the warning stops decoding and the upload is
  ``image_corrupt``. The filter is not touched here: ``warnings.catch_warnings`` is process-wide and not
  thread-safe.
- **Pixels out.** EXIF orientation is applied (an unreadable orientation is ignored);
  16-bit greyscale is scaled to 8 bits; transparency is flattened onto white, so the colour hidden under
  fully transparent pixels cannot change a fingerprint; the result is RGB with its metadata dropped.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from registry.errors import PayloadTooLarge, Unprocessable, UnsupportedMediaType

__all__ = [
    "ALLOWED_FORMATS",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "DecodedImage",
    "decode_image",
    "sniff_format",
]

# The per-part upload limit.
MAX_IMAGE_BYTES: Final = 10 * 1024 * 1024
# 40 megapixels: 8K UHD (7680 x 4320) and ordinary phone photos fit. Decoding peaks at about 4 bytes per
# pixel (RGBA before flattening), so one call stays under ~200 MB. PDQ works on a downscale anyway.
MAX_IMAGE_PIXELS: Final = 40_000_000
ALLOWED_FORMATS: Final = ("PNG", "JPEG", "WEBP")

# Transparent pixels are composited onto this colour (see the module docstring).
_BACKGROUND: Final = (255, 255, 255)

# What Pillow raises while parsing or decoding a damaged file: OSError ("image file is truncated",
# "broken data stream"), SyntaxError (PNG chunk and CRC errors), ValueError (oversized PNG text chunks,
# bad APNG control chunks), EOFError, struct.error and zlib.error from header and metadata parsing, and
# Warning when the warnings filter turns Pillow's "corrupt data" warnings into exceptions. Our own
# programming errors (TypeError, AttributeError, ...) are deliberately not in this list.
_DECODE_ERRORS: Final = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, Warning)

# Leading bytes of common image formats: (offset, magic, format name). Used only to name a format in an
# error message; no refused format's parser ever sees the bytes.
_SIGNATURES: Final[tuple[tuple[int, bytes, str], ...]] = (
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"II+\x00", "TIFF"),
    (0, b"MM\x00+", "TIFF"),
    (0, b"8BPS", "PSD"),
    (0, b"qoif", "QOI"),
    (0, b"%PDF-", "PDF"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000"),
    (0, b"\xff\x4f\xff\x51", "JPEG2000"),
    (0, b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JXL"),
    (0, b"\xff\x0a", "JXL"),
    (4, b"ftypavif", "AVIF"),
    (4, b"ftypavis", "AVIF"),
    (4, b"ftypheic", "HEIC"),
    (4, b"ftypheix", "HEIC"),
    (4, b"ftypmif1", "HEIF"),
    (0, b"\x00\x00\x01\x00", "ICO"),
)

# EXIF orientation value -> the transpose that shows the image upright (EXIF 2.32 tag 0x0112; the same
# table as PIL.ImageOps.exif_transpose).
_ORIENTATION: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """One decoded upload. ``width``/``height`` are those of ``image`` (after EXIF orientation)."""

    sha256: bytes  # digest of the uploaded bytes, 32 bytes
    width: int
    height: int
    format: str  # "PNG", "JPEG" or "WEBP" (an MPO is reported as "JPEG")
    image: Image.Image  # mode "RGB", fully loaded, no metadata


def decode_image(
    part: str,
    data: bytes,
    *,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
    allowed: Iterable[str] = ALLOWED_FORMATS,
) -> DecodedImage:
    """Decode one uploaded image safely and return its RGB pixels and digest.

    Steps, each failing closed: (1) byte-size limit; (2) identify among ``allowed`` formats only, from the
    header; (3) pixel limit from the declared size, before any pixel is decoded; (4) still images only;
    (5) structural verification (PNG chunks and CRCs through ``IEND``); (6) full decode; (7) EXIF
    orientation; (8) conversion to RGB with transparency flattened onto white.

    Args:
        part: the multipart part name, used in every error message and as ``details["part"]``.
        data: the uploaded bytes.
        max_bytes: largest accepted upload.
        max_pixels: largest accepted ``width * height`` (capped at Pillow's ``Image.MAX_IMAGE_PIXELS``).
        allowed: accepted Pillow format names (``"JPEG"`` also admits MPO files, as their primary picture).

    Raises:
        PayloadTooLarge: ``image_too_large``, more than ``max_bytes``.
        UnsupportedMediaType: ``image_unsupported``, not an image, or a format outside ``allowed``
            (``details["format"]`` names it when recognised); ``image_animated``, more than one frame.
        Unprocessable: ``image_too_many_pixels``, a declared size over ``max_pixels`` (a decompression
            bomb); ``image_corrupt``, a truncated or damaged file.
        ValueError: ``max_pixels`` is not positive or ``allowed`` is empty (a caller's bug).
    """
    formats = _normalise_formats(allowed)
    limit = _pixel_limit(max_pixels)
    # (1)
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"image part {part!r} is too large: expected at most {max_bytes} bytes, got {len(data)}",
            code="image_too_large",
            details={"part": part, "size": len(data), "limit": max_bytes},
        )
    # (2)-(5) on a first handle; verify() leaves it unusable, so (6) reopens the same bytes.
    with _open(part, data, formats, limit) as probe:
        fmt = _check_header(part, probe, formats, limit)
        if probe.format == "PNG":
            _run(part, probe.verify)
    # (6)
    with _open(part, data, formats, limit) as im:
        _run(part, im.load)
        # (7), (8)
        rgb = _to_rgb(_orient(im))
    rgb.info.clear()
    return DecodedImage(
        sha256=hashlib.sha256(data).digest(),
        width=rgb.width,
        height=rgb.height,
        format=fmt,
        image=rgb,
    )


def sniff_format(data: bytes) -> str | None:
    """Name the image format of ``data`` from its leading bytes, or None when unrecognised.

    This reads magic numbers only (no parser runs); it names formats in error messages.
    """
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    # BMP's two-byte magic is weak; its header also has four reserved zero bytes at offset 6.
    if data[:2] == b"BM" and data[6:10] == b"\x00\x00\x00\x00":
        return "BMP"
    for offset, magic, name in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return name
    return None


def _normalise_formats(allowed: Iterable[str]) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(f.upper() for f in allowed))
    if not formats:
        # An empty allow-list would refuse everything with a misleading message; it is a caller's bug.
        raise ValueError("allowed image formats must not be empty")
    return formats


def _pixel_limit(max_pixels: int) -> int:
    """The effective per-call limit: ``max_pixels``, but never above Pillow's process-wide limit."""
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    pillow_limit = Image.MAX_IMAGE_PIXELS
    # Above Pillow's limit its bomb check would only warn, and whether a warning stops decoding depends
    # on the warnings filter; capping ours there makes the outcome the same in tests and in production.
    return max_pixels if pillow_limit is None else min(max_pixels, pillow_limit)


def _open(part: str, data: bytes, formats: tuple[str, ...], max_pixels: int) -> Image.Image:
    """Identify ``data`` among ``formats`` from its header (no pixel is decoded here)."""
    try:
        return Image.open(io.BytesIO(data), formats=list(formats))
    except UnidentifiedImageError as exc:
        raise _unsupported(part, data, formats, exc) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Unprocessable(
            f"image part {part!r} declares more pixels than the limit of {max_pixels}",
            code="image_too_many_pixels",
            details={"part": part, "limit": max_pixels},
        ) from exc
    except _DECODE_ERRORS as exc:
        raise _corrupt(part, exc) from exc


def _check_header(part: str, im: Image.Image, formats: tuple[str, ...], max_pixels: int) -> str:
    """Check format, declared size and frame count; return the reported format name."""
    # A JPEG carrying an MP index comes back from the JPEG plugin as MPO; it is still a JPEG.
    fmt = "JPEG" if im.format == "MPO" else (im.format or "")
    if fmt not in formats:
        raise UnsupportedMediaType(
            f"image part {part!r} is {fmt or 'an unknown format'}: expected one of {', '.join(formats)}",
            code="image_unsupported",
            details={"part": part, "format": fmt or None, "allowed": list(formats)},
        )
    width, height = im.size
    if width <= 0 or height <= 0:
        raise Unprocessable(
            f"image part {part!r} declares an empty size {width}x{height}",
            code="image_corrupt",
            details={"part": part, "width": width, "height": height},
        )
    if width * height > max_pixels:
        raise Unprocessable(
            f"image part {part!r} has too many pixels: expected at most {max_pixels}, "
            f"got {width}x{height} = {width * height}",
            code="image_too_many_pixels",
            details={"part": part, "width": width, "height": height, "limit": max_pixels},
        )
    frames = getattr(im, "n_frames", 1)
    if frames > 1 and im.format != "MPO":
        raise UnsupportedMediaType(
            f"image part {part!r} is animated ({frames} frames): expected a still image",
            code="image_animated",
            details={"part": part, "format": fmt, "frames": frames},
        )
    return fmt


def _run(part: str, step: Callable[[], object]) -> None:
    """Run a Pillow parsing step, turning a damaged-file failure into ``image_corrupt``."""
    try:
        step()
    except _DECODE_ERRORS as exc:
        raise _corrupt(part, exc) from exc


def _orient(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag, if any; a broken EXIF block is ignored."""
    try:
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
    except _DECODE_ERRORS:
        return im
    method = _ORIENTATION.get(orientation) if isinstance(orientation, int) else None
    return im if method is None else im.transpose(method)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any mode our formats produce to 8-bit RGB, flattening transparency onto white."""
    if im.mode.startswith("I"):
        # 16-bit greyscale PNG ("I;16", "I;16B", "I"): Pillow's convert() clips at 255 instead of scaling.
        grey = np.asarray(im).astype(np.int64).clip(0, 0xFFFF) >> 8
        im = Image.fromarray(grey.astype(np.uint8))
    if "transparency" in im.info and im.mode in ("1", "L", "P", "RGB"):
        # A palette entry or colour key (PNG tRNS) marks transparent pixels; make that an alpha channel.
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, _BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if im.mode == "RGB":
        return im
    return im.convert("RGB")


def _unsupported(
    part: str, data: bytes, formats: tuple[str, ...], exc: BaseException
) -> UnsupportedMediaType | Unprocessable:
    sniffed = sniff_format(data)
    if sniffed in formats:
        # It starts like an accepted format but its header does not parse: damaged, not unsupported.
        return _corrupt(part, exc)
    what = "not a recognised image" if sniffed is None else f"a {sniffed} image"
    return UnsupportedMediaType(
        f"image part {part!r} is {what}: expected one of {', '.join(formats)}",
        code="image_unsupported",
        details={"part": part, "format": sniffed, "allowed": list(formats)},
    )


def _corrupt(part: str, exc: BaseException) -> Unprocessable:
    return Unprocessable(
        f"image part {part!r} is truncated or corrupt",
        code="image_corrupt",
        details={"part": part, "error": type(exc).__name__},
    )
