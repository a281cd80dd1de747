"""The monitor's decision (pure) and its polling loop against small fake logs on loopback: a log that only
grows passes; a fork, a rollback (also across restarts, via the state file) or a bad proof is a split view."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from registry.translog.checkpoint import Checkpoint, sign_checkpoint
from registry.translog.merkle import consistency_proof, leaf_hash, root_hash
from registry.translog.monitor import Monitor, SplitView, check_step, log_base_url
from registry.translog.note import InvalidNoteSignature, Signer, UnverifiedNote, generate_signer

ORIGIN = "monitor.test/log"
SIGNER = generate_signer(ORIGIN)


def leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [leaf_hash(salt + str(i).encode()) for i in range(n)]


def cp(hashes: list[bytes]) -> Checkpoint:
    return Checkpoint(ORIGIN, len(hashes), root_hash(hashes))


def test_first_unchanged_and_grown_steps_pass() -> None:
    tree = leaves(12)
    assert "first" in check_step(None, cp(tree[:5]), None)
    assert "unchanged" in check_step(cp(tree[:5]), cp(tree[:5]), None)
    proof = consistency_proof(tree, 5)
    assert "5 -> 12, consistent" in check_step(cp(tree[:5]), cp(tree), proof)


def test_a_rollback_is_a_split_view() -> None:
    tree = leaves(8)
    with pytest.raises(SplitView, match="rolled back: size 8 was signed, now 5"):
        check_step(cp(tree), cp(tree[:5]), None)


def test_a_fork_at_the_same_size_is_a_split_view() -> None:
    with pytest.raises(SplitView, match="fork at size 6"):
        check_step(cp(leaves(6)), cp(leaves(6, b"other")), None)


def test_a_grown_tree_that_rewrote_history_is_a_split_view() -> None:
    old = leaves(5)
    forked = leaves(9, b"x")
    with pytest.raises(SplitView, match="size 9 is not consistent with size 5"):
        check_step(cp(old), cp(forked), consistency_proof(forked, 5))


def test_a_missing_proof_is_a_split_view() -> None:
    tree = leaves(9)
    with pytest.raises(SplitView, match="proof has wrong size"):
        check_step(cp(tree[:5]), cp(tree), [])


def test_another_origin_is_a_split_view() -> None:
    tree = leaves(3)
    with pytest.raises(SplitView, match="origin changed"):
        check_step(cp(tree), Checkpoint("other/log", 3, root_hash(tree)), None)


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://h:8080", "http://h:8080/v1/log"),
        ("http://h:8080/", "http://h:8080/v1/log"),
        ("http://h:8080/v1/log/", "http://h:8080/v1/log"),
    ],
)
def test_log_base_url(url: str, base: str) -> None:
    assert log_base_url(url) == base


class FakeLog:
    """Serves a scripted sequence of trees: each checkpoint request moves to the next one."""

    def __init__(self, trees: list[list[bytes]], signer: Signer = SIGNER) -> None:
        self.trees = trees
        self.signer = signer
        self.served = -1

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/log/checkpoint", self.checkpoint)
        app.router.add_get("/v1/log/proof/consistency", self.consistency)
        return app

    async def checkpoint(self, request: web.Request) -> web.Response:
        self.served = min(self.served + 1, len(self.trees) - 1)
        return web.Response(body=sign_checkpoint(cp(self.trees[self.served]), self.signer))

    async def consistency(self, request: web.Request) -> web.Response:
        old, new = int(request.query["from"]), int(request.query["to"])
        tree = self.trees[self.served]
        assert len(tree) == new
        return web.json_response(
            {
                "from": old,
                "to": new,
                "hashes": [base64.b64encode(h).decode() for h in consistency_proof(tree, old)],
            }
        )


Serve = Callable[[FakeLog], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[TestServer] = []

    async def start(log: FakeLog) -> str:
        server = TestServer(log.app(), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for s in servers:
        await s.close()


async def run(monitor: Monitor, polls: int) -> list[str]:
    lines: list[str] = []
    await monitor.run(interval=0, count=polls, report=lines.append)
    return lines


async def test_monitor_follows_a_growing_log(serve: Serve, tmp_path: Path) -> None:
    tree = leaves(40)
    url = await serve(FakeLog([tree[:3], tree[:3], tree[:17], tree]))
    lines = await run(Monitor(log_base_url(url), SIGNER.verifier, state=tmp_path / "state.json"), 4)
    assert lines == [
        "ok first checkpoint: size 3",
        "ok unchanged: size 3",
        "ok grew: size 3 -> 17, consistent",
        "ok grew: size 17 -> 40, consistent",
    ]


async def test_monitor_stops_on_a_fork(serve: Serve) -> None:
    url = await serve(FakeLog([leaves(6), leaves(6, b"evil")]))
    with pytest.raises(SplitView, match="fork at size 6"):
        await run(Monitor(log_base_url(url), SIGNER.verifier), 2)


async def test_monitor_remembers_across_restarts(serve: Serve, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    tree = leaves(20)
    url = await serve(FakeLog([tree]))
    assert await run(Monitor(log_base_url(url), SIGNER.verifier, state=state), 1) == [
        "ok first checkpoint: size 20"
    ]
    # A different server (or the same one, later) now shows a shorter history.
    url = await serve(FakeLog([tree[:11]]))
    monitor = Monitor(log_base_url(url), SIGNER.verifier, state=state)
    monitor.load_state()
    with pytest.raises(SplitView, match="rolled back: size 20 was signed, now 11"):
        await run(monitor, 1)


async def test_monitor_refuses_a_checkpoint_by_another_key(serve: Serve) -> None:
    url = await serve(FakeLog([leaves(4)], signer=generate_signer(ORIGIN)))
    with pytest.raises(UnverifiedNote):
        await run(Monitor(log_base_url(url), SIGNER.verifier), 1)


async def test_monitor_refuses_a_bad_signature_by_its_key(serve: Serve) -> None:
    # Same name and key id as the pinned key, different key: the signature fails outright.
    impostor = generate_signer(ORIGIN)
    object.__setattr__(impostor, "verifier", SIGNER.verifier)
    url = await serve(FakeLog([leaves(4)], signer=impostor))
    with pytest.raises(InvalidNoteSignature):
        await run(Monitor(log_base_url(url), SIGNER.verifier), 1)


async def test_an_unreachable_log_is_reported_and_retried(tmp_path: Path) -> None:
    lines = await run(Monitor("http://127.0.0.1:9/v1/log", SIGNER.verifier, request_timeout=2), 2)
    assert len(lines) == 2 and all(
        line.startswith("warning: GET http://127.0.0.1:9/v1/log/checkpoint") for line in lines
    )


def test_state_for_another_key_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text('{"key": "other+00000000+AQ==", "checkpoint": ""}')
    with pytest.raises(SplitView, match="written for another key"):
        Monitor("http://x/v1/log", SIGNER.verifier, state=state).load_state()
