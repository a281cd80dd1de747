"""Drive a real registry through registrations and changes, then check its log with Go's tlog (tlogcheck).

    .venv/bin/python tools/tlogcheck/live_check.py --tlogcheck /tmp/tlogcheck [--avatars 70]

Starts ``avatar-registry run`` in a fresh DATA_DIR (embedded PostgreSQL), then through the HTTP API:
verifies operators with the development identity provider, registers avatars, adds and removes reference
images, suspends and reactivates avatars, transfers one, and revokes one operator's identity: every kind of
leaf. It then runs tlogcheck (Go's golang.org/x/mod/sumdb/note and tlog, not our code) on the live
``/v1/log`` API: checkpoint signature, inclusion proofs, a consistency proof from a checkpoint taken midway,
every tile and entry bundle; and ``avatar-registry log verify`` on a certificate and ``log monitor`` for two
polls. Prints a transcript; exits non-zero on the first failure. Bounded: every step has a timeout.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from registry.attestations import devidp  # noqa: E402 - after the path set-up above
from tests import imagegen  # noqa: E402 - realistic, well-separated images made in code

CLI = [sys.executable, "-m", "registry"]
TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def say(line: str) -> None:
    print(line, flush=True)


class Registry:
    def __init__(self, base: str, admin: str) -> None:
        self.base = base
        self.session = requests.Session()
        self.admin = admin

    def call(self, method: str, path: str, key: str, expect: int, **kw: Any) -> Any:
        r = self.session.request(
            method, self.base + path, headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT, **kw
        )
        if r.status_code != expect:
            raise SystemExit(f"FAIL {method} {path}: HTTP {r.status_code}: {r.text[:300]}")
        return (
            r.json() if r.content and r.headers.get("Content-Type", "").startswith("application/json") else r
        )


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    imagegen.photo_like(seed, (320, 240)).save(buf, "PNG")
    return buf.getvalue()


def verified_operator(reg: Registry, platform: str, data_dir: Path) -> dict[str, str]:
    op = reg.call("POST", "/v1/operators", platform, 201, json={"display_name": "Streamer"})
    op_id, key = op["operator"]["id"], op["key"]["key"]
    nonce = reg.call("POST", f"/v1/operators/{op_id}/identity/nonce", key, 201)["nonce"]
    token = devidp.dev_sign(
        data_dir / "dev-idp" / devidp.DEV_PRIVATE_KEY_NAME,
        audience="avatar-registry",
        nonce=nonce,
        sub=f"person-{uuid.uuid4()}",
        now=time.time(),
        operator=op_id,
    )
    reg.call("POST", f"/v1/operators/{op_id}/identity", key, 200, json={"attestation": token})
    return {"id": op_id, "key": key}


def start(data_dir: Path, port: int) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATA_DIR=str(data_dir), REGISTRY_PORT=str(port), LIVECHECK_PORT=str(free_port()))
    proc = subprocess.Popen(
        CLI + ["run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    out, deadline = "", time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        out += line
        if line.startswith("ready in"):
            match = re.search(r"admin key \(shown once, keep it\): (\S+)", out)
            if match:
                return proc, match.group(1)
    proc.kill()
    raise SystemExit(f"FAIL registry did not start: {out}")


def run(cmd: list[str], what: str) -> str:
    say(f"$ {' '.join(cmd)}")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    out = (done.stdout + done.stderr).strip()
    say(out)
    if done.returncode != 0:
        raise SystemExit(f"FAIL {what}: exit {done.returncode}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tlogcheck", required=True, help="the built tlogcheck binary")
    parser.add_argument("--avatars", type=int, default=70)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="tlogcheck-live-"))
    port = free_port()
    proc, admin = start(data_dir, port)
    base = f"http://127.0.0.1:{port}"
    try:
        reg = Registry(base, admin)
        platform = reg.call("POST", "/v1/keys", admin, 201, json={"role": "platform"})["key"]
        staff = reg.call("POST", "/v1/keys", admin, 201, json={"role": "staff"})["key"]
        owners = [verified_operator(reg, platform, data_dir) for _ in range(4)]
        say(f"registry at {base}; {len(owners)} verified operators")
        avatars: list[str] = []
        seed = 9_000_000
        midway: dict[str, Any] = {}
        started = time.monotonic()
        for i in range(args.avatars):
            owner = owners[i % len(owners)]
            seed += 1
            body = reg.call(
                "POST",
                "/v1/avatars",
                owner["key"],
                201,
                files=[("name", (None, f"Avatar {i}")), ("image", (f"{i}.png", png(seed), "image/png"))],
            )
            avatar = body["avatar"]["id"]
            avatars.append(avatar)
            # Add and then remove a second reference image, suspend and reactivate: one leaf each.
            seed += 1
            extra = png(seed)
            reg.call(
                "POST",
                f"/v1/avatars/{avatar}/images",
                owner["key"],
                201,
                files=[("image", ("x.png", extra, "image/png"))],
            )
            sha = hashlib.sha256(extra).hexdigest()
            reg.call("DELETE", f"/v1/avatars/{avatar}/images/{sha}", owner["key"], 200)
            for status in ("suspended", "active"):
                reg.call(
                    "POST",
                    f"/v1/avatars/{avatar}/status",
                    staff,
                    200,
                    json={"status": status, "reason": "review"},
                )
            if i == args.avatars // 2:
                midway["checkpoint"] = reg.session.get(f"{base}/v1/log/checkpoint", timeout=TIMEOUT).text
        # A transfer (owner asks, staff approve) and an identity revocation.
        t = reg.call(
            "POST",
            f"/v1/avatars/{avatars[0]}/transfer",
            owners[0]["key"],
            201,
            json={"to_operator_id": owners[1]["id"]},
        )
        reg.call("POST", f"/v1/transfers/{t['id']}/approve", staff, 200, json={"reason": "approved sale"})
        reg.call(
            "POST",
            f"/v1/operators/{owners[3]['id']}/identity/revoke",
            staff,
            200,
            json={"reason": "reported stolen"},
        )
        say(
            f"{args.avatars} registrations with image, status, transfer and revocation changes "
            f"in {time.monotonic() - started:.1f} s"
        )

        time.sleep(1.5)  # the signer covers new leaves within a second
        key = reg.session.get(f"{base}/v1/log/key", timeout=TIMEOUT).text
        checkpoint = reg.session.get(f"{base}/v1/log/checkpoint", timeout=TIMEOUT).text
        size = int(checkpoint.split("\n")[1])
        old_size = int(midway["checkpoint"].split("\n")[1])
        say(f"log key: {key}")
        say(f"checkpoint:\n{checkpoint}")
        indexes = sorted({0, 1, old_size - 1, size // 2, size - 2, size - 1})
        run(
            [
                args.tlogcheck,
                "-key",
                key,
                "-url",
                f"{base}/v1/log",
                "-index",
                ",".join(map(str, indexes)),
                "-from",
                str(old_size),
                "-tiles",
                "-entries",
            ],
            "tlogcheck",
        )
        cert = reg.call("GET", f"/v1/avatars/{avatars[5]}/certificate", platform, 200)
        cert_file = data_dir / "certificate.json"
        cert_file.write_text(json.dumps(cert))
        run(CLI + ["log", "verify", "--certificate", str(cert_file), "--key", key], "log verify")
        run(CLI + ["log", "monitor", base, "--key", key, "--interval", "1", "--count", "2"], "log monitor")
        say("ALL CHECKS PASSED")
        return 0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
