"""Tiles of a transparency log (C2SP tlog-tiles), their paths, and entry bundles.

A tile of height H at level L, number N, lists W consecutive stored hashes at tree level H*L starting at
``N * 2**H``; a full tile has ``2**H`` of them, a partial tile fewer. C2SP tlog-tiles fixes H = 8, names tiles
``tile/<L>/<N>[.p/<W>]`` and entry bundles ``tile/entries/<N>[.p/<W>]``, and writes N in zero-padded groups of
three digits, all but the last prefixed with ``x`` (1234067 is ``x001/x234/067``).

The tile math is a port of Go's ``golang.org/x/mod/sumdb/tlog/tile.go`` (level -1 is an entry bundle, which Go
calls a data tile). Pure: hashes are read through the ``HashReader`` callback of ``storedhash``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from registry.errors import BadRequest
from registry.translog.merkle import HASH_SIZE, node_hash
from registry.translog.storedhash import HashReader, checked_read, split_stored_hash_index, stored_hash_index

__all__ = [
    "ENTRIES_LEVEL",
    "MAX_ENTRY_SIZE",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "Tile",
    "TileDataError",
    "TilePathError",
    "decode_entry_bundle",
    "encode_entry_bundle",
    "format_tile_path",
    "hash_from_tile",
    "new_tiles",
    "parse_tile_path",
    "read_tile_data",
    "tile_for_index",
    "tile_in_tree",
    "tile_parent",
]

# C2SP tlog-tiles: tiles are 8 levels tall, so a full tile holds 256 hashes (8,192 bytes).
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
# The level an entry bundle sits at (Go tlog's "data" tiles): below the leaf hashes.
ENTRIES_LEVEL = -1
# Entry bundles prefix each entry with a big-endian uint16 length, so no entry can be longer.
MAX_ENTRY_SIZE = 0xFFFF
# tlog-tiles: "<L> MUST be a decimal ASCII integer between 0 and 63".
_MAX_LEVEL = 63
# Go tlog allows heights 1..30; only 8 has a C2SP path, other heights are for tests of the math.
_MAX_HEIGHT = 30
# No sane log has 2**55 tiles at a level (that is 2**63 leaves); also bounds the work parse does.
_MAX_TILE_INDEX = (1 << 63) >> TILE_HEIGHT
_MAX_PATH_LENGTH = 128
_PATH_RE = re.compile(
    r"tile/(?P<level>entries|0|[1-9][0-9]?)/(?P<n>(?:x[0-9]{3}/)*[0-9]{3})(?:\.p/(?P<width>[1-9][0-9]{0,2}))?"
)


class TilePathError(BadRequest):
    """A tile path does not follow C2SP tlog-tiles exactly."""

    code = "tile_path_invalid"


class TileDataError(BadRequest):
    """Tile or entry bundle bytes do not have the shape their tile requires."""

    code = "tile_data_invalid"


@dataclass(frozen=True, kw_only=True)
class Tile:
    """A tile: ``width`` hashes at tree level ``height * level`` from hash number ``index * 2**height``.

    ``level`` is ``ENTRIES_LEVEL`` (-1) for an entry bundle. Constructing one validates every field, so any
    ``Tile`` that exists is well formed; raises ``ValueError`` otherwise.
    """

    level: int
    index: int
    width: int
    height: int = TILE_HEIGHT

    def __post_init__(self) -> None:
        if not 1 <= self.height <= _MAX_HEIGHT:
            raise ValueError(f"invalid tile height {self.height}")
        if not ENTRIES_LEVEL <= self.level <= _MAX_LEVEL:
            raise ValueError(f"invalid tile level {self.level}")
        if self.index < 0:
            raise ValueError(f"invalid tile index {self.index}")
        if not 1 <= self.width <= 1 << self.height:
            raise ValueError(f"invalid tile width {self.width} for height {self.height}")

    @property
    def is_full(self) -> bool:
        """Whether the tile holds all ``2**height`` hashes (or entries)."""
        return self.width == 1 << self.height

    @property
    def is_entries(self) -> bool:
        """Whether this is an entry bundle rather than a tile of hashes."""
        return self.level == ENTRIES_LEVEL

    @property
    def path(self) -> str:
        """The tile's C2SP tlog-tiles path; see ``format_tile_path``."""
        return format_tile_path(self)


def _tile_for_index(height: int, index: int) -> tuple[Tile, int, int]:
    """Return the narrowest tile holding stored hash ``index``, and the byte range in its data whose
    hashes combine into that stored hash (a hash above the tile's bottom row is rebuilt from the row)."""
    level, n = split_stored_hash_index(index)
    tile_level = level // height
    level -= tile_level * height  # the hash's level inside the tile
    tile_index = (n << level) >> height
    n -= (tile_index << height) >> level  # the hash's position inside the tile, at that level
    tile = Tile(level=tile_level, index=tile_index, width=(n + 1) << level, height=height)
    return tile, (n << level) * HASH_SIZE, ((n + 1) << level) * HASH_SIZE


