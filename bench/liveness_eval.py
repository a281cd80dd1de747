"""Liveness as a presentation-attack detector (ISO/IEC 30107-3): APCER per attack species, BPCER, DET.

Runs simulated sessions (``livecheck.simulator``) of every species through the real server side and
reports, per species, the share of attack sessions that never reach ``violation`` (APCER), the share of
bona fide sessions that do (BPCER) or end ``at_risk``, the stream time of the first non-pending verdict,
and whether every verdict gave its reasons; plus a DET curve of the violation threshold on the engine's
total log-odds (the logit of each verdict's ``score``), as a PNG.

Two transports, one policy (``livecheck/default_policy.toml`` or ``--policy``):

- ``--transport core`` (default): each session drives the protocol core in process — a sans-I/O
  ``LiveConnection`` with the real challenge scheduling and detection (``livecheck/challenges.py``) and
  the ``EvidenceEngine`` the server builds from the policy's ``[evidence]`` table. Fast: both cores, a
  few minutes for the whole set.
- ``--transport ws``: the same sessions streamed in real time through the real websocket server (a
  livecheck node in its own process, PostgreSQL, avatars registered through the registry's HTTP API;
  ``bench/liveness_ws.py``), ``--concurrency`` at a time.

Bona fide sessions come from two generators: ``human`` (the simulator the engine was developed with) and
``human_alt`` (an independent one written from DESIGN §6's facts with other modelling choices; never
tuned on). Tune on ``--set tune`` (seeds 0..N-1, tuning parameter ranges); report ``--set heldout``
(seeds from 1,000,000, held-out parameter ranges).

    .venv/bin/python bench/liveness_eval.py --set heldout --humans 400 --attacks 120
    .venv/bin/python bench/liveness_eval.py --set heldout --transport ws --concurrency 250
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from livecheck.policy import Policy, default_policy, load_policy  # after the path fix above
from livecheck.simulator import (
    ATTACK_SPECIES,
    BONA_FIDE,
    BONA_FIDE_ALT,
    BONA_FIDE_SPECIES,
    SimSession,
    run_session,
)
from livecheck.simulator.run import SessionResult
from livecheck.simulator.served import ProtocolServer

HELDOUT_BASE = 1_000_000
_RANK = {"human": 0, "pending": 1, "at_risk": 2, "violation": 3}
_POLICY: Policy | None = None  # per worker process


def _init_worker(policy_path: str | None) -> None:
    global _POLICY
    _POLICY = load_policy(Path(policy_path)) if policy_path else default_policy()


def summarise_one(species: str, seed: int, r: SessionResult) -> dict[str, Any]:
    """What the report keeps of one session: states, timing, totals, and the last verdict's reasons."""
    last = r.verdicts[-1] if r.verdicts else {}
    return {
        "species": species,
        "seed": seed,
        "final": r.final_state,
        "worst": r.worst_state,
        "first_s": None if r.first_decision_s is None else round(r.first_decision_s, 2),
        "total": None if r.final_total is None else round(r.final_total, 3),
        "min_total": None if r.min_total is None else round(r.min_total, 3),
        "verdicts": len(r.verdicts),
        "verdicts_without_reasons": sum(1 for v in r.verdicts if not v.get("reasons")),
        "reasons": [[x["code"], x["detail"]] for x in last.get("reasons", [])],
    }


def slim(r: dict[str, Any]) -> None:
    """Keep the last verdict's reason details only where the outcome is an error or a warning (the
    sessions a reader looks into); elsewhere its reason codes suffice."""
    correct = (r["final"] == "human") if r["species"] in BONA_FIDE_SPECIES else (r["worst"] == "violation")
    if correct and r["reasons"] and isinstance(r["reasons"][0], list):
        r["reasons"] = [code for code, _ in r["reasons"]]


def _one(job: tuple[str, int, bool, float]) -> dict[str, Any]:
    species, seed, heldout, duration = job
    sim = SimSession(species, seed, heldout=heldout)
    server = ProtocolServer(sim.references, policy=_POLICY, seed=seed)
    return summarise_one(species, seed, run_session(sim, server, duration))


def jobs_for(set_name: str, humans: int, alt_humans: int, attacks: int, duration: float) -> list[Any]:
    heldout = set_name == "heldout"
    base = HELDOUT_BASE if heldout else 0
    jobs = [(BONA_FIDE, base + i, heldout, duration) for i in range(humans)]
    jobs += [(BONA_FIDE_ALT, base + i, heldout, duration) for i in range(alt_humans)]
    jobs += [(sp, base + i, heldout, duration) for sp in ATTACK_SPECIES for i in range(attacks)]
    return jobs


