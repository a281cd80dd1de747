"""Frame PDQ against the registered references (DESIGN §5 operating point)."""

import random

import pytest

from livecheck.evidence.likeness import Likeness, hamming
from livecheck.evidence.policy import LikenessPolicy


def _flip(h: bytes, bits: list[int]) -> bytes:
    x = int.from_bytes(h, "big")
    for b in bits:
        x ^= 1 << b
    return x.to_bytes(32, "big")


def test_hamming() -> None:
    a = bytes(32)
    assert hamming(a, _flip(a, [0, 5, 255])) == 3
    with pytest.raises(ValueError, match="lengths differ"):
        hamming(a, bytes(31))


def test_threshold_is_inclusive_at_31() -> None:
    ref = random.Random(1).randbytes(32)
    lk = Likeness(LikenessPolicy(), [ref])
    for _ in range(4):
        lk.on_frame(_flip(ref, list(range(31))), 90)
    assert lk.overrides() == []
    lk2 = Likeness(LikenessPolicy(), [ref])
    for _ in range(4):
        lk2.on_frame(_flip(ref, list(range(32))), 90)
    (o,) = lk2.overrides()
    assert o.code == "likeness_mismatch" and o.state == "violation"
    assert "distance 32 > 31" in o.detail


def test_a_match_among_the_recent_frames_clears_it() -> None:
    rng = random.Random(2)
    ref = rng.randbytes(32)
    lk = Likeness(LikenessPolicy(), [rng.randbytes(32), ref])
    for _ in range(3):
        lk.on_frame(rng.randbytes(32), 90)
    assert lk.overrides()
    for _ in range(3):
        lk.on_frame(_flip(ref, [1, 2, 3]), 90)
    assert lk.overrides() == []


def test_low_quality_frames_and_no_references_judge_nothing() -> None:
    rng = random.Random(3)
    lk = Likeness(LikenessPolicy(), [rng.randbytes(32)])
    for _ in range(6):
        lk.on_frame(rng.randbytes(32), 20)
    assert lk.overrides() == []
    none = Likeness(LikenessPolicy(), [])
    for _ in range(6):
        none.on_frame(rng.randbytes(32), 90)
    assert none.overrides() == []


def test_bad_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Likeness(LikenessPolicy(), [bytes(8)])
    with pytest.raises(ValueError, match="32 bytes"):
        Likeness(LikenessPolicy(), [bytes(32)]).on_frame(bytes(16), 90)
