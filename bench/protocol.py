"""Throughput of the live protocol's pure core: ``LiveConnection.receive_text``, 10-sample tracking batches.

    .venv/bin/python bench/protocol.py [--sessions 1,100,1000,5000] [--seconds 20] [--engine challenge]

For each session count, sessions are spread over connections of ``max_sessions`` each and admitted; every
session sends one 10-sample ``tracking`` batch per simulated second (as the 5,000-session benchmark of
DESIGN §9 does) and answers each ``challenge`` with ``challenge.shown``; each connection is ticked once per
simulated second. Frames are JSON-encoded before the clock starts, so the figures are the protocol's own:
parsing, seq/ts rules, the challenge tracker, the engine and the verdicts, on one core.

Prints one TSV row per session count — messages/s, per-call latency (p50/p99/max µs), parse-only
messages/s for context, and the traced memory per session (``tracemalloc``, a separate pass over at most
1,000 sessions) — and writes ``bench/results/protocol.json``. About 15 s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

# Run from a checkout: the repository root holds `bench` (bench.common) and the packages.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile, write_results
from livecheck.engine import Engine
from livecheck.messages import parse_client_message
from livecheck.policy import Policy
from livecheck.protocol import LiveConnection

COLUMNS = [
    "engine",
    "sessions",
    "messages",
    "wall_s",
    "msgs_per_s",
    "p50_us",
    "p99_us",
    "max_us",
    "parse_only_msgs_per_s",
    "mem_per_session_kb",
]
PER_CONNECTION = 100


class Stream:
    """One session's client: a head that drifts, blinks now and then, sensor noise; 30 Hz samples."""

    def __init__(self, sid: str, rng: random.Random) -> None:
        self.sid = sid
        self.rng = rng
        self.seq = 0
        self.t = 1000.0 + rng.random() * 100  # sender's monotonic clock
        self.yaw = rng.gauss(0, 5)
        self.next_blink = self.t + rng.lognormvariate(1.0, 0.5)

    def tracking(self) -> str:
        rng = self.rng
        ts, yaw, pitch, roll, bl, br, jaw = [], [], [], [], [], [], []
        for _ in range(10):
            self.t += 1 / 30 + rng.gauss(0, 0.002)
            self.yaw = max(-60.0, min(60.0, self.yaw + rng.gauss(0, 0.3)))
            closed = self.next_blink <= self.t < self.next_blink + 0.15
            if self.t >= self.next_blink + 0.15:
                self.next_blink = self.t + rng.lognormvariate(1.0, 0.5)
            level = 0.9 if closed else 0.08
            ts.append(round(self.t, 4))
            yaw.append(round(self.yaw + rng.gauss(0, 0.2), 3))
            pitch.append(round(rng.gauss(0, 1.0), 3))
            roll.append(round(rng.gauss(0, 1.0), 3))
            bl.append(round(min(1.0, max(0.0, level + rng.gauss(0, 0.02))), 3))
            br.append(round(min(1.0, max(0.0, level + rng.gauss(0, 0.02))), 3))
            jaw.append(round(min(1.0, max(0.0, 0.1 + rng.gauss(0, 0.05))), 3))
        self.seq += 1
        return json.dumps(
            {
                "type": "tracking",
                "session": self.sid,
                "seq": self.seq,
                "ts": ts,
                "channels": {
                    "headYaw": yaw,
                    "headPitch": pitch,
                    "headRoll": roll,
                    "eyeBlinkLeft": bl,
                    "eyeBlinkRight": br,
                    "jawOpen": jaw,
                },
                "source": "arkit",
            }
        )

    def shown(self, challenge_id: str) -> str:
        self.seq += 1
        return json.dumps(
            {
                "type": "challenge.shown",
                "session": self.sid,
                "seq": self.seq,
                "t": self.t,
                "challenge_id": challenge_id,
            }
        )


def _engine_factory(name: str, policy: Policy) -> Any:
    if name == "challenge":
        return None  # LiveConnection's default: ChallengeEngine
    if name == "evidence":
        from livecheck.evidence.engine import EvidenceEngine  # optional: the full engine, when present

        counter = iter(range(10**9))

        def make(references: Any) -> Engine:
            return EvidenceEngine(None, references, next(counter))

        return make
    raise SystemExit(f"unknown engine {name!r}")