def _progress(done: int, total: int, elapsed: float) -> None:
    if done % 100 == 0 or done == total:
        print(f"  {done}/{total} sessions, {elapsed:.0f} s", file=sys.stderr, flush=True)


def run_core(jobs: list[Any], workers: int, policy_path: str | None) -> list[dict[str, Any]]:
    t0 = time.perf_counter()
    out: list[dict[str, Any]] = []
    with multiprocessing.Pool(workers, initializer=_init_worker, initargs=(policy_path,)) as pool:
        for res in pool.imap_unordered(_one, jobs, chunksize=4):
            out.append(res)
            _progress(len(out), len(jobs), time.perf_counter() - t0)
    return out


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    groups: list[tuple[str, list[dict[str, Any]]]] = []
    for sp in (*BONA_FIDE_SPECIES, *ATTACK_SPECIES):
        rs = [r for r in results if r["species"] == sp]
        if rs:
            groups.append((sp, rs))
    bona = [r for r in results if r["species"] in BONA_FIDE_SPECIES]
    if bona and len({r["species"] for r in bona}) > 1:
        groups.insert(len(BONA_FIDE_SPECIES), ("bona_fide_all", bona))
    for sp, rs in groups:
        n = len(rs)
        firsts = sorted(r["first_s"] for r in rs if r["first_s"] is not None)
        row: dict[str, Any] = {"species": sp, "n": n}
        if sp in BONA_FIDE_SPECIES or sp == "bona_fide_all":
            row["BPCER"] = sum(r["worst"] == "violation" for r in rs) / n
            row["at_risk_final"] = sum(r["final"] == "at_risk" for r in rs) / n
            row["at_risk_ever"] = sum(_RANK[r["worst"]] >= _RANK["at_risk"] for r in rs) / n
        else:
            row["APCER"] = sum(r["worst"] != "violation" for r in rs) / n
        row["human_final"] = sum(r["final"] == "human" for r in rs) / n
        row["first_verdict_median_s"] = statistics.median(firsts) if firsts else None
        row["first_verdict_p95_s"] = firsts[min(len(firsts) - 1, int(0.95 * len(firsts)))] if firsts else None
        row["first_verdict_max_s"] = firsts[-1] if firsts else None
        row["never_decided"] = (n - len(firsts)) / n
        row["verdicts_without_reasons"] = sum(r["verdicts_without_reasons"] for r in rs)
        rows.append(row)
    return rows


