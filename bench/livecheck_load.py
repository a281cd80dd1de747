"""Load-test the live server (DESIGN §9): N concurrent sessions over M connections from another process.

    .venv/bin/python bench/livecheck_load.py [--sessions 5000] [--connections 50] [--duration 60]
        [--ramp 25] [--saturate 10] [--loop uvloop|asyncio] [--dsn URL]
        [--out bench/results/livecheck_load.json]

One run, on one machine, three processes at a time (the server, the load, PostgreSQL):

1. A fresh database (an embedded PostgreSQL in a temporary folder, or ``--dsn``), migrated, with an
   ingest key and ``N / 10`` verified operators each owning one active avatar (rows written directly:
   admission reads them; how they got there is not what is measured).
2. A livecheck node in its own process (``livecheck.server.serve_livecheck``, the code ``avatar-registry
   serve livecheck`` runs, on uvloop or the default asyncio loop per ``--loop``), with the default policy
   except: ten sessions per avatar and per operator (the bench has fewer avatars than sessions), room for
   ``N / M`` sessions per connection, and a violation verdict that warns instead of terminating, so that
   the offered load stays the same for the whole run whatever the engine concludes about synthetic
   people. Everything else — the evidence engine, challenges at the policy's rate, checkpoints every 5 s to
   PostgreSQL, verdicts every 10 s — runs as in production.
3. The load process opens the N sessions over M connections (spread over ``--ramp`` seconds), then for
   ``--duration`` seconds each session sends one ``tracking`` message of 10 samples per second, at its
   own phase within the second. The samples are people simulated by ``livecheck.simulator`` (blinks,
   head micro-motion, speech), 10 per second of stream, pre-encoded, so the load process spends its time
   on sockets. Challenges are acknowledged with ``challenge.shown``, as a client would.
4. Measured: **verdict latency** — from sending the message a verdict's ``at_seq`` names to receiving
   that verdict, for every verdict that changes the session's state or action (those are decided by
   the message that carries the evidence; the periodic verdicts restate the state on a timer, so their
   "age" measures the timer, not the server); **server RSS per session** — (RSS in the steady window −
   RSS of the idle node) / N; **CPU** of the server, the load process and PostgreSQL over the steady
   window; **throughput** — client messages the server processed per second in the steady window.
5. The same load (same M connections, same messages, same schedule) against a bare ``websockets`` echo
   server on the same loop, in the same run: its throughput (messages echoed per second) and round-trip
   latency. **Throughput ratio** = livecheck / echo at that load.
6. ``--saturate`` seconds of each connection sending as fast as the server answers (for the node: the
   same sessions' next tracking messages), in batches of 50 each closed by a fence message the server
   must answer before the next batch; messages per second, for both servers. Reported as
   ``saturation_ratio``: the node's full processing against a bare echo (information; the target is at
   the load above).

Prints a summary and writes ``bench/results/livecheck_load.json``. Targets (DESIGN §9): 5,000 sessions,
verdict latency p99 < 50 ms, < 20 KB per session, throughput ≥ 50% of echo. About 4 minutes with the
defaults on the 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "livecheck_load.json"
TRACES = 24  # distinct simulated people; sessions share them at different phases
TRACE_S = 120  # seconds of stream per trace (wrapped around if the run is longer)
SAMPLES = 10  # samples per tracking message, one message per second
SAT_BATCH = 50  # saturation: messages per connection between two fences
FENCE_S = 0.1  # steady: each connection sends a fence this often
SESSIONS_PER_AVATAR = 10
TARGETS = {"sessions": 5000, "p99_ms": 50.0, "kb_per_session": 20.0, "throughput_ratio": 0.5}


# ----------------------------------------------------------------------------------------------- traces


class Second:
    """One second of a simulated person's tracking: 10 samples, raw and pre-encoded."""

    __slots__ = ("channels", "encoded", "face", "offsets")

    def __init__(self, offsets: list[float], channels: dict[str, list[float]], faces: list[bool]) -> None:
        self.offsets = offsets  # sample times within the second
        self.channels = channels
        self.encoded = json.dumps(channels)
        self.face = "" if all(faces) else ',"face":' + json.dumps(faces)


