"""``avatar-registry``: the one command line of the service."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from registry import errors
from registry.config import Settings
from registry.logs import configure_logging
from registry.roles import Role
from registry.translog.commands import add_log_parser, run_log_command

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avatar-registry",
        description="Virtual-avatar registry and live-stream compliance service.",
        epilog="DATABASE_URL unset: an embedded PostgreSQL under DATA_DIR/pg (default ./.data) is used.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser(
        "run", help="local development: embedded database, registry and livecheck, dev identity provider"
    )

    serve = sub.add_parser("serve", help="serve one part (production)")
    serve_sub = serve.add_subparsers(dest="part", required=True, metavar="PART")
    sr = serve_sub.add_parser("registry", help="the HTTP API")
    sr.add_argument(
        "--embedded-db", action="store_true", help="start an embedded PostgreSQL if DATABASE_URL is unset"
    )
    sl = serve_sub.add_parser(
        "livecheck", help="the live websocket server (/v1/live); SIGTERM drains it to another node"
    )
    sl.add_argument(
        "--embedded-db", action="store_true", help="start an embedded PostgreSQL if DATABASE_URL is unset"
    )
    sl.add_argument(
        "--drain",
        action="store_true",
        help="do not serve: ask the running node (--node, or the one at LIVECHECK_PUBLIC_URL) to move its"
        " sessions to another node and stop; wait until it has",
    )
    sl.add_argument("--node", help="with --drain: the node id (see livecheck_nodes)")
    sl.add_argument(
        "--timeout", type=float, default=60.0, metavar="SECONDS", help="with --drain: how long to wait"
    )

    sub.add_parser("migrate", help="apply pending database migrations")

    keys = sub.add_parser("keys", help="API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    kc = keys_sub.add_parser("create", help="create a key and print it (only the key, on stdout)")
    kc.add_argument("--role", required=True, choices=[r.value for r in Role])
    kc.add_argument("--operator", help="operator id (required for --role operator)")
    kc.add_argument("--label", default="", help="a note to recognise the key by")
    keys_sub.add_parser("list", help="list live keys (never the keys themselves)")
    kr = keys_sub.add_parser("revoke", help="revoke a key by id")
    kr.add_argument("id")

    bridge = sub.add_parser("bridge", help="tracker bridges into the live protocol")
    bridge_sub = bridge.add_subparsers(dest="bridge_command", required=True, metavar="SOURCE")
    vmc = bridge_sub.add_parser("vmc", help="receive VMC protocol (OSC over UDP) and stream it to livecheck")
    vmc.add_argument("--listen", default="127.0.0.1:39539", help="UDP address to receive VMC on")
    vmc.add_argument(
        "--live", required=True, help="livecheck websocket URL, e.g. ws://127.0.0.1:8081/v1/live"
    )
    vmc.add_argument("--key", required=True, help="an ingest API key")
    vmc.add_argument("--avatar", required=True, help="the registered avatar id")
    vmc.add_argument("--operator", required=True, help="the operator id driving it")
    vmc.add_argument("--session", help="session id (default: generated)")
    vmc.add_argument("--stream", help="opaque stream id to pass along")

    idp = sub.add_parser("idp", help="the development identity provider (local testing only)")
    idp_sub = idp.add_subparsers(dest="idp_command", required=True, metavar="ACTION")
    kg = idp_sub.add_parser("dev-keygen", help="write a development provider key and its JWKS")
    kg.add_argument("--dir", type=Path, help="output folder (default DATA_DIR/dev-idp)")
    ds = idp_sub.add_parser("dev-sign", help="print a signed development attestation")
    ds.add_argument("--operator", required=True, help="the operator id (informational claim)")
    ds.add_argument("--nonce", required=True, help="the nonce from POST /v1/operators/{id}/identity/nonce")
    ds.add_argument("--sub", help="the provider's person id (default: random)")
    ds.add_argument("--legal-name")
    ds.add_argument("--id-number")
    ds.add_argument("--age-over-18", choices=["true", "false"], default="true")
    ds.add_argument("--assurance", default="substantial")
    ds.add_argument("--expires-in", type=int, default=600, metavar="SECONDS")
    ds.add_argument("--audience", help="the aud claim (default: REGISTRY_AUDIENCE)")
    ds.add_argument("--key", type=Path, help="private key file (default DATA_DIR/dev-idp/private.jwk.json)")

    add_log_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level)
    try:
        return _dispatch(args, settings)
    except errors.RegistryError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from registry import runtime

    if args.command == "run":
        from registry.server import run_local

        return run_local(settings)
    if args.command == "serve" and args.part == "livecheck":
        from registry.server import drain_livecheck, serve_livecheck

        if args.drain:
            return drain_livecheck(settings, node_id=args.node, timeout_s=args.timeout)
        return serve_livecheck(settings, embedded_db=args.embedded_db)
    if args.command == "serve":
        from registry.server import serve_registry

        return serve_registry(settings, embedded_db=args.embedded_db)
    if args.command == "migrate":
        with runtime.database(settings) as db:
            done = asyncio.run(runtime.migrate_database(db.dsn))
        runtime.progress(f"applied {len(done)} migration(s)" if done else "database is up to date")
        return 0
    if args.command == "keys":
        return _keys(args, settings)
    if args.command == "idp":
        return _idp(args, settings)
    if args.command == "log":
        return run_log_command(args, settings)
    if args.command == "bridge":
        from livecheck.bridge import parse_listen, run_vmc_bridge

        return asyncio.run(
            run_vmc_bridge(
                parse_listen(args.listen),
                args.live,
                args.key,
                args.avatar,
                args.operator,
                args.session,
                sys.stdout,
                stream_id=args.stream,
            )
        )
    raise AssertionError(args.command)


def _keys(args: argparse.Namespace, settings: Settings) -> int:
    from registry import audit, runtime
    from registry.keys import store

    async def go(dsn: str) -> int:
        await runtime.migrate_database(dsn)
        async with runtime.connect(dsn) as conn:
            if args.keys_command == "create":
                operator = uuid.UUID(args.operator) if args.operator else None
                async with conn.transaction():
                    rec, key = await store.create_key(
                        conn, Role(args.role), operator_id=operator, label=args.label
                    )
                    await audit.record(
                        conn, None, "key.create", "api_key", rec.id, details={"role": args.role}
                    )
                print(key)
            elif args.keys_command == "list":
                for rec in await store.list_keys(conn):
                    print(f"{rec.id}\t{rec.role}\t{rec.prefix}…\t{rec.operator_id or '-'}\t{rec.label}")
            else:
                async with conn.transaction():
                    rec = await store.revoke_key(conn, _uuid(args.id))
                    await audit.record(conn, None, "key.revoke", "api_key", rec.id)
                runtime.progress(f"revoked {rec.id}")
        return 0

    with runtime.database(settings) as db:
        return asyncio.run(go(db.dsn))


def _uuid(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise errors.BadRequest(f"not a valid id: {raw!r}") from None


def _idp(args: argparse.Namespace, settings: Settings) -> int:
    from registry import runtime
    from registry.attestations import devidp

    key_path, _ = runtime.dev_idp_paths(settings)
    if args.idp_command == "dev-keygen":
        out = args.dir or key_path.parent
        priv, jwks = devidp.dev_keygen(out)
        print(json.dumps({"private_key": str(priv), "jwks": str(jwks), "issuer": devidp.DEV_ISSUER}))
        return 0
    token = devidp.dev_sign(
        args.key or key_path,
        issuer=devidp.DEV_ISSUER,
        audience=args.audience or settings.audience,
        nonce=args.nonce,
        sub=args.sub or f"dev-person-{uuid.uuid4()}",
        now=time.time(),
        expires_in=args.expires_in,
        age_over_18=args.age_over_18 == "true",
        assurance=args.assurance,
        legal_name=args.legal_name,
        id_number=args.id_number,
        operator=args.operator,
    )
    print(token)
    return 0
