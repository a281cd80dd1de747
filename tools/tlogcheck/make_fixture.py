"""Build a small transparency log with registry.translog and write (or serve) it for tlogcheck to verify.

    .venv/bin/python tools/tlogcheck/make_fixture.py OUT_DIR [--size N] [--old-size M] [--serve PORT]

Writes OUT_DIR/key (verifier key string), checkpoint, old-checkpoint, tile/... (C2SP tiles and entry
bundles of the tree), and for a few entries proof/inclusion-<i>.json with entries/<i>.json, plus
proof/consistency.json (old size to size). With --serve it also answers the log API of DESIGN.md §8 on
127.0.0.1:PORT (checkpoint, key, tile/..., entries/<i>, proof/inclusion?index=&tree_size=,
proof/consistency?from=&to=), computing everything with the pure core, until interrupted.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from registry.errors import RegistryError
from registry.translog import (
    Checkpoint,
    Tile,
    encode_entry_bundle,
    new_tiles,
    parse_tile_path,
    prove_record,
    prove_tree,
    read_tile_data,
    sign_checkpoint,
    stored_hashes,
    tile_in_tree,
    tree_hash,
)
from registry.translog.note import signer_from_seed

ORIGIN = "registry.example/log"


class Log:
    """An in-memory log: leaves and their stored hashes."""

    def __init__(self, size: int, seed: str) -> None:
        self.leaves: list[bytes] = []
        self.hashes: list[bytes] = []
        for n in range(size):
            leaf = json.dumps({"kind": "registration", "n": n, "seed": seed}, separators=(",", ":")).encode()
            self.hashes.extend(stored_hashes(n, leaf, self.read))
            self.leaves.append(leaf)

    def read(self, indexes: list[int]) -> list[bytes]:
        return [self.hashes[i] for i in indexes]

    def tile(self, tile: Tile) -> bytes:
        if tile.is_entries:
            start = tile.index << tile.height
            return encode_entry_bundle(self.leaves[start : start + tile.width])
        return read_tile_data(tile, self.read)

    def inclusion(self, index: int, size: int) -> dict:
        hashes = prove_record(size, index, self.read)
        return {"index": index, "tree_size": size, "hashes": [base64.b64encode(h).decode() for h in hashes]}

    def consistency(self, old: int, new: int) -> dict:
        hashes = prove_tree(new, old, self.read)
        return {"from": old, "to": new, "hashes": [base64.b64encode(h).decode() for h in hashes]}

    def entry(self, index: int) -> dict:
        leaf = self.leaves[index]
        return {"index": index, "leaf": base64.b64encode(leaf).decode(), "leaf_json": json.loads(leaf)}


def write(out: Path, name: str, data: bytes) -> None:
    path = out / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=70_000)
    parser.add_argument("--old-size", type=int, default=None)
    parser.add_argument("--seed", default="tlogcheck")
    parser.add_argument("--serve", type=int, default=None, metavar="PORT")
    args = parser.parse_args()
    size = args.size
    if size < 1:
        parser.error("--size must be at least 1")
    # Go's CheckTree needs a non-empty old tree.
    old_size = args.old_size if args.old_size is not None else max(1, min(size, size * 2 // 3 + 7))

    signer = signer_from_seed(ORIGIN, hashlib.sha256(args.seed.encode()).digest())
    log = Log(size, args.seed)
    checkpoint = sign_checkpoint(Checkpoint(ORIGIN, size, tree_hash(size, log.read)), signer)
    old_checkpoint = sign_checkpoint(Checkpoint(ORIGIN, old_size, tree_hash(old_size, log.read)), signer)

    out: Path = args.out
    write(out, "key", signer.verifier.key_string.encode() + b"\n")
    write(out, "checkpoint", checkpoint)
    write(out, "old-checkpoint", old_checkpoint)
    for tile in new_tiles(0, size):
        write(out, tile.path, log.tile(tile))
        if tile.level == 0:
            bundle = Tile(level=-1, index=tile.index, width=tile.width)
            write(out, bundle.path, log.tile(bundle))
    proved = sorted({0, 1, size // 2, size - 2, size - 1} & set(range(size)))
    for i in proved:
        write(out, f"proof/inclusion-{i}.json", json.dumps(log.inclusion(i, size)).encode())
        write(out, f"entries/{i}.json", json.dumps(log.entry(i)).encode())
    write(out, "proof/consistency.json", json.dumps(log.consistency(old_size, size)).encode())
    print(f"wrote a log of {size} entries (old checkpoint at {old_size}) to {out}; proved entries {proved}")

    if args.serve is not None:
        serve(log, args.serve, checkpoint, signer.verifier.key_string)
    return 0


def serve(log: Log, port: int, checkpoint: bytes, key: str) -> None:
    size = len(log.leaves)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            path = url.path.lstrip("/")
            try:
                if path == "checkpoint":
                    body, kind = checkpoint, "text/plain; charset=utf-8"
                elif path == "key":
                    body, kind = key.encode(), "text/plain; charset=utf-8"
                elif path.startswith("tile/"):
                    tile = parse_tile_path(path)
                    if not tile_in_tree(tile, size):
                        return self.answer(404, b"tile not in tree", "text/plain")
                    body, kind = log.tile(tile), "application/octet-stream"
                elif path.startswith("entries/"):
                    index = int(path.removeprefix("entries/"))
                    if not 0 <= index < size:
                        return self.answer(404, b"no such entry", "text/plain")
                    body, kind = json.dumps(log.entry(index)).encode(), "application/json"
                elif path == "proof/inclusion":
                    tree_size = int(query["tree_size"])
                    if tree_size > size:
                        return self.answer(400, b"tree size not reached", "text/plain")
                    body = json.dumps(log.inclusion(int(query["index"]), tree_size)).encode()
                    kind = "application/json"
                elif path == "proof/consistency":
                    to = int(query["to"])
                    if to > size:
                        return self.answer(400, b"tree size not reached", "text/plain")
                    body, kind = (
                        json.dumps(log.consistency(int(query["from"]), to)).encode(),
                        "application/json",
                    )
                else:
                    return self.answer(404, b"not found", "text/plain")
            except (RegistryError, KeyError, ValueError) as exc:
                return self.answer(400, str(exc).encode(), "text/plain")
            self.answer(200, body, kind)

        def answer(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"serving the log API on http://127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