def build_traces(n: int, seconds: int) -> list[list[Second]]:
    """``n`` simulated people (``livecheck.simulator``, species ``human``), ``seconds`` each."""
    from livecheck.simulator import SimSession

    traces = []
    for seed in range(n):
        sim = SimSession("human", 10_000 + seed)
        samples: list[tuple[float, dict[str, float], bool]] = []
        for msg in sim.messages_until(float(seconds + 1)):
            if msg["type"] != "tracking":
                continue
            ch = msg["channels"]
            for i, ts in enumerate(msg["ts"]):
                face = msg["face"][i] if msg.get("face") else True
                samples.append((ts - sim.offset, {k: v[i] for k, v in ch.items()}, face))
        per_second: list[Second] = []
        j = 0
        for k in range(seconds):
            window = []
            while j < len(samples) and samples[j][0] < k + 1:
                if samples[j][0] >= k:
                    window.append(samples[j])
                j += 1
            if len(window) < SAMPLES:
                raise SystemExit(f"trace {seed}: only {len(window)} samples in second {k}")
            step = len(window) / SAMPLES
            picked = [window[int(i * step)] for i in range(SAMPLES)]
            names = picked[0][1].keys()
            per_second.append(
                Second(
                    [round(t - k, 6) for t, _, _ in picked],
                    {name: [round(p[1][name], 4) for p in picked] for name in names},
                    [p[2] for p in picked],
                )
            )
        traces.append(per_second)
    return traces


def gesture(action: str, dt: float) -> dict[str, float]:
    """What a person doing ``action`` does to the channels ``dt`` seconds after starting (PROTOCOL.md
    "Challenges": head angles in the person's own directions; thresholds passed with a margin)."""
    if dt < 0 or dt > 2.0:
        return {}
    ramp = min(1.0, dt / 0.3)
    if action in ("turn_head_left", "turn_head_right"):
        sign = 1.0 if action == "turn_head_left" else -1.0
        return {"headYaw": sign * 25.0 * ramp} if dt < 1.2 else {}
    if action == "nod":
        return {"headPitch": 12.0 * ramp} if dt < 0.5 else {}
    if action == "blink_twice":
        level = 0.95 if dt < 0.2 or 0.6 <= dt < 0.8 else 0.05
        return {"eyeBlinkLeft": level, "eyeBlinkRight": level}
    if action == "open_mouth":
        return {"jawOpen": 0.85} if dt < 1.0 else {}
    return {}


# ------------------------------------------------------------------------------------------ load process


class Session:
    __slots__ = ("base", "gestures", "last", "sent", "seq", "sid", "trace")

    def __init__(self, sid: str, trace: int, base: float) -> None:
        self.sid = sid
        self.trace = trace
        self.base = base  # the sender clock at stream second 0
        self.seq = 0
        self.sent: dict[int, float] = {}  # seq -> perf_counter when sent (the last few)
        self.last: tuple[str, str] | None = None  # last verdict's (state, action)
        self.gestures: list[tuple[str, float]] = []  # challenge actions being performed: (action, start)

    def tracking(self, k: int, traces: list[list[Second]]) -> str:
        """The message of stream second ``k`` (sender clock ``base + k`` to ``base + k + 1``)."""
        self.seq += 1
        sec = traces[self.trace][k % len(traces[self.trace])]
        start = self.base + k
        ts = [round(start + o, 6) for o in sec.offsets]
        channels = sec.encoded
        if self.gestures:
            self.gestures = [(a, g) for a, g in self.gestures if g + 2.0 >= start]
            if self.gestures:
                chans = {name: list(values) for name, values in sec.channels.items()}
                for action, g0 in self.gestures:
                    for i, t in enumerate(ts):
                        for name, value in gesture(action, t - g0).items():
                            chans[name][i] = value
                channels = json.dumps(chans)
        return (
            f'{{"type":"tracking","session":"{self.sid}","seq":{self.seq},'
            f'"ts":[{",".join(map(repr, ts))}],"channels":{channels}{sec.face}}}'
        )


