"""Tests for registry/translog/tiles.py: C2SP tlog-tiles paths, tile contents and entry bundles.

Path vectors come from the C2SP tlog-tiles text and Go tlog's tile paths (without Go's height element); the
tile contents are checked against the spec's formula MTH(D[(n*256+i)*256**l : (n*256+i+1)*256**l]) and
against Go tlog's TestTree (every new tile extends the previous one; every stored hash is readable from its
tile).
"""

from __future__ import annotations

import pytest

from registry.translog.merkle import HASH_SIZE, leaf_hash, root_hash
from registry.translog.storedhash import stored_hash_count, stored_hash_index, stored_hashes
from registry.translog.tiles import (
    ENTRIES_LEVEL,
    MAX_ENTRY_SIZE,
    Tile,
    TileDataError,
    TilePathError,
    decode_entry_bundle,
    encode_entry_bundle,
    format_tile_path,
    hash_from_tile,
    new_tiles,
    parse_tile_path,
    read_tile_data,
    tile_for_index,
    tile_in_tree,
    tile_parent,
)


class Store:
    def __init__(self) -> None:
        self.hashes: list[bytes] = []
        self.leaves: list[bytes] = []
        self.reads = 0

    def read(self, indexes: list[int]) -> list[bytes]:
        self.reads += 1
        return [self.hashes[i] for i in indexes]

    def append(self, data: bytes) -> None:
        self.hashes.extend(stored_hashes(len(self.leaves), data, self.read))
        self.leaves.append(data)


def grow(size: int) -> Store:
    store = Store()
    for n in range(size):
        store.append(f"entry {n}".encode())
    return store


BIG = grow(70_000)  # the C2SP tlog-tiles example size; about half a second to build


PATHS = [
    ("tile/0/001", Tile(level=0, index=1, width=256)),
    ("tile/0/001.p/5", Tile(level=0, index=1, width=5)),
    ("tile/0/000", Tile(level=0, index=0, width=256)),
    ("tile/5/x123/x456/078", Tile(level=5, index=123456078, width=256)),
    ("tile/5/x123/x456/078.p/2", Tile(level=5, index=123456078, width=2)),
    ("tile/1/x001/x234/067", Tile(level=1, index=1234067, width=256)),
    ("tile/63/x001/000.p/255", Tile(level=63, index=1000, width=255)),
    ("tile/entries/x001/x234/067", Tile(level=ENTRIES_LEVEL, index=1234067, width=256)),
    ("tile/entries/000.p/1", Tile(level=ENTRIES_LEVEL, index=0, width=1)),
]


class TestTilePaths:
    """C2SP tlog-tiles: tile/<L>/<N>[.p/<W>] and tile/entries/<N>[.p/<W>]."""

    @pytest.mark.parametrize(("path", "tile"), PATHS)
    def test_format_and_parse(self, path: str, tile: Tile) -> None:
        assert format_tile_path(tile) == path
        assert tile.path == path
        assert parse_tile_path(path) == tile

    @pytest.mark.parametrize(
        "path",
        [
            "tile/3/5/123/456/078",  # Go's height element is not part of C2SP paths
            "tile/8/0/001",
            "tile/0/123/456/078",  # groups before the last need an x
            "tile/0/x123",  # ... and the last must not have one
            "tile/0/1",
            "tile/0/0001",
            "tile/-1/000",
            "tile/data/000",
            "tile/00/000",
            "tile/+1/000",
            "tile/0/000.p/012",
            "tile/0/000.p/0",
            "tile/0/000.p/",
            "tile/0/000.p/5/",
            "tile/0/000/",
            "/tile/0/000",
            "tiles/0/000",
            "tile/0/00a",
            "tile/0/٠٠٠",  # Arabic-Indic digits are digits to int(), not to the spec
        ],
    )
    def test_malformed(self, path: str) -> None:
        with pytest.raises(TilePathError, match="malformed tile path"):
            parse_tile_path(path)

    def test_non_canonical_index(self) -> None:
        with pytest.raises(
            TilePathError, match="non-canonical tile path 'tile/0/x000/005': expected 'tile/0/005'"
        ):
            parse_tile_path("tile/0/x000/005")

    def test_level_out_of_range(self) -> None:
        with pytest.raises(TilePathError, match="tile level out of range in 'tile/64/000': limit 63, got 64"):
            parse_tile_path("tile/64/000")

    def test_partial_width_out_of_range(self) -> None:
        with pytest.raises(TilePathError, match=r"partial tile width out of range .*limit 255, got 256"):
            parse_tile_path("tile/0/000.p/256")

    def test_index_out_of_range(self) -> None:
        with pytest.raises(TilePathError, match="tile index out of range"):
            parse_tile_path("tile/0/x999/x999/x999/x999/x999/x999/999")

    def test_too_long(self) -> None:
        with pytest.raises(TilePathError, match="tile path too long: limit 128 characters, got 209"):
            parse_tile_path("tile/0/" + "x001/" * 39 + "000.p/1")

    def test_errors_are_client_errors(self) -> None:
        with pytest.raises(TilePathError) as info:
            parse_tile_path("nope")
        assert info.value.code == "tile_path_invalid"

    def test_only_height_8_has_a_path(self) -> None:
        tile = Tile(level=0, index=3, width=2, height=2)
        with pytest.raises(ValueError, match="C2SP tiles have height 8, not 2"):
            format_tile_path(tile)
        assert format_tile_path(tile, strict=False) == "tile/2/0/003.p/2"


