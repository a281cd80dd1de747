"""Tests for registry/avatars/images.py: every upload either decodes to RGB pixels or is a named 4xx."""

from __future__ import annotations

import hashlib
import io
import random
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from registry.avatars.images import (
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    DecodedImage,
    decode_image,
    sniff_format,
)
from registry.errors import PayloadTooLarge, RegistryError, Unprocessable, UnsupportedMediaType

RED = (200, 30, 30)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def picture(size: tuple[int, int] = (64, 48), seed: int = 1) -> Image.Image:
    """A small textured RGB picture (noise over a gradient), so codecs have real work to do."""
    rng = np.random.default_rng(seed)
    w, h = size
    ramp = np.linspace(0, 255, w, dtype=np.float64)[None, :, None].repeat(h, axis=0).repeat(3, axis=2)
    noise = rng.integers(0, 60, size=(h, w, 3))
    return Image.fromarray(np.clip(ramp + noise, 0, 255).astype(np.uint8))


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def black_png(width: int, height: int) -> bytes:
    """A valid 1-bit all-black PNG of any declared size, built row block by row block (a few KB)."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    parts = []
    block = row * 256
    for _ in range(height // 256):
        parts.append(compressor.compress(block))
    parts.append(compressor.compress(row * (height % 256)))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", b"".join(parts))
        + png_chunk(b"IEND", b"")
    )


def assert_error(
    exc: RegistryError, cls: type[RegistryError], code: str, part: str = "image"
) -> dict[str, object]:
    assert type(exc) is cls
    assert exc.code == code
    assert exc.details["part"] == part
    assert repr(part) in exc.message
    details: dict[str, object] = exc.details
    return details


def rgb_at(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    pixel = image.getpixel(xy)
    assert isinstance(pixel, tuple)
    return pixel


def decode_error(data: bytes, **kwargs: object) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        decode_image("image", data, **kwargs)  # type: ignore[arg-type]  # kwargs are the keyword options
    return info.value


# --- accepted images ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "params"), [("PNG", {}), ("JPEG", {"quality": 95}), ("WEBP", {"lossless": True})]
)
def test_accepted_formats_decode_to_rgb(fmt: str, params: dict[str, object]) -> None:
    source = picture()
    data = encode(source, fmt, **params)
    decoded = decode_image("image", data)
    assert isinstance(decoded, DecodedImage)
    assert decoded.format == fmt
    assert (decoded.width, decoded.height) == (64, 48)
    assert decoded.image.size == (64, 48)
    assert decoded.image.mode == "RGB"
    assert decoded.sha256 == hashlib.sha256(data).digest()
    assert decoded.image.info == {}
    # Real pixels: the lossless formats give back the source exactly, JPEG what Pillow itself decodes.
    expected = source if fmt != "JPEG" else Image.open(io.BytesIO(data)).convert("RGB")
    assert decoded.image.tobytes() == expected.tobytes()


def test_format_names_are_case_insensitive_in_allow_list() -> None:
    decoded = decode_image("image", encode(picture(), "PNG"), allowed=("png",))
    assert decoded.format == "PNG"


def test_multi_picture_jpeg_is_accepted_as_its_primary_picture() -> None:
    primary = Image.new("RGB", (40, 30), RED)
    extra = Image.new("RGB", (20, 10), (0, 0, 255))
    data = encode(primary, "MPO", save_all=True, append_images=[extra])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    decoded = decode_image("image", data)
    assert decoded.format == "JPEG"
    assert decoded.image.size == (40, 30)
    assert max(abs(a - b) for a, b in zip(rgb_at(decoded.image, (20, 15)), RED, strict=True)) < 8


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_is_applied(fmt: str) -> None:
    # Left half red, right half blue; orientation 6 means "rotate 90° clockwise to display".
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (20, 0, 40, 20))
    exif = stored.getexif()
    exif[0x0112] = 6
    decoded = decode_image("image", encode(stored, fmt, exif=exif))
    assert (decoded.width, decoded.height) == (20, 40)
    top, bottom = rgb_at(decoded.image, (10, 5)), rgb_at(decoded.image, (10, 35))
    assert top[0] > 200 and top[2] < 60  # red on top
    assert bottom[2] > 200 and bottom[0] < 60  # blue below
    assert decoded.image.getexif().get(0x0112) is None


BROKEN_EXIF = b"Exif\x00\x00II*\x00\xff\xff\xff\x7f garbage"


def test_broken_exif_decodes_when_pillow_warnings_only_print() -> None:
    # Production: Pillow warns about the corrupt EXIF block, skips it, and the pixels are fine.
    data = encode(picture(), "JPEG", exif=BROKEN_EXIF)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        decoded = decode_image("image", data)
    assert decoded.image.size == (64, 48)


def test_broken_exif_is_corrupt_when_warnings_are_errors() -> None:
    # Where warnings are errors (our test config), Pillow's warning stops parsing: a clean 422, not a crash.
    data = encode(picture(), "JPEG", exif=BROKEN_EXIF)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        details = assert_error(decode_error(data), Unprocessable, "image_corrupt")
    assert details["error"] == "UserWarning"


def test_transparency_is_flattened_onto_white() -> None:
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    rgba.paste((10, 20, 30, 255), (0, 0, 5, 10))
    decoded = decode_image("image", encode(rgba, "PNG"))
    assert rgb_at(decoded.image, (8, 5)) == (255, 255, 255)
    assert rgb_at(decoded.image, (2, 5)) == (10, 20, 30)


def test_hidden_colour_under_transparency_does_not_change_pixels() -> None:
    a = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    b = Image.new("RGBA", (8, 8), (0, 255, 0, 0))
    pixels_a = decode_image("image", encode(a, "PNG")).image.tobytes()
    pixels_b = decode_image("image", encode(b, "PNG")).image.tobytes()
    assert pixels_a == pixels_b


def test_palette_with_transparency_is_flattened() -> None:
    palette = Image.new("P", (6, 6), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    decoded = decode_image("image", encode(palette, "PNG", transparency=1))
    assert rgb_at(decoded.image, (3, 3)) == (255, 255, 255)


def test_colour_key_transparency_is_flattened() -> None:
    keyed = Image.new("RGB", (6, 6), (0, 0, 0))
    keyed.paste((9, 99, 199), (0, 0, 3, 6))
    decoded = decode_image("image", encode(keyed, "PNG", transparency=(0, 0, 0)))
    assert rgb_at(decoded.image, (5, 3)) == (255, 255, 255)
    assert rgb_at(decoded.image, (1, 3)) == (9, 99, 199)


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    grey = Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16))
    decoded = decode_image("image", encode(grey, "PNG"))
    assert rgb_at(decoded.image, (0, 0)) == (40000 >> 8,) * 3


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red in CMYK
    decoded = decode_image("image", encode(cmyk, "JPEG", quality=95))
    r, g, b = rgb_at(decoded.image, (8, 8))
    assert decoded.image.mode == "RGB" and r > 200 and g < 60 and b < 60


# --- refused: size and type ---------------------------------------------------------------------------


def test_too_many_bytes_is_payload_too_large() -> None:
    data = encode(picture(), "PNG")
    exc = decode_error(data, max_bytes=len(data) - 1)
    details = assert_error(exc, PayloadTooLarge, "image_too_large")
    assert details["size"] == len(data) and details["limit"] == len(data) - 1


def test_default_byte_limit_is_ten_megabytes() -> None:
    assert MAX_IMAGE_BYTES == 10 * 1024 * 1024
    exc = decode_error(b"\x89PNG\r\n\x1a\n" + bytes(MAX_IMAGE_BYTES))
    assert_error(exc, PayloadTooLarge, "image_too_large")


@pytest.mark.parametrize(
    "data",
    [b"hello, this is a text file named avatar.png\n", b"", b"<svg xmlns='http://www.w3.org/2000/svg'/>"],
)
def test_non_image_is_unsupported(data: bytes) -> None:
    exc = decode_error(data)
    details = assert_error(exc, UnsupportedMediaType, "image_unsupported")
    assert details["format"] is None
    assert details["allowed"] == ["PNG", "JPEG", "WEBP"]


@pytest.mark.parametrize(("fmt", "name"), [("GIF", "GIF"), ("BMP", "BMP"), ("TIFF", "TIFF"), ("ICO", "ICO")])
def test_format_outside_allow_list_is_named(fmt: str, name: str) -> None:
    data = encode(picture((32, 32)), fmt)
    assert sniff_format(data) == name
    exc = decode_error(data)
    details = assert_error(exc, UnsupportedMediaType, "image_unsupported")
    assert details["format"] == name
    assert name in exc.message


def test_allowed_format_can_be_narrowed() -> None:
    exc = decode_error(encode(picture(), "PNG"), allowed=("JPEG",))
    details = assert_error(exc, UnsupportedMediaType, "image_unsupported")
    assert details["format"] == "PNG" and details["allowed"] == ["JPEG"]


def test_caller_bugs_are_value_errors() -> None:
    with pytest.raises(ValueError, match="max_pixels"):
        decode_image("image", encode(picture(), "PNG"), max_pixels=0)
    with pytest.raises(ValueError, match="allowed"):
        decode_image("image", encode(picture(), "PNG"), allowed=())


# --- refused: animation -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_animated_images_are_refused(fmt: str) -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:])
    exc = decode_error(data)
    details = assert_error(exc, UnsupportedMediaType, "image_animated")
    assert details["frames"] == 3 and details["format"] == fmt


# --- refused: decompression bombs ---------------------------------------------------------------------


def test_pixel_limit_is_per_call() -> None:
    data = black_png(300, 200)
    assert decode_image("image", data).image.size == (300, 200)
    exc = decode_error(data, max_pixels=300 * 200 - 1)
    details = assert_error(exc, Unprocessable, "image_too_many_pixels")
    assert (details["width"], details["height"], details["limit"]) == (300, 200, 300 * 200 - 1)
    assert decode_image("image", data, max_pixels=300 * 200).width == 300


def test_bomb_over_our_limit_is_refused_before_decoding() -> None:
    # 48 megapixels in 5 KB: over our 40 MP default, under Pillow's own limit (so no Pillow warning).
    data = black_png(8000, 6000)
    assert len(data) < 20_000
    assert MAX_IMAGE_PIXELS < 8000 * 6000
    assert (Image.MAX_IMAGE_PIXELS or 0) > 8000 * 6000
    details = assert_error(decode_error(data), Unprocessable, "image_too_many_pixels")
    assert details["width"] == 8000


@pytest.mark.parametrize(("width", "height"), [(10_000, 10_000), (20_000, 10_000)])
def test_bomb_over_pillow_limits_is_refused(width: int, height: int) -> None:
    # 100 MP makes Pillow warn (an exception under our warnings-as-errors config); 200 MP makes it raise
    # DecompressionBombError. Both become the same 422, and Pillow's global limit is left alone.
    before = Image.MAX_IMAGE_PIXELS
    exc = decode_error(black_png(width, height))
    assert_error(exc, Unprocessable, "image_too_many_pixels")
    assert before == Image.MAX_IMAGE_PIXELS


def test_bomb_between_pillow_limits_is_refused_when_warnings_only_print() -> None:
    # In production the DecompressionBombWarning is only printed; the per-call limit, capped at
    # Pillow's, must still refuse the image even when the caller asks for a higher limit.
    limit = Image.MAX_IMAGE_PIXELS
    assert limit is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        exc = decode_error(black_png(10_000, 10_000), max_pixels=4 * limit)
    details = assert_error(exc, Unprocessable, "image_too_many_pixels")
    assert details["limit"] == limit


# --- refused: truncated and corrupt -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_file_is_corrupt(fmt: str, keep: float) -> None:
    data = encode(picture((96, 96)), fmt)
    exc = decode_error(data[: int(len(data) * keep)])
    assert_error(exc, Unprocessable, "image_corrupt")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_header_only_is_corrupt_not_unsupported(fmt: str) -> None:
    data = encode(picture(), fmt)
    assert_error(decode_error(data[:20]), Unprocessable, "image_corrupt")


def test_png_missing_its_end_chunk_is_corrupt() -> None:
    # Pillow's load() alone accepts this (the pixel data is complete); verify() reads through IEND.
    data = encode(picture(), "PNG")
    assert data.endswith(png_chunk(b"IEND", b""))
    assert_error(decode_error(data[:-12]), Unprocessable, "image_corrupt")


def test_png_with_bad_crc_is_corrupt() -> None:
    data = bytearray(encode(picture(), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF  # one byte of compressed pixels; the chunk CRC no longer matches
    assert_error(decode_error(bytes(data)), Unprocessable, "image_corrupt")


def test_png_text_chunk_bomb_is_corrupt() -> None:
    # A zTXt chunk inflating to 20 MB: Pillow refuses it (MAX_TEXT_CHUNK) and so do we.
    info = PngInfo()
    info.add_text("comment", "A" * (20 * 1024 * 1024), zip=True)
    data = encode(Image.new("RGB", (8, 8)), "PNG", pnginfo=info)
    assert len(data) < 100_000
    assert_error(decode_error(data), Unprocessable, "image_corrupt")


def test_zero_size_declared_is_refused() -> None:
    header = struct.pack(">IIBBBBB", 0, 10, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b"")
    assert_error(decode_error(data), Unprocessable, "image_corrupt")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_mutated_files_never_escape_as_other_exceptions(fmt: str) -> None:
    """Random truncations, bit flips and splices: always a DecodedImage or one of our 4xx errors."""
    rng = random.Random(f"mutate-{fmt}")
    original = encode(picture((40, 40), seed=7), fmt)
    outcomes: set[str] = set()
    for _ in range(150):
        data = bytearray(original)
        action = rng.choice(("truncate", "flip", "splice"))
        if action == "truncate":
            data = data[: rng.randrange(len(data))]
        elif action == "flip":
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        else:
            at = rng.randrange(len(data))
            data[at:at] = rng.randbytes(rng.randint(1, 16))
        try:
            decoded = decode_image("image", bytes(data))
        except (UnsupportedMediaType, Unprocessable, PayloadTooLarge) as exc:
            assert exc.details["part"] == "image"
            outcomes.add(exc.code)
        else:
            assert decoded.image.mode == "RGB" and decoded.image.size[0] > 0
            outcomes.add("ok")
    # The damage was real: most mutations are caught as corrupt.
    assert "image_corrupt" in outcomes
