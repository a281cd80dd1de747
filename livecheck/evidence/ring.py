"""Fixed-capacity ring buffers over ``array.array``: bounded memory and a compact checkpoint form.

A session's evidence must stay under 20 KB; Python lists of floats cost 32 bytes an item, a typed array 1-8.
The checkpoint form is base64 of the raw little-endian bytes, so a snapshot is small JSON.
"""

from __future__ import annotations

import base64
import sys
from array import array
from typing import Any

__all__ = ["Ring"]


class Ring:
    """The last ``capacity`` values pushed, oldest first, in a typed array (``typecode`` as in ``array``)."""

    __slots__ = ("_buf", "_cap", "_head", "_len")

    def __init__(self, typecode: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"ring capacity must be positive, got {capacity}")
        self._buf = array(typecode, bytes(array(typecode).itemsize * capacity))
        self._cap = capacity  # fixed at construction
        self._head = 0  # index the next push writes
        self._len = 0  # values held, up to capacity

    def push(self, value: float) -> None:
        """Append ``value``, dropping the oldest when full."""
        self._buf[self._head] = value
        self._head = (self._head + 1) % self._cap
        if self._len < self._cap:
            self._len += 1

    def __len__(self) -> int:
        return self._len

    @property
    def capacity(self) -> int:
        return self._cap

    def values(self) -> list[Any]:
        """The held values, oldest first."""
        if self._len < self._cap:
            return self._buf[: self._len].tolist()
        return self._buf[self._head :].tolist() + self._buf[: self._head].tolist()

    def last(self, default: float = 0.0) -> Any:
        """The newest value, or ``default`` when empty."""
        if not self._len:
            return default
        return self._buf[(self._head - 1) % self._cap]

    def clear(self) -> None:
        self._head = 0
        self._len = 0

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable form (little-endian bytes as base64)."""
        buf = array(self._buf.typecode, self._buf)
        if sys.byteorder == "big":
            buf.byteswap()
        return {
            "t": self._buf.typecode,
            "c": self._cap,
            "h": self._head,
            "n": self._len,
            "b": base64.b64encode(buf.tobytes()).decode("ascii"),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Ring:
        """Rebuild a ring from :meth:`to_state`. Raises ``ValueError`` when the form is inconsistent."""
        ring = cls(str(state["t"]), int(state["c"]))
        raw = array(ring._buf.typecode)
        raw.frombytes(base64.b64decode(state["b"]))
        if sys.byteorder == "big":
            raw.byteswap()
        if len(raw) != ring._cap:
            raise ValueError(f"ring state holds {len(raw)} values, expected {ring._cap}")
        head, n = int(state["h"]), int(state["n"])
        if not (0 <= head < ring._cap and 0 <= n <= ring._cap):
            raise ValueError(f"ring state out of range: head {head}, length {n}, capacity {ring._cap}")
        ring._buf = raw
        ring._head = head
        ring._len = n
        return ring