class TestTileValidation:
    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"level": 0, "index": 0, "width": 0}, "invalid tile width 0"),
            ({"level": 0, "index": 0, "width": 257}, "invalid tile width 257"),
            ({"level": -2, "index": 0, "width": 1}, "invalid tile level -2"),
            ({"level": 64, "index": 0, "width": 1}, "invalid tile level 64"),
            ({"level": 0, "index": -1, "width": 1}, "invalid tile index -1"),
            ({"level": 0, "index": 0, "width": 1, "height": 0}, "invalid tile height 0"),
            ({"level": 0, "index": 0, "width": 1, "height": 31}, "invalid tile height 31"),
        ],
    )
    def test_bad_fields(self, fields: dict[str, int], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            Tile(**fields)

    def test_full_and_entries_flags(self) -> None:
        assert Tile(level=0, index=0, width=256).is_full
        assert not Tile(level=0, index=0, width=255).is_full
        assert Tile(level=ENTRIES_LEVEL, index=0, width=3).is_entries
        assert not Tile(level=0, index=0, width=3).is_entries


class TestNewTiles:
    def test_c2sp_example_size_70000(self) -> None:
        # "273 full level 0 tiles, one partial level 0 tile of width 112, one full level 1 tile, one partial
        # level 1 tile of width 17, and one partial level 2 tile of width 1."
        assert new_tiles(0, 70_000) == [
            *(Tile(level=0, index=n, width=256) for n in range(273)),
            Tile(level=0, index=273, width=112),
            Tile(level=1, index=0, width=256),
            Tile(level=1, index=1, width=17),
            Tile(level=2, index=0, width=1),
        ]

    def test_growth_publishes_completed_and_final_partial_tiles(self) -> None:
        assert new_tiles(250, 260) == [
            Tile(level=0, index=0, width=256),
            Tile(level=0, index=1, width=4),
            Tile(level=1, index=0, width=1),
        ]
        # Level 1 did not change between 260 and 300 leaves: nothing to publish there.
        assert new_tiles(260, 300) == [Tile(level=0, index=1, width=44)]

    def test_c2sp_example_size_256(self) -> None:
        # "a tree of size 256 will be represented by a full level 0 tile and a partial level 1 tile of
        # width 1"
        assert new_tiles(0, 256) == [Tile(level=0, index=0, width=256), Tile(level=1, index=0, width=1)]

    @pytest.mark.parametrize(
        ("old", "new", "count"),
        [
            (1, 1, 0),
            (100, 101, 1),
            (1023, 1025, 3),
            (1024, 1030, 1),
            (1030, 2000, 1),
            (1030, 10000, 10),
            (49516517, 49516586, 3),
        ],
    )
    def test_go_counts_at_height_10(self, old: int, new: int, count: int) -> None:
        # Go tlog's TestNewTilesForSize.
        assert len(new_tiles(old, new, height=10)) == count

    def test_sizes_out_of_order(self) -> None:
        with pytest.raises(ValueError, match="invalid tree sizes: old 5, new 4"):
            new_tiles(5, 4)


class TestTileContents:
    def test_level_0_tile_is_the_leaf_hashes(self) -> None:
        tile = Tile(level=0, index=3, width=256)
        data = read_tile_data(tile, BIG.read)
        assert data == b"".join(leaf_hash(d) for d in BIG.leaves[768:1024])

    @pytest.mark.parametrize(
        "tile",
        [
            Tile(level=1, index=0, width=256),
            Tile(level=1, index=1, width=17),
            Tile(level=2, index=0, width=1),
        ],
    )
    def test_higher_levels_follow_the_c2sp_formula(self, tile: Tile) -> None:
        data = read_tile_data(tile, BIG.read)
        assert len(data) == tile.width * HASH_SIZE
        span = 256**tile.level
        leaf_hashes = [leaf_hash(d) for d in BIG.leaves]
        for i in range(tile.width):
            first = (tile.index * 256 + i) * span
            expected = root_hash(leaf_hashes[first : first + span])
            assert data[i * HASH_SIZE : (i + 1) * HASH_SIZE] == expected, i

    def test_one_read_per_tile(self) -> None:
        BIG.reads = 0
        read_tile_data(Tile(level=0, index=7, width=200), BIG.read)
        assert BIG.reads == 1

    def test_entries_are_not_hash_tiles(self) -> None:
        with pytest.raises(ValueError, match="built from leaves"):
            read_tile_data(Tile(level=ENTRIES_LEVEL, index=0, width=1), BIG.read)
        with pytest.raises(ValueError, match="holds entries, not hashes"):
            hash_from_tile(Tile(level=ENTRIES_LEVEL, index=0, width=1), b"", 0)

    @pytest.mark.parametrize("height", [2, 8])
    def test_go_tree_tiles_extend_and_serve_every_hash(self, height: int) -> None:
        # Go tlog's TestTree: every tile published as the tree grows extends the same tile one hash
        # narrower, and every stored hash can be read back from the tile tile_for_index names.
        store = Store()
        published: dict[Tile, bytes] = {}
        for n in range(300 if height == 8 else 100):
            before = len(store.hashes)
            store.append(f"leaf {n}".encode())
            for tile in new_tiles(n, n + 1, height):
                data = read_tile_data(tile, store.read)
                if tile.width > 1:
                    narrower = Tile(level=tile.level, index=tile.index, width=tile.width - 1, height=height)
                    assert published[narrower] == data[: len(data) - HASH_SIZE]
                published[tile] = data
            for index in range(before, len(store.hashes)):
                tile = tile_for_index(index, height)
                assert hash_from_tile(tile, published[tile], index) == store.hashes[index]
        assert len(store.hashes) == stored_hash_count(len(store.leaves))

    def test_hash_from_a_wider_tile(self) -> None:
        index = stored_hash_index(3, 5)  # a level-3 hash inside level-0 tile 0: rebuilt from 8 leaf hashes
        data = read_tile_data(Tile(level=0, index=0, width=256), BIG.read)
        narrow = tile_for_index(index)
        assert narrow == Tile(level=0, index=0, width=48)
        assert hash_from_tile(Tile(level=0, index=0, width=256), data, index) == BIG.hashes[index]

    def test_hash_from_too_short_data(self) -> None:
        tile = Tile(level=0, index=0, width=4)
        with pytest.raises(
            TileDataError, match=r"tile data too short for tile/0/000.p/4: expected 128 bytes, got 96"
        ):
            hash_from_tile(tile, bytes(96), 0)

    def test_hash_from_the_wrong_tile(self) -> None:
        index = stored_hash_index(0, 300)
        with pytest.raises(ValueError, match=f"stored hash {index} is in tile/0/001.p/45, not tile/0/000"):
            hash_from_tile(Tile(level=0, index=0, width=256), bytes(8192), index)


class TestTileInTreeAndParents:
    @pytest.mark.parametrize(
        ("tile", "size", "inside"),
        [
            (Tile(level=0, index=0, width=256), 256, True),
            (Tile(level=0, index=0, width=256), 255, False),
            (Tile(level=0, index=1, width=4), 260, True),
            (Tile(level=0, index=1, width=5), 260, False),
            (Tile(level=1, index=0, width=1), 256, True),
            (Tile(level=1, index=0, width=2), 511, False),
            (Tile(level=ENTRIES_LEVEL, index=273, width=112), 70_000, True),
            (Tile(level=ENTRIES_LEVEL, index=273, width=113), 70_000, False),
        ],
    )
    def test_tile_in_tree(self, tile: Tile, size: int, inside: bool) -> None:
        assert tile_in_tree(tile, size) is inside

    def test_parents(self) -> None:
        tile = Tile(level=0, index=300, width=256)
        assert tile_parent(tile, 0, 100_000) == Tile(level=0, index=300, width=256)
        assert tile_parent(tile, 1, 100_000) == Tile(level=1, index=1, width=100_000 // 256 - 256)
        assert tile_parent(tile, 2, 100_000) == Tile(level=2, index=0, width=1)
        assert tile_parent(tile, 3, 100_000) is None
        assert tile_parent(Tile(level=0, index=2, width=256), 1, 600) == Tile(level=1, index=0, width=2)

    def test_parent_of_entries(self) -> None:
        with pytest.raises(ValueError, match="an entry bundle has no parent tile"):
            tile_parent(Tile(level=ENTRIES_LEVEL, index=0, width=1), 1, 10)

    def test_parent_tile_hash_authenticates_child(self) -> None:
        # A level-1 tile's i-th hash is the subtree hash of level-0 tile i (how clients authenticate tiles).
        child = read_tile_data(Tile(level=0, index=5, width=256), BIG.read)
        parent_tile = tile_parent(Tile(level=0, index=5, width=256), 1, len(BIG.leaves))
        assert parent_tile is not None
        parent = read_tile_data(parent_tile, BIG.read)
        assert parent[5 * HASH_SIZE : 6 * HASH_SIZE] == root_hash(
            [child[i : i + HASH_SIZE] for i in range(0, len(child), HASH_SIZE)]
        )


class TestEntryBundles:
    """C2SP tlog-tiles entry bundles: big-endian uint16 length-prefixed entries."""

    def test_round_trip_and_leaf_hashes_match_level_0(self) -> None:
        entries = BIG.leaves[256:512]
        bundle = encode_entry_bundle(entries)
        assert bundle[:2] == len(entries[0]).to_bytes(2, "big")
        assert decode_entry_bundle(bundle, 256) == entries
        tile = read_tile_data(Tile(level=0, index=1, width=256), BIG.read)
        assert b"".join(leaf_hash(e) for e in decode_entry_bundle(bundle)) == tile

    def test_empty_and_maximal_entries(self) -> None:
        entries = [b"", b"\x00" * MAX_ENTRY_SIZE]
        bundle = encode_entry_bundle(entries)
        assert bundle[:4] == b"\x00\x00\xff\xff"
        assert decode_entry_bundle(bundle, 2) == entries

    def test_entry_too_long(self) -> None:
        with pytest.raises(ValueError, match="entry 1 too long for a bundle: limit 65535 bytes, got 65536"):
            encode_entry_bundle([b"a", bytes(MAX_ENTRY_SIZE + 1)])

    @pytest.mark.parametrize("count", [0, 257])
    def test_bundle_entry_count(self, count: int) -> None:
        with pytest.raises(ValueError, match=f"an entry bundle holds 1 to 256 entries, not {count}"):
            encode_entry_bundle([b"x"] * count)

    def test_truncated_length(self) -> None:
        with pytest.raises(TileDataError, match="entry bundle truncated in the length of entry 1"):
            decode_entry_bundle(b"\x00\x01a\x00")

    def test_truncated_entry(self) -> None:
        with pytest.raises(TileDataError, match="entry bundle truncated in entry 0: expected 5 bytes, got 2"):
            decode_entry_bundle(b"\x00\x05ab")

    def test_wrong_count(self) -> None:
        with pytest.raises(
            TileDataError, match="entry bundle has wrong number of entries: expected 3, got 2"
        ):
            decode_entry_bundle(encode_entry_bundle([b"a", b"b"]), 3)

    def test_too_many_entries(self) -> None:
        with pytest.raises(TileDataError, match="entry bundle has more than 256 entries"):
            decode_entry_bundle(b"\x00\x00" * 257)