def tile_for_index(index: int, height: int = TILE_HEIGHT) -> Tile:
    """Return the tile of ``height`` and least width from which stored hash ``index`` can be read."""
    return _tile_for_index(height, index)[0]


def _tile_hash(data: bytes) -> bytes:
    """Return the hash of the perfect subtree whose bottom row is the ``2**k`` hashes in ``data``."""
    row = [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]
    while len(row) > 1:
        row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
    return row[0]


def hash_from_tile(tile: Tile, data: bytes, index: int) -> bytes:
    """Return stored hash ``index`` read from ``data``, the bytes of ``tile``.

    ``tile`` must be ``tile_for_index(index, tile.height)`` or a wider tile at the same place (``ValueError``
    otherwise). Raises ``TileDataError`` if ``data`` is shorter than the tile's width requires.
    """
    if tile.is_entries:
        raise ValueError("an entry bundle holds entries, not hashes")
    if len(data) < tile.width * HASH_SIZE:
        raise TileDataError(
            f"tile data too short for {format_tile_path(tile, strict=False)}: "
            f"expected {tile.width * HASH_SIZE} bytes, got {len(data)}"
        )
    needed, start, end = _tile_for_index(tile.height, index)
    if (tile.level, tile.index) != (needed.level, needed.index) or tile.width < needed.width:
        raise ValueError(
            f"stored hash {index} is in {format_tile_path(needed, strict=False)}, "
            f"not {format_tile_path(tile, strict=False)}"
        )
    return _tile_hash(data[start:end])