def det_png(results: list[dict[str, Any]], path: Path, title: str) -> None:
    """DET curve: sweep the violation threshold on the lowest total log-odds each session reached."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    bona = [
        r["min_total"] for r in results if r["species"] in BONA_FIDE_SPECIES and r["min_total"] is not None
    ]
    fig, ax = plt.subplots(figsize=(6, 6))
    ticks = [0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99]
    for sp in ATTACK_SPECIES:
        att = [r["min_total"] for r in results if r["species"] == sp and r["min_total"] is not None]
        if not att or not bona:
            continue
        xs, ys = [], []
        for th in sorted(set(bona + att)):
            bpcer = sum(b <= th for b in bona) / len(bona)
            apcer = sum(a > th for a in att) / len(att)
            # Rates of 0 and 1 are drawn at 0.05% and 99.95% (the probit of 0 is -inf).
            xs.append(norm.ppf(min(max(bpcer, 5e-4), 1 - 5e-4)))
            ys.append(norm.ppf(min(max(apcer, 5e-4), 1 - 5e-4)))
        ax.plot(xs, ys, label=sp)
    ax.set_xticks([norm.ppf(t) for t in ticks], [f"{100 * t:g}%" for t in ticks])
    ax.set_yticks([norm.ppf(t) for t in ticks], [f"{100 * t:g}%" for t in ticks])
    ax.set_xlabel("BPCER (bona fide sessions reaching the threshold)")
    ax.set_ylabel("APCER (attack sessions never reaching it)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cpu(batches: int = 20_000) -> None:
    """Per-message CPU of the engine: ``on_tracking`` with 10-sample batches, and ``assess``."""
    from livecheck.evidence import EvidenceEngine, EvidencePolicy

    sim = SimSession(BONA_FIDE, 7)
    msgs: list[dict[str, Any]] = []
    t = 0.0
    while sum(len(m["ts"]) for m in msgs) < batches * 10:
        t += 5.0
        msgs += [m for m in sim.messages_until(t) if m["type"] == "tracking"]
    samples = [
        (ts, {k: v[i] for k, v in m["channels"].items()}, m["face"][i])
        for m in msgs
        for i, ts in enumerate(m["ts"])
    ]
    rebatched = []
    for k in range(0, batches * 10, 10):
        chunk = samples[k : k + 10]
        rebatched.append(
            (
                [c[0] for c in chunk],
                {name: [c[1][name] for c in chunk] for name in chunk[0][1]},
                [c[2] for c in chunk],
            )
        )
    engine = EvidenceEngine(EvidencePolicy(), sim.references, 1)
    t0 = time.perf_counter()
    for i, (ts, ch, face) in enumerate(rebatched):
        engine.on_tracking(ts, ch, face, i * 0.33)
    per_batch = (time.perf_counter() - t0) / len(rebatched) * 1e6
    n = 2000
    t0 = time.perf_counter()
    for i in range(n):
        engine.assess(10_000.0 + i * 0.001)  # within one recompute period: the cheap path
    cheap = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for i in range(50):
        engine.assess(20_000.0 + i * 10.0)  # each one recomputes the spectrum and the fits
    full = (time.perf_counter() - t0) / 50 * 1e6
    print("what\tmicroseconds")
    print(f"on_tracking (10-sample batch)\t{per_batch:.1f}")
    print(f"assess (cached statistics)\t{cheap:.1f}")
    print(f"assess (recomputing statistics)\t{full:.1f}")
    recompute_s = EvidencePolicy().recompute_s
    load = 5000 * (per_batch + cheap + full / max(recompute_s, 1e-9)) / 1e6
    print(f"5,000 sessions at 1 batch/s (share of one core)\t{load:.2f}")


COLUMNS = [
    "species",
    "n",
    "APCER",
    "BPCER",
    "at_risk_final",
    "at_risk_ever",
    "human_final",
    "first_verdict_median_s",
    "first_verdict_p95_s",
    "first_verdict_max_s",
    "never_decided",
    "verdicts_without_reasons",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=("tune", "heldout"), default="heldout")
    ap.add_argument("--transport", choices=("core", "ws"), default="core")
    ap.add_argument("--humans", type=int, default=400, help="bona fide sessions of the main simulator")
    ap.add_argument(
        "--alt-humans", type=int, default=None, help="bona fide sessions of human_alt (default: --humans)"
    )
    ap.add_argument("--attacks", type=int, default=120, help="sessions per attack species")
    ap.add_argument("--duration", type=float, default=180.0, help="stream seconds per session")
    ap.add_argument("--workers", type=int, default=2, help="processes (core transport)")
    ap.add_argument("--concurrency", type=int, default=250, help="sessions at once (ws transport)")
    ap.add_argument(
        "--policy", type=Path, default=None, help="a live policy file (default: the packaged one)"
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--cpu", action="store_true", help="time the engine per message instead")
    args = ap.parse_args()
    if args.cpu:
        cpu()
        return
    alt = args.humans if args.alt_humans is None else args.alt_humans
    jobs = jobs_for(args.set, args.humans, alt, args.attacks, args.duration)
    policy_path = str(args.policy) if args.policy else None
    policy = load_policy(args.policy) if args.policy else default_policy()
    t0 = time.perf_counter()
    if args.transport == "core":
        results = run_core(jobs, args.workers, policy_path)
    else:
        if args.policy:
            raise SystemExit("--policy with --transport ws: set LIVECHECK_POLICY_FILE for the node instead")
        from bench.liveness_ws import run_ws

        results = asyncio.run(
            run_ws(jobs, concurrency=args.concurrency, summarise_one=summarise_one, progress=_progress)
        )
    wall = time.perf_counter() - t0
    results.sort(key=lambda r: (r["species"], r["seed"]))
    rows = summarise(results)
    for r in results:
        slim(r)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"liveness_{args.set}"
    meta = {
        "set": args.set,
        "transport": args.transport,
        "duration_s": args.duration,
        "policy_sha256": hashlib.sha256(policy.model_dump_json().encode()).hexdigest(),
        "challenge_interval_s": [
            policy.challenges.mean_interval_s - policy.challenges.jitter_s,
            policy.challenges.mean_interval_s + policy.challenges.jitter_s,
        ],
        "ran_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_s": round(wall, 1),
    }
    stem.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "summary": rows, "sessions": results}, indent=1)
    )
    det_png(
        results,
        stem.with_name(stem.name + "_det.png"),
        f"Liveness DET, {args.set} set, {args.transport} transport (total log-odds; hard rules excluded)",
    )
    print("\t".join(COLUMNS))
    for row in rows:
        vals = []
        for c in COLUMNS:
            v = row.get(c)
            vals.append(
                "-" if v is None else (f"{v:.3f}" if isinstance(v, float) and not math.isnan(v) else str(v))
            )
        print("\t".join(vals))


if __name__ == "__main__":
    main()
