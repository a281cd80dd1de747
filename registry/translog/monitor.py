"""A log monitor: polls a log's checkpoint and checks that every new one extends the last it saw.

Each poll (1) fetches ``/checkpoint`` and opens it with the pinned verifier key; (2) compares it with the
previous checkpoint: a smaller tree is a rollback, the same size with another root is a fork, and a larger
tree must come with a valid consistency proof (``/proof/consistency``, RFC 9162 §2.1.4.2). Any of those is a
``SplitView``: the log showed two histories that cannot both be true, which is what a monitor exists to catch.
The last good checkpoint can be kept in a state file, so a monitor restarted tomorrow still holds the log to
what it signed today.

``check_step`` is the pure decision; ``Monitor`` does the HTTP (aiohttp client) around it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from registry.errors import RegistryError
from registry.translog.checkpoint import Checkpoint, open_checkpoint
from registry.translog.merkle import ProofError, verify_consistency
from registry.translog.note import Verifier

__all__ = ["FetchError", "Monitor", "SplitView", "check_step", "log_base_url"]

# A checkpoint is a few hundred bytes and a proof a few kilobytes; cap what a hostile server can send.
_MAX_RESPONSE = 1 << 20


class SplitView(RegistryError):
    """The log showed two inconsistent views (rollback, fork or a bad consistency proof)."""

    code = "log_split_view"


class FetchError(RegistryError):
    """The log could not be reached or answered with something that is not what the API promises."""

    code = "log_fetch_failed"


def check_step(previous: Checkpoint | None, current: Checkpoint, proof: list[bytes] | None) -> str:
    """Decide whether ``current`` may follow ``previous``; return a one-line description of the step.

    ``proof`` is the consistency proof from ``previous.size`` to ``current.size`` (needed only when the tree
    grew). Raises ``SplitView`` on a different origin, a rollback, a fork at the same size, or a proof that
    does not verify.
    """
    if previous is None:
        return f"first checkpoint: size {current.size}"
    if current.origin != previous.origin:
        raise SplitView(f"origin changed: expected {previous.origin!r}, got {current.origin!r}")
    if current.size < previous.size:
        raise SplitView(f"log rolled back: size {previous.size} was signed, now {current.size}")
    if current.size == previous.size:
        if current.root_hash != previous.root_hash:
            raise SplitView(
                f"fork at size {current.size}: root {previous.root_hash.hex()} was signed, "
                f"now {current.root_hash.hex()}"
            )
        return f"unchanged: size {current.size}"
    try:
        verify_consistency(previous.size, current.size, proof or [], previous.root_hash, current.root_hash)
    except ProofError as exc:
        raise SplitView(
            f"size {current.size} is not consistent with size {previous.size}: {exc.message}"
        ) from exc
    return f"grew: size {previous.size} -> {current.size}, consistent"


def log_base_url(url: str) -> str:
    """The log's base URL: ``url`` itself if it ends in ``/v1/log``, else ``url`` + ``/v1/log``."""
    url = url.rstrip("/")
    return url if url.endswith("/v1/log") else url + "/v1/log"


@dataclass(slots=True)
class Monitor:
    """Polls one log. ``key`` is the pinned verifier key; ``state`` (optional) keeps the last good
    checkpoint; ``request_timeout`` bounds each HTTP request."""

    base_url: str
    key: Verifier
    state: Path | None = None
    request_timeout: float = 10.0
    # The last checkpoint that passed, and its signed note.
    previous: Checkpoint | None = None

    def load_state(self) -> None:
        """Read the last good checkpoint from the state file, re-verifying it with the key.

        Raises ``SplitView`` if the state file was written for another key (the log changed keys).
        """
        if self.state is None or not self.state.exists():
            return
        data = json.loads(self.state.read_text(encoding="utf-8"))
        if data.get("key") != self.key.key_string:
            raise SplitView(f"state file {self.state} was written for another key: {data.get('key')!r}")
        self.previous = open_checkpoint(data["checkpoint"].encode("utf-8"), self.key)

    def _save_state(self, note: bytes) -> None:
        if self.state is None:
            return
        tmp = self.state.with_suffix(self.state.suffix + ".tmp")
        tmp.write_text(json.dumps({"key": self.key.key_string, "checkpoint": note.decode("utf-8")}))
        os.replace(tmp, self.state)

    async def _get(self, session: aiohttp.ClientSession, path: str, **params: int) -> bytes:
        url = f"{self.base_url}/{path}"
        try:
            async with session.get(url, params=params or None) as resp:
                body = await resp.content.read(_MAX_RESPONSE + 1)
                if resp.status != 200:
                    raise FetchError(f"GET {url}: HTTP {resp.status}: {body[:200]!r}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FetchError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
        if len(body) > _MAX_RESPONSE:
            raise FetchError(f"GET {url}: response larger than {_MAX_RESPONSE} bytes")
        return body

    async def _consistency(self, session: aiohttp.ClientSession, old: int, new: int) -> list[bytes]:
        body = await self._get(session, "proof/consistency", **{"from": old, "to": new})
        try:
            hashes: Any = json.loads(body)["hashes"]
            return [base64.b64decode(h, validate=True) for h in hashes]
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise FetchError(f"malformed consistency proof from {self.base_url}") from exc

    async def poll(self, session: aiohttp.ClientSession) -> str:
        """One poll: fetch, verify and compare the checkpoint; return what happened.

        Raises ``FetchError`` if the log cannot be read, a note error if the checkpoint's signature fails,
        ``SplitView`` if it contradicts the previous one.
        """
        note = await self._get(session, "checkpoint")
        current = open_checkpoint(note, self.key)
        proof = None
        if self.previous is not None and current.size > self.previous.size:
            proof = await self._consistency(session, self.previous.size, current.size)
        step = check_step(self.previous, current, proof)
        self.previous = current
        self._save_state(note)
        return step

    async def run(self, *, interval: float, count: int | None, report: Callable[[str], None]) -> None:
        """Poll every ``interval`` seconds, ``count`` times (forever if ``None``), reporting each step.

        A fetch failure is reported and retried at the next poll; a ``SplitView`` or a bad signature stops
        the monitor by raising.
        """
        polls = 0
        client_timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        async with aiohttp.ClientSession(timeout=client_timeout) as session:
            while count is None or polls < count:
                if polls:
                    await asyncio.sleep(interval)
                polls += 1
                try:
                    report("ok " + await self.poll(session))
                except FetchError as exc:
                    report(f"warning: {exc.message}")
