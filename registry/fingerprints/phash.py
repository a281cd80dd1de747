"""PDQ perceptual hashes of decoded images (pure: no I/O, no clock).

PDQ is Meta's 256-bit perceptual hash (ThreatExchange ``hashing/pdq``), computed here with the ``pdqhash``
bindings of the reference C++ code. A hash is kept as 32 bytes in the bit order of Meta's hex format: the
first hex digit holds bits 255..252 of the reference ``Hash256`` (its word 15 is printed first), which is
also what HMA's ``pdq_hasher.py`` prints, so ``Pdq.hex()`` and HMA agree on the same pixels.

``pdqhash`` returns the hash as an array of 256 bits, most significant first (``hash_to_vector`` reverses
the reference bit index), plus a quality in 0..100. A low-quality image is not an error here and never a
sentinel: the quality travels with the hash and callers compare it with ``MIN_QUALITY``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pdqhash
from PIL import Image

from registry.errors import BadRequest

__all__ = [
    "AUGMENTATION_NAMES",
    "DEFAULT_THRESHOLD",
    "DIHEDRAL_NAMES",
    "MAX_HASH_SIDE",
    "MAX_QUALITY",
    "MIN_QUALITY",
    "PDQ_BITS",
    "PDQ_BYTES",
    "InvalidPdq",
    "Pdq",
    "augmented_pdqs",
    "dihedral_pdqs",
    "hamming",
    "pdq_from_hex",
    "pdq_of_image",
]

PDQ_BITS = 256
PDQ_BYTES = PDQ_BITS // 8

# PDQ's published operating point (ThreatExchange ``pdq_utils.py``): a distance less than *or equal to*
# 31 counts as a match.
DEFAULT_THRESHOLD = 31
# Below this quality PDQ's authors call an image "too unreliable to match on" (flat, nearly featureless
# images hash to noise); callers refuse such references or mark such matches as weak.
MIN_QUALITY = 50
MAX_QUALITY = 100

# The reference code's downsampling dominates its cost and grows faster than the pixel count (8 ms at
# 512x512, 50 ms at 1024x1024, 1.5 s at 4096x4096 here), while PDQ only keeps a 64x64 image. Meta's own PHP
# hasher and the Rust ports downsample to 512 first for the same reason. Larger images are box-downscaled
# to this longest side first; ``max_side=None`` hashes the pixels as given, bit for bit like HMA (hashes
# of the two paths differ by 4-12 bits in our measurements, well below the match threshold).
MAX_HASH_SIDE = 512

# The order in which ``pdqhash.compute_dihedral`` returns the 8 variants (the reference
# ``pdqDihedralHash256esFromFloatLuma``), named by the Pillow transpose that yields the same hash: the
# hash of ``img.transpose(Transpose.ROTATE_90)`` is variant 1, and so on.
DIHEDRAL_NAMES: tuple[str, ...] = (
    "original",
    "rotate_90",
    "rotate_180",
    "rotate_270",
    "flip_top_bottom",
    "flip_left_right",
    "transpose",
    "transverse",
)

# PDQ alone misses copies rotated by 2 degrees or more, or zoomed by a crop of 3% or more (the tests measure
# it: a 3 degree rotation moves hashes 40-70 bits). Hashing a reference also slightly rotated both ways and
# centre-cropped brings such copies back within the threshold; ``augmented_pdqs`` returns these, in order.
# Still out of reach: a crop taken from one edge only (content shifts by the whole crop) and a flip combined
# with a rotation; no fixed set of a few extra hashes covers those.
AUGMENTATION_NAMES: tuple[str, ...] = ("rotate_ccw_2.5", "rotate_cw_2.5", "crop_centre_5")
_AUGMENT_DEGREES = 2.5
_AUGMENT_CROP = 0.05

_HEX_RE = re.compile(r"[0-9a-fA-F]{64}")


class InvalidPdq(BadRequest, ValueError):
    """A PDQ hash given as text is malformed (a ``BadRequest``; also a ``ValueError`` for plain callers)."""

    code = "invalid_pdq"


@dataclass(frozen=True, slots=True)
class Pdq:
    """One PDQ hash: 32 bytes in Meta's hex bit order, and the image quality PDQ reported (0..100)."""

    bits: bytes
    quality: int

    def __post_init__(self) -> None:
        if not isinstance(self.bits, bytes) or len(self.bits) != PDQ_BYTES:
            raise ValueError(f"pdq bits must be {PDQ_BYTES} bytes, got {len(self.bits)}")
        if not 0 <= self.quality <= MAX_QUALITY:
            raise ValueError(f"pdq quality must be in 0..{MAX_QUALITY}, got {self.quality}")

    def hex(self) -> str:
        """The 64 lowercase hex digits Meta's tools (and HMA) print for this hash."""
        return self.bits.hex()

    @property
    def reliable(self) -> bool:
        """Whether the quality reaches ``MIN_QUALITY``, PDQ's bar for matching on an image."""
        return self.quality >= MIN_QUALITY