class Fences:
    """One connection's fences: a probe the server answers in order, after everything sent before it
    (for the node an ``unknown_session`` error, for echo its echo). Their round trips are the processing
    latency, and they tell a verdict decided by a message from one decided later, on a timer."""

    __slots__ = ("answered", "next", "pending", "rtts", "timeline")

    def __init__(self) -> None:
        self.next = 0
        self.pending: dict[int, float] = {}  # fence number -> perf_counter when sent
        self.answered: deque[tuple[float, float]] = deque(maxlen=64)  # (sent, answered)
        self.rtts: list[float] = []
        self.timeline: list[tuple[float, float]] = []  # (sent, round trip) in the steady phase

    def answered_between(self, after: float, before: float) -> bool:
        """Whether a fence sent after ``after`` was answered before ``before``."""
        return any(sent > after and ans < before for sent, ans in self.answered)


async def load(args: argparse.Namespace) -> dict[str, Any]:
    """The load process: open sessions, stream, measure. Returns its numbers."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    traces = build_traces(TRACES, TRACE_S)
    n, m = args.sessions, args.connections
    echo = args.target == "echo"
    avatars = args.avatar_list
    loop = asyncio.get_running_loop()
    # Latencies by perf_counter: uvloop's loop.time() has millisecond steps, cached per iteration.
    clock = time.perf_counter
    rng = random.Random(7)
    sessions = [
        Session(f"bench-{i}-{rng.getrandbits(32):08x}", i % TRACES, 1000.0 + 3.0 * i) for i in range(n)
    ]
    groups = [sessions[i::m] for i in range(m)]
    fences = [Fences() for _ in range(m)]
    latencies: list[float] = []
    timer_decided: list[float] = []
    errors: dict[str, int] = {}
    counts = dict.fromkeys(
        ("accepted", "rejected", "verdicts", "changes", "challenges", "terminated", "echoes", "fences"), 0
    )
    sent = {"steady": 0, "saturate": 0}
    phase = {"name": "ramp"}
    sat_fences: dict[int, asyncio.Future[float]] = {}
    started: dict[str, float] = {}  # session -> loop time its stream second 0 was sent
    accepted: dict[str, asyncio.Future[None]] = {}
    websockets_ = []
    for _ in range(m):
        ws = await connect(
            args.url,
            additional_headers={"Authorization": f"Bearer {args.key}"},
            subprotocols=["avatar-live.v1"],  # type: ignore[list-item]  # Subprotocol is a NewType of str
            compression=None,
            max_size=None,
            max_queue=None,  # read everything the server sends at once; we only count it
            ping_interval=None,
            open_timeout=30,
        )
        websockets_.append(ws)

    def sender_clock(s: Session) -> float:
        # The end of the stream second most recently sent, on the session's sender clock.
        return s.base + (loop.time() - started.get(s.sid, loop.time())) + 1.0

    def fence_answered(ci: int, msg: dict[str, Any], now: float) -> None:
        f = fences[ci]
        t = f.pending.pop(msg["seq"] if echo else msg.get("ref_seq", 0), None)
        if t is not None:
            f.answered.append((t, now))
            if phase["name"] == "steady":
                f.rtts.append(now - t)
                f.timeline.append((t, now - t))
        fut = sat_fences.get(ci)
        if fut is not None and not fut.done():
            fut.set_result(loop.time())

    async def reader(ci: int, ws: Any) -> None:
        by_id = {s.sid: s for s in groups[ci]}
        async for text in ws:
            now = clock()
            msg = json.loads(text)
            if msg.get("session") == "fence":
                counts["fences"] += 1
                fence_answered(ci, msg, now)
                continue
            kind = msg.get("type")
            if echo:
                counts["echoes"] += 1
                continue
            if kind == "verdict":
                counts["verdicts"] += 1
                s = by_id[msg["session"]]
                key = (msg["state"], msg["action"])
                if s.last is not None and key != s.last and phase["name"] == "steady":
                    counts["changes"] += 1
                    t = s.sent.get(msg["at_seq"])
                    if t is not None:
                        # Decided by that message, or later on a timer? A fence sent after the message and
                        # answered before this verdict: the server decided it after that fence.
                        bucket = timer_decided if fences[ci].answered_between(t, now) else latencies
                        bucket.append(now - t)
                s.last = key
            elif kind == "session.accepted":
                counts["accepted"] += 1
                accepted[msg["session"]].set_result(None)
            elif kind == "session.rejected":
                counts["rejected"] += 1
                accepted[msg["session"]].set_exception(RuntimeError(f"rejected: {msg}"))
            elif kind == "challenge":
                # A person: the prompt is shown at once and acted out 400 ms later.
                counts["challenges"] += 1
                s = by_id[msg["session"]]
                shown_t = sender_clock(s)
                s.gestures.append((msg["action"], shown_t + 0.4))
                s.seq += 1
                shown = {
                    "type": "challenge.shown",
                    "session": s.sid,
                    "seq": s.seq,
                    "t": round(shown_t, 6),
                    "challenge_id": msg["challenge_id"],
                }
                await ws.send(json.dumps(shown))
            elif kind == "session.terminate":
                counts["terminated"] += 1
            elif kind == "error":
                code = msg.get("code", "?")
                errors[code] = errors.get(code, 0) + 1

    readers = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(websockets_)]

    async def fence(ci: int, ws: Any) -> None:
        f = fences[ci]
        f.next += 1
        f.pending[f.next] = clock()
        await ws.send(f'{{"type":"chat","session":"fence","seq":{f.next},"t":0.0,"message_id":"f"}}')

    # -- ramp: open every session, spread over --ramp seconds
    ramp_start = loop.time()
    if not echo:
        per = args.ramp / max(1, n)
        for idx in range(n):
            s = sessions[idx]
            ws = websockets_[idx % m]
            a = avatars[(idx // SESSIONS_PER_AVATAR) % len(avatars)]
            accepted[s.sid] = loop.create_future()
            opening = {
                "type": "session.open",
                "session": s.sid,
                "avatar_id": a["avatar_id"],
                "operator_id": a["operator_id"],
            }
            await ws.send(json.dumps(opening))
            delay = ramp_start + (idx + 1) * per - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.wait_for(asyncio.gather(*accepted.values()), timeout=120)
    ramp_s = loop.time() - ramp_start

    # -- steady: one message per session per second, each session at its own phase; fences between
    phases = {s.sid: (i / n) for i, s in enumerate(sessions)}
    t0 = loop.time() + 1.0
    for s in sessions:
        started[s.sid] = t0 + phases[s.sid]
    print(json.dumps({"event": "steady_start", "at": time.time()}), flush=True)

    async def sender(ci: int, ws: Any) -> None:
        group = sorted(groups[ci], key=lambda s: phases[s.sid])
        next_fence = t0 + FENCE_S * (ci / m)
        for k in range(args.duration):
            for s in group:
                due = t0 + k + phases[s.sid]
                while next_fence <= due:
                    delay = next_fence - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await fence(ci, ws)
                    next_fence += FENCE_S
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                text = s.tracking(k, traces)
                s.sent[s.seq] = clock()
                if len(s.sent) > 32:
                    s.sent.pop(next(iter(s.sent)))
                await ws.send(text)
                sent["steady"] += 1

    async def drained(ci: int, ws: Any) -> float:
        # A last fence: answered once the server has processed everything this connection sent.
        sat_fences[ci] = loop.create_future()
        await fence(ci, ws)
        return await asyncio.wait_for(sat_fences[ci], timeout=300)

    phase["name"] = "steady"
    steady_start = loop.time()
    clock_start = clock()
    await asyncio.gather(*(sender(i, ws) for i, ws in enumerate(websockets_)))
    sent_s = loop.time() - steady_start
    # Throughput is what the server processed: the clock stops when the last message has been.
    steady_s = max(await asyncio.gather(*(drained(i, ws) for i, ws in enumerate(websockets_)))) - steady_start
    sat_fences.clear()
    await asyncio.sleep(1.0)  # the last verdicts
    phase["name"] = "saturate"
    print(json.dumps({"event": "steady_end", "at": time.time()}), flush=True)

    # -- saturation: each connection sends batches of SAT_BATCH back to back, each followed by a fence the
    # server must answer before the next batch: every connection keeps the server busy with at most
    # SAT_BATCH + 1 messages in flight, so what is measured is processing, not how much the sockets can
    # buffer (megabytes on loopback, seconds of work).
    sat_start = loop.time()
    sat_until = sat_start + args.saturate

    async def flood(ci: int, ws: Any) -> None:
        group = groups[ci]
        k = args.duration
        i = 0
        while loop.time() < sat_until:
            for _ in range(SAT_BATCH):
                s = group[i % len(group)]
                i += 1
                if i % len(group) == 0:
                    k += 1
                await ws.send(s.tracking(k, traces))
                sent["saturate"] += 1
            sat_fences[ci] = loop.create_future()
            await fence(ci, ws)
            await asyncio.wait_for(sat_fences[ci], timeout=60)

    sat_error = None
    if args.saturate > 0:
        try:
            await asyncio.gather(*(flood(i, ws) for i, ws in enumerate(websockets_)))
        except (ConnectionClosed, TimeoutError) as exc:
            sat_error = f"{type(exc).__name__}: {exc}"
    sat_s = loop.time() - sat_start

    for ws in websockets_:
        await ws.close()
    for r in readers:
        r.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return {
        "target": args.target,
        "sessions": n,
        "connections": m,
        "ramp_s": round(ramp_s, 2),
        "steady_s": round(steady_s, 2),
        "messages_steady": sent["steady"],
        "sending_s": round(sent_s, 2),
        "throughput_msgs_per_s": round(sent["steady"] / steady_s, 1),
        "verdict_latency_ms": summarize(sorted(x * 1000 for x in latencies)),
        "timer_decided_verdicts_ms": summarize(sorted(x * 1000 for x in timer_decided)),
        "processing_latency_ms": summarize(sorted(x * 1000 for f in fences for x in f.rtts)),
        # The same, by 5-second slices of the steady phase: where the tail comes from.
        "processing_latency_p99_ms_by_5s": by_slice(
            [(t - clock_start, rtt) for f in fences for t, rtt in f.timeline], 5.0
        ),
        "saturation": {
            "messages": sent["saturate"],
            "seconds": round(sat_s, 2),
            "msgs_per_s": round(sent["saturate"] / sat_s, 1) if sat_s and not sat_error else None,
            "error": sat_error,
        },
        "counts": counts,
        "errors": errors,
    }


def by_slice(points: list[tuple[float, float]], width: float) -> list[float]:
    """p99 (ms) of the values in each ``width``-second slice of time."""
    slices: dict[int, list[float]] = {}
    for t, v in points:
        slices.setdefault(int(t // width), []).append(v * 1000)
    return [summarize(sorted(slices[k])).get("p99", 0.0) for k in sorted(slices)]


def summarize(xs: list[float]) -> dict[str, Any]:
    if not xs:
        return {"n": 0}

    def pct(p: float) -> float:
        return round(xs[min(len(xs) - 1, math.ceil(p / 100 * len(xs)) - 1)], 2)

    return {
        "n": len(xs),
        "p50": pct(50),
        "p90": pct(90),
        "p99": pct(99),
        "max": round(xs[-1], 2),
        "mean": round(statistics.fmean(xs), 2),
    }


# ----------------------------------------------------------------------------------- the servers' processes


async def echo_server(port: int) -> None:
    """A bare websockets echo server, configured as the node is (no compression, same size limit)."""
    from websockets.asyncio.server import serve

    async def handler(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(
        handler, "127.0.0.1", port, compression=None, max_size=65536, ping_interval=20
    ) as server:
        print(f"echo: ws://127.0.0.1:{port}", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        server.close()


async def live_server(dsn: str) -> None:
    from livecheck.config import LiveSettings
    from livecheck.server import serve_livecheck

    after = os.environ.get("BENCH_TRACEMALLOC")
    if after:
        # Diagnostic: where the node's memory is, this many seconds after start (top sites, to stderr).
        import tracemalloc

        async def report() -> None:
            await asyncio.sleep(float(after))
            for stat in tracemalloc.take_snapshot().statistics("lineno")[:30]:
                print(stat, file=sys.stderr, flush=True)

        tracemalloc.start(1)
        reporter = asyncio.create_task(report())
        await serve_livecheck(LiveSettings(), dsn)
        reporter.cancel()
        return
    await serve_livecheck(LiveSettings(), dsn)


def run_loop(main: Any, which: str) -> Any:
    if which == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


# ------------------------------------------------------------------------------------------ orchestration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def prepare_database(dsn: str, n_avatars: int) -> tuple[str, list[dict[str, str]]]:
    import asyncpg

    from registry import migrate
    from registry.keys import store as key_store
    from registry.roles import Role

    conn = await asyncpg.connect(dsn)
    try:
        await migrate.apply_migrations(conn)
        _, key = await key_store.create_key(conn, Role.INGEST, label="bench")
        rows = await conn.fetch(
            """WITH o AS (INSERT INTO operators (display_name, identity_status, verified_at)
                          SELECT 'bench ' || g, 'verified', now() FROM generate_series(1, $1) g RETURNING id)
               INSERT INTO avatars (owner_operator_id, name, name_trigrams, status)
               SELECT id, 'bench', '{}', 'active' FROM o RETURNING id, owner_operator_id""",
            n_avatars,
        )
    finally:
        await conn.close()
    return key, [{"avatar_id": str(r["id"]), "operator_id": str(r["owner_operator_id"])} for r in rows]


def postgres_processes(pgdata: Path | None) -> list[psutil.Process]:
    """The embedded PostgreSQL's server and its backends (none when the database is not ours)."""
    if pgdata is None:
        return []
    for p in psutil.process_iter(attrs=("name", "cmdline")):
        if p.info["name"] == "postgres" and str(pgdata) in " ".join(p.info["cmdline"] or []):
            try:
                return [p, *p.children(recursive=True)]
            except psutil.NoSuchProcess:
                return []
    return []


