"""The transparency log's pure core: RFC 6962/9162 Merkle math, Go tlog's stored-hash layout, C2SP tiles,
signed notes and checkpoints.

Modules:
- ``merkle``: leaf/node hashing, roots, inclusion and consistency proofs and their verification.
- ``storedhash``: which hashes to store per appended leaf, and roots and proofs built from stored hashes.
- ``tiles``: C2SP tlog-tiles tiles, paths and entry bundles.
- ``note``: C2SP signed-note with Ed25519 keys.
- ``checkpoint``: C2SP tlog-checkpoint bodies, signed and opened as notes.

Errors (all from ``registry.errors``):
- ``BadRequest``
    - ``ProofError`` (a proof failed verification), ``TreeRangeError`` (a proof asked for outside the tree)
    - ``TilePathError``, ``TileDataError``
    - ``NoteError`` → ``MalformedNote``, ``InvalidNoteSignature``, ``UnverifiedNote``; ``NoteKeyError``
    - ``CheckpointError``
- ``RegistryError`` → ``HashStoreError`` (the hash store answered inconsistently: a server fault)
"""

from registry.translog.checkpoint import (
    Checkpoint,
    CheckpointError,
    format_checkpoint,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from registry.translog.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    ProofError,
    TreeRangeError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from registry.translog.note import (
    InvalidNoteSignature,
    MalformedNote,
    Note,
    NoteError,
    NoteKeyError,
    Signer,
    UnverifiedNote,
    Verifier,
    generate_signer,
    open_note,
    parse_signer_key,
    parse_verifier_key,
    sign_note,
)
from registry.translog.storedhash import (
    HashReader,
    HashStoreError,
    prove_record,
    prove_tree,
    split_stored_hash_index,
    stored_hash_count,
    stored_hash_index,
    stored_hashes,
    stored_hashes_for_record,
    tree_hash,
)
from registry.translog.tiles import (
    MAX_ENTRY_SIZE,
    TILE_HEIGHT,
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

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_ENTRY_SIZE",
    "TILE_HEIGHT",
    "Checkpoint",
    "CheckpointError",
    "HashReader",
    "HashStoreError",
    "InvalidNoteSignature",
    "MalformedNote",
    "Note",
    "NoteError",
    "NoteKeyError",
    "ProofError",
    "Signer",
    "Tile",
    "TileDataError",
    "TilePathError",
    "TreeRangeError",
    "UnverifiedNote",
    "Verifier",
    "consistency_proof",
    "decode_entry_bundle",
    "encode_entry_bundle",
    "format_checkpoint",
    "format_tile_path",
    "generate_signer",
    "hash_from_tile",
    "inclusion_proof",
    "leaf_hash",
    "new_tiles",
    "node_hash",
    "open_checkpoint",
    "open_note",
    "parse_checkpoint",
    "parse_signer_key",
    "parse_tile_path",
    "parse_verifier_key",
    "prove_record",
    "prove_tree",
    "read_tile_data",
    "root_hash",
    "sign_checkpoint",
    "sign_note",
    "split_stored_hash_index",
    "stored_hash_count",
    "stored_hash_index",
    "stored_hashes",
    "stored_hashes_for_record",
    "tile_for_index",
    "tile_in_tree",
    "tile_parent",
    "tree_hash",
    "verify_consistency",
    "verify_inclusion",
]