def pdq_from_hex(text: str, *, quality: int = MAX_QUALITY) -> Pdq:
    """Parse 64 hex digits (either case) in Meta's PDQ hex format.

    A hash sent as text carries no quality: pass the one its sender reported, else it is taken as
    ``MAX_QUALITY`` (HMA does not check the quality of hashes submitted as text either).

    Raises:
        InvalidPdq: ``text`` is not exactly 64 hex digits, or ``quality`` is outside 0..100.
    """
    if not isinstance(text, str) or _HEX_RE.fullmatch(text) is None:
        shown = len(text) if isinstance(text, str) else type(text).__name__
        raise InvalidPdq(
            "pdq hash must be 64 hex digits",
            details={"expected_length": 2 * PDQ_BYTES, "got": shown},
        )
    if not 0 <= quality <= MAX_QUALITY:
        raise InvalidPdq(f"pdq quality must be in 0..{MAX_QUALITY}, got {quality}")
    return Pdq(bits=bytes.fromhex(text), quality=quality)


def hamming(a: Pdq | bytes, b: Pdq | bytes) -> int:
    """The Hamming distance (0..256) between two PDQ hashes, given as ``Pdq`` or as their 32 bytes.

    Raises:
        ValueError: either side is not 32 bytes long.
    """
    a_bits = a.bits if isinstance(a, Pdq) else a
    b_bits = b.bits if isinstance(b, Pdq) else b
    if len(a_bits) != PDQ_BYTES or len(b_bits) != PDQ_BYTES:
        raise ValueError(f"pdq hashes must be {PDQ_BYTES} bytes, got {len(a_bits)} and {len(b_bits)}")
    return (int.from_bytes(a_bits, "big") ^ int.from_bytes(b_bits, "big")).bit_count()


def pdq_of_image(img: Image.Image, *, max_side: int | None = MAX_HASH_SIDE) -> Pdq:
    """The PDQ hash and quality of a decoded image.

    Any mode is first converted to RGB (alpha is dropped, as HMA does: PDQ reads only the three colour
    channels); an image larger than ``max_side`` is box-downscaled first (see ``MAX_HASH_SIDE``).

    Raises:
        ValueError: the image has no pixels, or ``max_side`` is not positive.
    """
    vector, quality = pdqhash.compute(_rgb_array(img, max_side))
    return Pdq(bits=_pack(vector), quality=int(quality))


def dihedral_pdqs(img: Image.Image, *, max_side: int | None = MAX_HASH_SIDE) -> list[Pdq]:
    """The PDQ hashes of the image's 8 rotations and flips, in ``DIHEDRAL_NAMES`` order (original first).

    One pass of the reference code computes all 8 from the same 64x64 DCT, so this costs about as much
    as ``pdq_of_image``; all 8 share the image's quality.

    Raises:
        ValueError: as ``pdq_of_image``.
    """
    vectors, quality = pdqhash.compute_dihedral(_rgb_array(img, max_side))
    return [Pdq(bits=_pack(vector), quality=int(quality)) for vector in vectors]


def augmented_pdqs(img: Image.Image, *, max_side: int | None = MAX_HASH_SIDE) -> list[Pdq]:
    """Hashes of the image rotated 2.5 degrees each way and centre-cropped by 5%, in ``AUGMENTATION_NAMES``
    order: indexed beside a reference's dihedral variants, they catch copies rotated by 1-4 degrees or
    zoomed by a crop of a few percent, which PDQ alone misses. Quality is that of each variant.

    Raises:
        ValueError: as ``pdq_of_image``.
    """
    base = _prepared(img, max_side)
    mean = tuple(int(v) for v in np.asarray(base).reshape(-1, 3).mean(axis=0))
    dx, dy = round(base.width * _AUGMENT_CROP / 2), round(base.height * _AUGMENT_CROP / 2)
    variants = [
        base.rotate(_AUGMENT_DEGREES, resample=Image.Resampling.BILINEAR, fillcolor=mean),
        base.rotate(-_AUGMENT_DEGREES, resample=Image.Resampling.BILINEAR, fillcolor=mean),
        base.crop((dx, dy, base.width - dx, base.height - dy)),
    ]
    return [pdq_of_image(variant, max_side=None) for variant in variants]


def _prepared(img: Image.Image, max_side: int | None) -> Image.Image:
    """The image in RGB, box-downscaled to ``max_side`` if it is larger."""
    if img.width < 1 or img.height < 1:
        raise ValueError(f"image has no pixels: {img.width}x{img.height}")
    if max_side is not None:
        if max_side < 1:
            raise ValueError(f"max_side must be positive, got {max_side}")
        longest = max(img.size)
        if longest > max_side:
            scale = max_side / longest
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            # BOX averages every source pixel, like the first stage of PDQ's own Jarosz filter.
            img = img.resize(size, Image.Resampling.BOX)
    return img if img.mode == "RGB" else img.convert("RGB")


def _rgb_array(img: Image.Image, max_side: int | None) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """The prepared image as a contiguous ``(height, width, 3)`` uint8 array, the layout ``pdqhash`` reads."""
    return np.ascontiguousarray(np.asarray(_prepared(img, max_side), dtype=np.uint8))


def _pack(vector: np.ndarray[Any, Any]) -> bytes:
    """Pack ``pdqhash``'s 256 bits (most significant first) into 32 bytes, big-endian."""
    return np.packbits(np.asarray(vector, dtype=np.uint8)).tobytes()
