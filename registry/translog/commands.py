"""``avatar-registry log …``: verify a certificate offline, monitor a log, create a signing key.

Wired into ``registry/cli.py`` by ``add_log_parser`` and ``run_log_command``. Results go to stdout, progress
and warnings to stderr; a split view exits 3 with a loud message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import aiohttp

from registry.config import Settings
from registry.errors import RegistryError
from registry.translog.keys import create_key_file, load_log_keys
from registry.translog.monitor import FetchError, Monitor, SplitView, log_base_url
from registry.translog.note import NoteError, Verifier, parse_verifier_key
from registry.translog.verify_cert import verify_certificate

__all__ = ["EXIT_SPLIT_VIEW", "add_log_parser", "run_log_command"]

EXIT_SPLIT_VIEW = 3


def add_log_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``log verify``, ``log monitor``, ``log keygen`` and ``log key`` to the CLI's subcommands."""
    log = sub.add_parser("log", help="the transparency log: verify certificates, monitor, keys")
    log_sub = log.add_subparsers(dest="log_command", required=True, metavar="ACTION")
    v = log_sub.add_parser("verify", help="verify a registration certificate offline")
    v.add_argument("--certificate", required=True, type=Path, help="certificate: API JSON or bare JWS")
    v.add_argument("--key", required=True, help="the log's verifier key string <origin>+<hex id>+<base64>")
    m = log_sub.add_parser("monitor", help="poll checkpoints; check each extends the last")
    m.add_argument("url", help="the registry (http://host:port) or its log (…/v1/log)")
    m.add_argument("--key", help="pinned verifier key (default: the served one, with a warning)")
    m.add_argument("--interval", type=float, default=10.0, metavar="SECONDS", help="seconds between polls")
    m.add_argument("--count", type=int, default=None, help="stop after this many polls (default: never)")
    m.add_argument("--state", type=Path, help="file keeping the last good checkpoint across runs")
    k = log_sub.add_parser("keygen", help="create a signing key file and print its verifier key")
    k.add_argument(
        "--out",
        type=Path,
        help="key file (default: the configured one)",
    )
    k.add_argument("--origin", help="the log origin (default REGISTRY_LOG_ORIGIN)")
    log_sub.add_parser("key", help="print the verifier key of the configured signing key file")


def run_log_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run one ``log`` subcommand; return the exit status."""
    if args.log_command == "verify":
        return _verify(args)
    if args.log_command == "monitor":
        return _monitor(args)
    if args.log_command == "keygen":
        origin = args.origin or settings.log_origin
        path = args.out or settings.log_signing_key_path()
        try:
            signer = create_key_file(path, origin)
        except FileExistsError:
            raise RegistryError(
                f"{path} exists; rotation adds a key to it (see docs/transparency.md)"
            ) from None
        print(f"wrote a new signing key to {path}", file=sys.stderr)
        print(signer.verifier.key_string)
        return 0
    if args.log_command == "key":
        print(load_log_keys(settings.log_signing_key_path(), settings.log_origin).verifier.key_string)
        return 0
    raise AssertionError(args.log_command)


def _verify(args: argparse.Namespace) -> int:
    try:
        text = args.certificate.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"cannot read {args.certificate}: {type(exc).__name__}") from exc
    cert = verify_certificate(text, args.key)
    print(
        json.dumps(
            {
                "verified": True,
                "avatar_id": str(cert.avatar_id),
                "owner_operator_id": str(cert.owner_operator_id),
                "leaf_index": cert.leaf_index,
                "tree_size": cert.checkpoint.size,
                "origin": cert.checkpoint.origin,
                "key_id": cert.key_id,
                "fingerprints": cert.fingerprints,
            },
            indent=2,
        )
    )
    return 0


def _monitor(args: argparse.Namespace) -> int:
    base = log_base_url(args.url)

    def report(line: str) -> None:
        print(line, flush=True)

    async def go() -> int:
        if args.key:
            key = parse_verifier_key(args.key.strip())
        else:
            key = await _fetch_key(base)
            print(
                f"warning: trusting the key the log serves ({key.key_string}); pin it with --key",
                file=sys.stderr,
            )
        monitor = Monitor(base, key, state=args.state)
        monitor.load_state()
        await monitor.run(interval=args.interval, count=args.count, report=report)
        return 0

    try:
        return asyncio.run(go())
    except SplitView as exc:
        print(f"\n!!! SPLIT VIEW: {exc.message} !!!\n", file=sys.stderr, flush=True)
        return EXIT_SPLIT_VIEW
    except NoteError as exc:
        print(f"\n!!! BAD CHECKPOINT SIGNATURE: {exc.message} !!!\n", file=sys.stderr, flush=True)
        return EXIT_SPLIT_VIEW


async def _fetch_key(base: str) -> Verifier:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(f"{base}/key") as resp,
        ):
            text = (await resp.content.read(4096)).decode("utf-8", "replace")
            if resp.status != 200:
                raise FetchError(f"GET {base}/key: HTTP {resp.status}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise FetchError(f"GET {base}/key: {type(exc).__name__}") from exc
    return parse_verifier_key(text.strip())
