"""The command line, as a person uses it: real processes, a real embedded database, real signals."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

CLI = [sys.executable, "-m", "registry"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env.update(extra)
    return env


def _postgres_of(pgdata: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(attrs=("name", "cmdline")):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.info["name"] == "postgres" and str(pgdata.resolve()) in cmd:
            found.append(p)
    return found


def _start(data: Path, port: int) -> tuple[subprocess.Popen[str], str]:
    env = _env(DATA_DIR=str(data), REGISTRY_PORT=str(port), LIVECHECK_PORT=str(_free_port()))
    proc = subprocess.Popen(
        CLI + ["run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    out = ""
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        out += line
        if line.startswith("ready in"):
            return proc, out
    _stop(proc, signal.SIGKILL)
    raise AssertionError(f"run did not become ready: {out}")


def _stop(proc: subprocess.Popen[str], sig: int) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=30)
    finally:
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.mark.slow
def test_run_serves_prints_admin_key_and_stops_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = _free_port()
    proc, out = _start(data, port)
    try:
        m = re.search(r"admin key \(shown once, keep it\): (ark_\S+)", out)
        assert m, out
        admin = m.group(1)
        assert f"http://127.0.0.1:{port}" in out
        r = requests.get(
            f"http://127.0.0.1:{port}/v1/keys", headers={"Authorization": f"Bearer {admin}"}, timeout=5
        )
        assert r.status_code == 200
        assert (data / "secrets.json").exists()
        assert oct((data / "secrets.json").stat().st_mode & 0o777) == "0o600"
        assert _postgres_of(data / "pg")
    finally:
        assert _stop(proc, signal.SIGTERM) == 0
    deadline = time.monotonic() + 10
    while _postgres_of(data / "pg") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _postgres_of(data / "pg"), "PostgreSQL left running after SIGTERM"

    # Second start: no new admin key, same secrets.
    proc, out = _start(data, port)
    try:
        assert "admin key" not in out
    finally:
        assert _stop(proc, signal.SIGINT) == 0

    # A crash (SIGKILL) leaves PostgreSQL running and a dead pid behind; the next start recovers.
    proc, _ = _start(data, port)
    _stop(proc, signal.SIGKILL)
    proc, out = _start(data, port)
    try:
        r = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert r.status_code == 200
    finally:
        assert _stop(proc, signal.SIGTERM) == 0
    deadline = time.monotonic() + 10
    while _postgres_of(data / "pg") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _postgres_of(data / "pg")


def test_keys_and_idp_commands(dsn: str, tmp_path: Path) -> None:
    env = _env(DATABASE_URL=dsn, DATA_DIR=str(tmp_path))
    r = subprocess.run(
        CLI + ["keys", "create", "--role", "platform"], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert re.fullmatch(r"ark_[A-Za-z0-9_-]{43}", key), r.stdout
    r = subprocess.run(CLI + ["keys", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and key[:10] in r.stdout and key not in r.stdout
    key_id = next(line.split("\t")[0] for line in r.stdout.splitlines() if key[:10] in line)
    r = subprocess.run(CLI + ["keys", "revoke", key_id], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(CLI + ["keys", "revoke", "nope"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not a valid id" in r.stderr
    r = subprocess.run(
        CLI + ["keys", "create", "--role", "operator"], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and "operator_id is required" in r.stderr

    r = subprocess.run(CLI + ["idp", "dev-keygen"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        CLI + ["idp", "dev-sign", "--operator", "op-1", "--nonce", "n" * 24, "--expires-in", "120"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().count(".") == 2


@pytest.mark.parametrize("argv", [[], ["keys"], ["serve"], ["idp"]])
def test_help_everywhere(argv: list[str]) -> None:
    r = subprocess.run(CLI + [*argv, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "usage: avatar-registry" in r.stdout