def run(n_sessions: int, seconds: int, engine: str, seed: int, timed: bool = True) -> dict[str, Any]:
    """Drive ``n_sessions`` for ``seconds`` simulated seconds; timings of every receive_text call."""
    policy = Policy.model_validate(
        {
            "limits": {"max_sessions": PER_CONNECTION, "max_msgs_per_s": 10_000.0},
            "challenges": {"mean_interval_s": 20.0, "jitter_s": 5.0},
        }
    )
    rng = random.Random(seed)
    factory = _engine_factory(engine, policy)
    conns: list[LiveConnection] = []
    streams: list[tuple[LiveConnection, Stream]] = []
    for i in range(n_sessions):
        if i % PER_CONNECTION == 0:
            conns.append(
                LiveConnection(
                    policy,
                    connection_id=f"c{len(conns)}",
                    rng=random.Random(rng.random()),
                    now=0.0,
                    new_engine=factory,
                )
            )
        conn = conns[-1]
        sid = f"s{i}"
        conn.receive_text(
            json.dumps({"type": "session.open", "session": sid, "avatar_id": "a", "operator_id": "o"}), 0.0
        )
        conn.admit(sid, 0.0)
        streams.append((conn, Stream(sid, random.Random(rng.random()))))
    by_id = {s.sid: s for _, s in streams}
    for conn in conns:
        conn.messages_to_send()
        conn.events_received()

    durations: list[float] = []
    texts: list[str] = []
    clock = time.perf_counter
    wall = 0.0
    for second in range(1, seconds + 1):
        for k, (conn, stream) in enumerate(streams):
            now = second + k / max(1, n_sessions)  # spread over the second
            text = stream.tracking()
            if timed and len(texts) < 2000:
                texts.append(text)
            t0 = clock()
            conn.receive_text(text, now)
            dt = clock() - t0
            wall += dt
            durations.append(dt)
        for conn in conns:
            t0 = clock()
            conn.tick(second + 0.999)
            wall += clock() - t0
            for out in conn.messages_to_send():
                if out.startswith('{"type":"challenge"'):
                    msg = json.loads(out)
                    stream = by_id[msg["session"]]
                    t0 = clock()
                    conn.receive_text(stream.shown(msg["challenge_id"]), second + 0.999)
                    dt = clock() - t0
                    wall += dt
                    durations.append(dt)
            conn.events_received()
    parse_rate = math.nan
    if timed and texts:
        for text in texts:  # warm up
            parse_client_message(text)
        rounds = max(1, 4000 // len(texts))
        t0 = clock()
        for _ in range(rounds):
            for text in texts:
                parse_client_message(text)
        parse_rate = rounds * len(texts) / (clock() - t0)
    return {"durations": durations, "wall": wall, "parse_rate": parse_rate, "conns": conns}


def memory_per_session(n_sessions: int, seconds: int, engine: str, seed: int) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = run(n_sessions, seconds, engine, seed, timed=False)
        del result["durations"]
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return used / n_sessions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="1,100,1000,5000", help="comma-separated session counts")
    parser.add_argument("--seconds", type=int, default=20, help="simulated seconds per run")
    parser.add_argument("--engine", default="challenge", choices=["challenge", "evidence"])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.sessions.split(",") if x]

    # Parse-only throughput, for context: what pydantic alone costs per frame.
    parse = run(1, 50, args.engine, args.seed)["parse_rate"]
    rows: list[dict[str, Any]] = []
    print("\t".join(COLUMNS))
    for n in counts:
        result = run(n, args.seconds, args.engine, args.seed)
        durations = result["durations"]
        del result
        mem = memory_per_session(min(n, 1000), min(args.seconds, 20), args.engine, args.seed)
        total = sum(durations)
        row = {
            "engine": args.engine,
            "sessions": n,
            "messages": len(durations),
            "wall_s": round(total, 3),
            "msgs_per_s": round(len(durations) / total),
            "p50_us": round(percentile(durations, 50) * 1e6, 1),
            "p99_us": round(percentile(durations, 99) * 1e6, 1),
            "max_us": round(max(durations) * 1e6, 1),
            "parse_only_msgs_per_s": round(parse),
            "mem_per_session_kb": round(mem / 1024, 2),
        }
        rows.append(row)
        print("\t".join(str(row[c]) for c in COLUMNS), flush=True)
    path = write_results(
        "protocol",
        {
            "what": "LiveConnection.receive_text for 10-sample tracking batches, one core",
            "seconds": args.seconds,
            "rows": rows,
        },
    )
    print(f"# wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
