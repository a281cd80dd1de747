"""Likeness: the streamed avatar's ``frame`` PDQ hashes against its registered reference fingerprints.

PDQ's published operating point (DESIGN §5): a Hamming distance of 31 or less between 256-bit hashes is a
match, and frames of quality below 50 are too unreliable to judge. When most recent good frames match no
reference, the stream is showing some other avatar (``likeness_mismatch``): a violation whatever the
driver, because a registered avatar's likeness is protected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import Override
from .policy import LikenessPolicy
from .ring import Ring

__all__ = ["Likeness", "hamming"]


def hamming(a: bytes, b: bytes) -> int:
    """Bit distance between two equal-length hashes. Raises ``ValueError`` on a length mismatch."""
    if len(a) != len(b):
        raise ValueError(f"hash lengths differ: {len(a)} and {len(b)} bytes")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


class Likeness:
    """Nearest-reference distance of recent good frames."""

    __slots__ = ("_dist", "_refs", "p")

    def __init__(self, policy: LikenessPolicy, references: Sequence[bytes]) -> None:
        self.p = policy
        for r in references:
            if len(r) != 32:
                raise ValueError(f"a PDQ reference must be 32 bytes, got {len(r)}")
        # One bytes object (32 bytes a reference) keeps many references cheap; not checkpointed (given on
        # restore).
        self._refs = b"".join(references)
        self._dist = Ring("H", 16)  # nearest-reference distance of recent frames with quality >= min

    def on_frame(self, pdq: bytes, quality: int) -> None:
        """Record a frame hash. Raises ``ValueError`` when ``pdq`` is not 32 bytes."""
        if len(pdq) != 32:
            raise ValueError(f"a frame PDQ must be 32 bytes, got {len(pdq)}")
        if quality < self.p.min_quality or not self._refs:
            return
        h = int.from_bytes(pdq, "big")
        refs = self._refs
        self._dist.push(
            min((h ^ int.from_bytes(refs[i : i + 32], "big")).bit_count() for i in range(0, len(refs), 32))
        )

    def overrides(self) -> list[Override]:
        d = self._dist.values()[-self.p.window_frames :]
        if len(d) < self.p.min_frames:
            return []
        far = [x for x in d if x > self.p.match_distance]
        if len(far) >= self.p.mismatch_share * len(d):
            return [
                Override(
                    "violation",
                    "likeness_mismatch",
                    f"the streamed avatar is not the registered one: {len(far)} of the last {len(d)} frames "
                    f"match no reference (nearest distance {min(d)} > {self.p.match_distance})",
                )
            ]
        return []

    def to_state(self) -> dict[str, Any]:
        return {"dist": self._dist.to_state()}

    @classmethod
    def from_state(cls, policy: LikenessPolicy, references: Sequence[bytes], s: dict[str, Any]) -> Likeness:
        lk = cls(policy, references)
        lk._dist = Ring.from_state(s["dist"])
        return lk