def new_tiles(old_size: int, new_size: int, height: int = TILE_HEIGHT) -> list[Tile]:
    """Return the hash tiles to publish when the tree grows from ``old_size`` to ``new_size`` leaves.

    That is every full tile completed since ``old_size`` and, at each level that changed, the partial tile of
    ``new_size`` (C2SP tlog-tiles: a tree of size s has, at level l, a partial tile of ``s // 256**l % 256``
    hashes). ``new_tiles(0, size)`` lists every tile of a tree. Entry bundles follow the level-0 tiles one
    for one. Raises ``ValueError`` unless ``0 <= old_size <= new_size``.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"invalid tree sizes: old {old_size}, new {new_size}")
    tiles: list[Tile] = []
    level = 0
    while new_size >> (height * level) > 0:
        old_n = old_size >> (height * level)
        new_n = new_size >> (height * level)
        if old_n != new_n:
            for n in range(old_n >> height, new_n >> height):
                tiles.append(Tile(level=level, index=n, width=1 << height, height=height))
            n = new_n >> height
            if width := new_n - (n << height):
                tiles.append(Tile(level=level, index=n, width=width, height=height))
        level += 1
    return tiles


def tile_in_tree(tile: Tile, tree_size: int) -> bool:
    """Whether every hash (or entry) of ``tile`` exists in a tree of ``tree_size`` leaves.

    The server answers a tile request only when this holds; tiles of any partial width up to the current
    size are determined by the tree and safe to serve.
    """
    level = 0 if tile.is_entries else tile.level
    available = tree_size >> (tile.height * level)
    return (tile.index << tile.height) + tile.width <= available


def tile_parent(tile: Tile, k: int, tree_size: int) -> Tile | None:
    """Return ``tile``'s ``k``-th ancestor tile within a tree of ``tree_size`` leaves, or ``None`` if the
    tree has no such tile (its hashes would not exist yet). The ancestor is partial when the tree ends in it.
    """
    if tile.is_entries:
        raise ValueError("an entry bundle has no parent tile")
    level = tile.level + k
    if level > _MAX_LEVEL:
        return None
    index = tile.index >> (k * tile.height)
    width = 1 << tile.height
    available = tree_size >> (level * tile.height)
    if (index << tile.height) >= available:
        return None
    width = min(width, available - (index << tile.height))
    return Tile(level=level, index=index, width=width, height=tile.height)


def read_tile_data(tile: Tile, read_hashes: HashReader) -> bytes:
    """Return the bytes a hash tile serves: its ``width`` hashes concatenated (32 bytes each).

    Reads them with one ``read_hashes`` call. Raises ``ValueError`` for an entry bundle (entries come from the
    leaf table, see ``encode_entry_bundle``) and ``HashStoreError`` if the store answers badly.
    """
    if tile.is_entries:
        raise ValueError("an entry bundle is built from leaves, not stored hashes")
    start = tile.index << tile.height
    level = tile.height * tile.level
    indexes = [stored_hash_index(level, start + i) for i in range(tile.width)]
    return b"".join(checked_read(read_hashes, indexes))


def _format_index(n: int) -> str:
    parts = [f"{n % 1000:03d}"]
    n //= 1000
    while n > 0:
        parts.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(parts))


def format_tile_path(tile: Tile, *, strict: bool = True) -> str:
    """Return the C2SP tlog-tiles path of ``tile``: ``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]``.

    C2SP paths exist only for height 8; ``strict=False`` writes other heights Go-style (``tile/<H>/<L>/...``)
    for error messages. Raises ``ValueError`` for another height when ``strict``.
    """
    level = "entries" if tile.is_entries else str(tile.level)
    suffix = "" if tile.is_full else f".p/{tile.width}"
    if tile.height != TILE_HEIGHT:
        if strict:
            raise ValueError(f"C2SP tiles have height {TILE_HEIGHT}, not {tile.height}")
        level = f"{tile.height}/{level}"
    return f"tile/{level}/{_format_index(tile.index)}{suffix}"


def parse_tile_path(path: str) -> Tile:
    """Parse a C2SP tlog-tiles path, ``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]``, into a Tile.

    Accepts only the canonical spelling: no leading zeros in L or W, three-digit groups with ``x`` on all but
    the last and no leading ``x000`` group, L at most 63, W from 1 to 255. Raises ``TilePathError`` otherwise.
    """
    if len(path) > _MAX_PATH_LENGTH:
        raise TilePathError(f"tile path too long: limit {_MAX_PATH_LENGTH} characters, got {len(path)}")
    match = _PATH_RE.fullmatch(path)
    if match is None:
        raise TilePathError(f"malformed tile path {path!r}")
    level_text, width_text = match["level"], match["width"]
    level = ENTRIES_LEVEL if level_text == "entries" else int(level_text)
    if level > _MAX_LEVEL:
        raise TilePathError(f"tile level out of range in {path!r}: limit {_MAX_LEVEL}, got {level}")
    width = TILE_WIDTH if width_text is None else int(width_text)
    if width_text is not None and width >= TILE_WIDTH:
        raise TilePathError(
            f"partial tile width out of range in {path!r}: limit {TILE_WIDTH - 1}, got {width}"
        )
    index = 0
    for group in match["n"].split("/"):
        index = index * 1000 + int(group.removeprefix("x"))
    if index > _MAX_TILE_INDEX:
        raise TilePathError(f"tile index out of range in {path!r}: limit {_MAX_TILE_INDEX}, got {index}")
    tile = Tile(level=level, index=index, width=width)
    # The regex admits "x000/005" for 5; only one spelling of each tile is valid.
    if format_tile_path(tile) != path:
        raise TilePathError(f"non-canonical tile path {path!r}: expected {format_tile_path(tile)!r}")
    return tile


def encode_entry_bundle(entries: Sequence[bytes]) -> bytes:
    """Return a C2SP tlog-tiles entry bundle: each entry as a big-endian uint16 length and its bytes.

    Raises ``ValueError`` for more than 256 entries or an entry longer than ``MAX_ENTRY_SIZE`` (the log must
    refuse such leaves when they are appended).
    """
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise ValueError(f"an entry bundle holds 1 to {TILE_WIDTH} entries, not {len(entries)}")
    out = bytearray()
    for i, entry in enumerate(entries):
        if len(entry) > MAX_ENTRY_SIZE:
            raise ValueError(
                f"entry {i} too long for a bundle: limit {MAX_ENTRY_SIZE} bytes, got {len(entry)}"
            )
        out += len(entry).to_bytes(2, "big")
        out += entry
    return bytes(out)


def decode_entry_bundle(data: bytes, count: int | None = None) -> list[bytes]:
    """Split an entry bundle into its entries; if ``count`` is given (the bundle's width) check it.

    Raises ``TileDataError`` if the bundle is truncated, holds more than 256 entries, or not ``count``.
    """
    entries: list[bytes] = []
    pos = 0
    while pos < len(data):
        if len(entries) == TILE_WIDTH:
            raise TileDataError(f"entry bundle has more than {TILE_WIDTH} entries")
        if pos + 2 > len(data):
            raise TileDataError(f"entry bundle truncated in the length of entry {len(entries)}")
        size = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if pos + size > len(data):
            raise TileDataError(
                f"entry bundle truncated in entry {len(entries)}: "
                f"expected {size} bytes, got {len(data) - pos}"
            )
        entries.append(data[pos : pos + size])
        pos += size
    if count is not None and len(entries) != count:
        raise TileDataError(f"entry bundle has wrong number of entries: expected {count}, got {len(entries)}")
    return entries