def cpu_of(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def start(cmd: list[str], env: dict[str, str], ready: str, log: Path) -> tuple[subprocess.Popen[str], str]:
    """Start a server process; its stderr goes to ``log`` (a pipe nobody reads would block it)."""
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(ready):
            return proc, line.strip()
    proc.kill()
    raise SystemExit(f"{cmd} did not start: {log.read_text()}")


def run_load_process(
    args: argparse.Namespace,
    target: str,
    url: str,
    key: str,
    avatars: Path,
    server: psutil.Process,
    pgdata: Path | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the load process against ``url``; sample the server while it streams."""
    cmd = [
        sys.executable,
        __file__,
        "--role",
        "load",
        "--target",
        target,
        "--url",
        url,
        "--key",
        key,
        "--avatars",
        str(avatars),
        "--sessions",
        str(args.sessions),
        "--connections",
        str(args.connections),
        "--duration",
        str(args.duration),
        "--ramp",
        str(args.ramp),
        "--saturate",
        str(args.saturate),
        "--loop",
        args.loop,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    client = psutil.Process(proc.pid)
    assert proc.stdout is not None
    rss: list[int] = []
    window: dict[str, float] = {}
    result: dict[str, Any] = {}
    sampling = threading.Event()

    def sample_rss() -> None:
        # The server's RSS once a second while the load is steady; its peak is what is reported.
        while sampling.is_set():
            with contextlib.suppress(psutil.NoSuchProcess):
                rss.append(server.memory_info().rss)
            time.sleep(1.0)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    for line in proc.stdout:
        msg = json.loads(line)
        if msg.get("event") == "steady_start":
            # Skip the first seconds: sessions are still warming their engines' first statistics.
            time.sleep(min(10.0, args.duration / 4))
            pg = postgres_processes(pgdata)
            window = {
                "t": time.monotonic(),
                "server": cpu_of([server]),
                "client": cpu_of([client]),
                "pg": cpu_of(pg),
            }
            sampling.set()
            sampler.start()
        elif msg.get("event") == "steady_end":
            sampling.clear()
            elapsed = time.monotonic() - window["t"]
            window = {
                "seconds": round(elapsed, 1),
                "server_cpu_pct": round(100 * (cpu_of([server]) - window["server"]) / elapsed, 1),
                "load_cpu_pct": round(100 * (cpu_of([client]) - window["client"]) / elapsed, 1),
                "postgres_cpu_pct": round(100 * (cpu_of(pg) - window["pg"]) / elapsed, 1),
            }
        else:
            result = msg
    proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f"load process failed ({proc.returncode})")
    window["server_rss_steady_mb"] = round(max(rss) / 2**20, 1) if rss else None
    window["server_rss_steady"] = max(rss) if rss else 0
    return result, window


def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="livecheck-bench-"))
    logs = args.logs or tmp
    logs.mkdir(parents=True, exist_ok=True)
    embedded = None
    pgdata = None
    children: list[subprocess.Popen[str]] = []
    try:
        if args.dsn:
            dsn = args.dsn
        else:
            from registry.db import EmbeddedPostgres

            embedded = EmbeddedPostgres(tmp / "pg")
            pgdata = embedded.pgdata
            print("starting an embedded PostgreSQL …", file=sys.stderr, flush=True)
            dsn = embedded.start()
        key, avatars = asyncio.run(prepare_database(dsn, math.ceil(args.sessions / SESSIONS_PER_AVATAR)))
        avatars_file = tmp / "avatars.json"
        avatars_file.write_text(json.dumps(avatars))
        per_connection = math.ceil(args.sessions / args.connections)
        policy = tmp / "policy.toml"
        policy.write_text(
            # The saturation phase sends as fast as the node takes messages: lift the per-connection rate
            # limit so it measures processing, not the limiter (the limiter has its own tests).
            f"[limits]\nmax_sessions = {per_connection + 10}\nmax_msgs_per_s = 1000000\n"
            f"[sessions]\nmax_sessions_per_avatar = {SESSIONS_PER_AVATAR}\n"
            f"max_sessions_per_operator = {SESSIONS_PER_AVATAR}\n"
            '[state_actions]\nviolation = "warn"\n'
            # The evidence engine keeps its own copy of the actions; the policy checks they agree.
            '[evidence.actions]\npending = "none"\nhuman = "none"\nat_risk = "warn"\nviolation = "warn"\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECHECK_")}
        port = free_port()
        env.update(
            DATABASE_URL=dsn,
            LIVECHECK_PORT=str(port),
            LIVECHECK_POLICY_FILE=str(policy),
            LIVECHECK_NODE_ID="bench-node",
            LIVECHECK_LOG_LEVEL="WARNING",
            LIVECHECK_ENGINE=args.engine,
        )
        print("starting the livecheck node …", file=sys.stderr, flush=True)
        node_proc, banner = start(
            [sys.executable, __file__, "--role", "server", "--dsn", dsn, "--loop", args.loop]
            + (["--profile", str(args.profile)] if args.profile else []),
            env,
            "livecheck:",
            logs / "node.log",
        )
        children.append(node_proc)
        server = psutil.Process(node_proc.pid)
        time.sleep(2.0)
        idle_rss = server.memory_info().rss
        print(
            f"streaming {args.sessions} sessions over {args.connections} connections …",
            file=sys.stderr,
            flush=True,
        )
        live, live_win = run_load_process(
            args, "live", f"ws://127.0.0.1:{port}/v1/live", key, avatars_file, server, pgdata
        )
        node_proc.send_signal(signal.SIGTERM)
        node_proc.wait(timeout=60)

        eport = free_port()
        print("the same load against a bare websockets echo server …", file=sys.stderr, flush=True)
        echo_proc, _ = start(
            [sys.executable, __file__, "--role", "echo", "--port", str(eport), "--loop", args.loop],
            env,
            "echo:",
            logs / "echo.log",
        )
        children.append(echo_proc)
        echo_server_proc = psutil.Process(echo_proc.pid)
        echo, echo_win = run_load_process(
            args, "echo", f"ws://127.0.0.1:{eport}", key, avatars_file, echo_server_proc, None
        )
        echo_proc.send_signal(signal.SIGTERM)
        echo_proc.wait(timeout=30)
    finally:
        for child in children:  # whatever went wrong, leave no server behind
            if child.poll() is None:
                child.kill()
                child.wait(timeout=30)
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    per_session_kb = (live_win["server_rss_steady"] - idle_rss) / args.sessions / 1024
    ratio = live["throughput_msgs_per_s"] / echo["throughput_msgs_per_s"]
    sat_live, sat_echo = live["saturation"]["msgs_per_s"], echo["saturation"]["msgs_per_s"]
    p99 = live["verdict_latency_ms"].get("p99")
    summary = {
        "sessions": args.sessions,
        "verdict_latency_p50_ms": live["verdict_latency_ms"].get("p50"),
        "verdict_latency_p99_ms": p99,
        "server_rss_per_session_kb": round(per_session_kb, 2),
        "server_cpu_pct": live_win["server_cpu_pct"],
        "throughput_msgs_per_s": live["throughput_msgs_per_s"],
        "echo_throughput_msgs_per_s": echo["throughput_msgs_per_s"],
        "throughput_ratio": round(ratio, 3),
        "saturation_ratio": round(sat_live / sat_echo, 3) if sat_live and sat_echo else None,
        "meets_targets": {
            "sessions": args.sessions >= TARGETS["sessions"] and live["counts"]["accepted"] == args.sessions,
            "p99": p99 is not None and p99 < TARGETS["p99_ms"],
            "memory": per_session_kb < TARGETS["kb_per_session"],
            "throughput": ratio >= TARGETS["throughput_ratio"],
        },
    }
    return {
        # Other processes' load during the run (1-minute load average at the end): on a shared 2-core
        # machine the node's figures depend on it.
        "load_average_1m_end": round(os.getloadavg()[0], 2),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "args": {
            k: v
            for k, v in vars(args).items()
            if k in ("sessions", "connections", "duration", "ramp", "saturate", "loop", "engine")
        },
        "node_banner": banner,
        "summary": summary,
        "live": live | {"window": live_win, "server_rss_idle_mb": round(idle_rss / 2**20, 1)},
        "echo": echo | {"window": echo_win},
        "targets": TARGETS,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--role", choices=["orchestrate", "load", "server", "echo"], default="orchestrate")
    p.add_argument("--sessions", type=int, default=5000)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--duration", type=int, default=60)
    p.add_argument("--ramp", type=float, default=25.0)
    p.add_argument("--saturate", type=float, default=10.0)
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    p.add_argument("--dsn")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--logs", type=Path, help="keep the servers' logs in this folder")
    p.add_argument("--profile", type=Path, help="profile the node (cProfile stats to this file)")
    p.add_argument(
        "--engine", choices=["auto", "evidence", "challenge"], default="evidence", help="the node's engine"
    )
    # Internal: the roles' arguments.
    p.add_argument("--target", choices=["live", "echo"], default="live")
    p.add_argument("--url")
    p.add_argument("--key")
    p.add_argument("--avatars")
    p.add_argument("--port", type=int)
    args = p.parse_args()
    if args.role == "load":
        args.avatar_list = json.loads(Path(args.avatars).read_text()) if args.target == "live" else []
        print(json.dumps(run_loop(load(args), args.loop)), flush=True)
    elif args.role == "server" and args.profile:
        import cProfile

        with cProfile.Profile() as prof:
            run_loop(live_server(args.dsn), args.loop)
        prof.dump_stats(args.profile)
    elif args.role == "server":
        run_loop(live_server(args.dsn), args.loop)
    elif args.role == "echo":
        run_loop(echo_server(args.port), args.loop)
    else:
        result = orchestrate(args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
