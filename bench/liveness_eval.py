"""Liveness as a presentation-attack detector (ISO/IEC 30107-3): APCER per attack species, BPCER, DET.

Runs simulated sessions (``livecheck.simulator``) of every species through a server and reports, per
species, the share of attack sessions that never reach ``violation`` (APCER), the share of bona fide
sessions that do (BPCER) or end ``at_risk``, and the stream time of the first non-pending verdict; plus a
DET curve of the violation threshold on the engine's total log-odds, as a PNG.

Tune on ``--set tune`` (seeds 0..N-1, tuning parameter ranges); report ``--set heldout`` (seeds from
1,000,000, held-out parameter ranges never tuned on).

The server is chosen by ``make_transport``: today the in-process ``EngineServer`` (the evidence engine
plus a minimal challenge referee); switching to the real websocket server means returning a transport
with the same ``send`` / ``poll`` methods from there.

    .venv/bin/python bench/liveness_eval.py --set heldout --humans 400 --attacks 150
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from livecheck.simulator import (  # after the path fix above, so the bench runs from a checkout
    ATTACK_SPECIES,
    BONA_FIDE,
    EngineServer,
    SimSession,
    Transport,
    run_session,
)

HELDOUT_BASE = 1_000_000


def make_transport(sim: SimSession, seed: int) -> Transport:
    """The server a session is streamed through (swap for a websocket transport once the server lands)."""
    return EngineServer(sim.session_id, sim.references, seed=seed, challenge_interval_s=20.0)


def _one(job: tuple[str, int, bool, float]) -> dict[str, Any]:
    species, seed, heldout, duration = job
    sim = SimSession(species, seed, heldout=heldout)
    transport = make_transport(sim, seed)
    r = run_session(sim, transport, duration)
    total = transport.engine.total if isinstance(transport, EngineServer) else r.final_total
    last = r.verdicts[-1] if r.verdicts else {}
    return {
        "species": species,
        "seed": seed,
        "final": r.final_state,
        "worst": r.worst_state,
        "first_s": r.first_decision_s,
        "total": total,
        "min_total": min(x for x in (r.min_total, total) if x is not None) if total is not None else None,
        "reasons": [x["code"] for x in last.get("reasons", [])],
    }


def run(set_name: str, humans: int, attacks: int, duration: float, workers: int) -> list[dict[str, Any]]:
    heldout = set_name == "heldout"
    base = HELDOUT_BASE if heldout else 0
    jobs = [(BONA_FIDE, base + i, heldout, duration) for i in range(humans)]
    jobs += [(sp, base + i, heldout, duration) for sp in ATTACK_SPECIES for i in range(attacks)]
    t0 = time.perf_counter()
    out: list[dict[str, Any]] = []
    with multiprocessing.Pool(workers) as pool:
        for i, res in enumerate(pool.imap_unordered(_one, jobs, chunksize=4)):
            out.append(res)
            if (i + 1) % 100 == 0 or i + 1 == len(jobs):
                print(f"  {i + 1}/{len(jobs)} sessions, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return out


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for sp in (BONA_FIDE, *ATTACK_SPECIES):
        rs = [r for r in results if r["species"] == sp]
        if not rs:
            continue
        n = len(rs)
        firsts = sorted(r["first_s"] for r in rs if r["first_s"] is not None)
        row: dict[str, Any] = {"species": sp, "n": n}
        if sp == BONA_FIDE:
            row["BPCER"] = sum(r["worst"] == "violation" for r in rs) / n
            row["at_risk_final"] = sum(r["final"] == "at_risk" for r in rs) / n
            row["at_risk_ever"] = sum(r["worst"] == "at_risk" for r in rs) / n
            row["human_final"] = sum(r["final"] == "human" for r in rs) / n
        else:
            row["APCER"] = sum(r["worst"] != "violation" for r in rs) / n
            row["human_final"] = sum(r["final"] == "human" for r in rs) / n
        row["first_verdict_median_s"] = statistics.median(firsts) if firsts else None
        row["first_verdict_p95_s"] = firsts[min(len(firsts) - 1, int(0.95 * len(firsts)))] if firsts else None
        row["first_verdict_max_s"] = firsts[-1] if firsts else None
        row["never_decided"] = (n - len(firsts)) / n
        rows.append(row)
    return rows


def det_png(results: list[dict[str, Any]], path: Path) -> None:
    """DET curve: sweep the violation threshold on the lowest total log-odds each session reached."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    bona = [r["min_total"] for r in results if r["species"] == BONA_FIDE and r["min_total"] is not None]
    fig, ax = plt.subplots(figsize=(6, 6))
    ticks = [0.001, 0.01, 0.05, 0.2, 0.5, 0.8]
    for sp in ATTACK_SPECIES:
        att = [r["min_total"] for r in results if r["species"] == sp and r["min_total"] is not None]
        if not att or not bona:
            continue
        thresholds = sorted(set(bona + att))
        xs, ys = [], []
        for th in thresholds:
            bpcer = sum(b <= th for b in bona) / len(bona)
            apcer = sum(a > th for a in att) / len(att)
            xs.append(norm.ppf(min(max(bpcer, 5e-4), 1 - 5e-4)))
            ys.append(norm.ppf(min(max(apcer, 5e-4), 1 - 5e-4)))
        ax.plot(xs, ys, label=sp)
    ax.set_xticks([norm.ppf(t) for t in ticks], [f"{100 * t:g}%" for t in ticks])
    ax.set_yticks([norm.ppf(t) for t in ticks], [f"{100 * t:g}%" for t in ticks])
    ax.set_xlabel("BPCER (bona fide sessions reaching violation)")
    ax.set_ylabel("APCER (attack sessions not reaching violation)")
    ax.set_title("Liveness DET (total log-odds threshold; hard rules excluded)")
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
    # 5,000 sessions x 1 batch/s, with one full recompute every recompute_s, as a share of one core.
    recompute_s = EvidencePolicy().recompute_s
    load = 5000 * (per_batch + cheap + full / max(recompute_s, 1e-9)) / 1e6
    print(f"5,000 sessions at 1 batch/s (share of one core)\t{load:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=("tune", "heldout"), default="heldout")
    ap.add_argument("--humans", type=int, default=300)
    ap.add_argument("--attacks", type=int, default=100, help="sessions per attack species")
    ap.add_argument("--duration", type=float, default=180.0, help="stream seconds per session")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--cpu", action="store_true", help="time the engine per message instead")
    args = ap.parse_args()
    if args.cpu:
        cpu()
        return
    results = run(args.set, args.humans, args.attacks, args.duration, args.workers)
    rows = summarise(results)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"liveness_{args.set}"
    stem.with_suffix(".json").write_text(json.dumps({"summary": rows, "sessions": results}, indent=1))
    det_png(results, stem.with_name(stem.name + "_det.png"))
    cols = [
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
    ]
    print("\t".join(cols))
    for row in rows:
        vals = []
        for c in cols:
            v = row.get(c)
            vals.append(
                "-" if v is None else (f"{v:.3f}" if isinstance(v, float) and not math.isnan(v) else str(v))
            )
        print("\t".join(vals))


if __name__ == "__main__":
    main()
