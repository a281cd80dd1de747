"""EvidenceEngine end to end: the Engine interface, checkpoints, bounded state, simulated sessions."""

import gc
import json
import tracemalloc

import pytest

from livecheck.engine import ChallengeOutcome, Engine
from livecheck.evidence import EvidenceEngine, EvidencePolicy
from livecheck.simulator import ProtocolServer, SimSession, run_session

from .signals import feed, frames


def _drive(engine: EvidenceEngine, sim: SimSession, until: float, start: float = 0.0) -> None:
    """Feed ``sim``'s messages to ``engine`` directly (no referee), assessing as a server would."""
    t = start
    while t < until:
        t += 0.5
        for m in sim.messages_until(t):
            if m["type"] == "tracking":
                engine.on_tracking(m["ts"], m["channels"], m["face"], t)
            elif m["type"] == "chat":
                engine.on_chat(m["t"], m["message_id"], t)
            elif m["type"] == "speech":
                engine.on_speech(m["t0"], m["t1"], m.get("reply_to"), t)
            elif m["type"] == "frame":
                engine.on_frame(m["t"], bytes.fromhex(m["pdq"]), m["quality"], t)
        engine.assess(t)


def test_implements_the_engine_protocol() -> None:
    e: Engine = EvidenceEngine(EvidencePolicy(), [], 1)
    assert e.assess(0.0).state == "pending"


def test_snapshot_restore_continues_identically() -> None:
    sim_a = SimSession("human", 11)
    sim_b = SimSession("human", 11)
    a = EvidenceEngine(None, sim_a.references, 3)
    _drive(a, sim_a, 70.0)
    b = EvidenceEngine.restore(json.loads(json.dumps(a.snapshot())), None, sim_a.references)
    _drive(EvidenceEngine(None, sim_b.references, 3), sim_b, 70.0)  # advance the twin simulator
    for eng, sim in ((a, sim_a), (b, sim_b)):
        _drive(eng, sim, 140.0, start=70.0)
    ra, rb = a.assess(140.0), b.assess(140.0)
    assert (ra.state, ra.score, ra.reasons) == (rb.state, rb.score, rb.reasons)
    assert a.snapshot() == b.snapshot()


def test_restore_refuses_an_unknown_version() -> None:
    snap = EvidenceEngine().snapshot()
    snap["v"] = 99
    with pytest.raises(ValueError, match="expected 1, got 99"):
        EvidenceEngine.restore(snap)


def test_session_state_stays_under_20_kb() -> None:
    sim = SimSession("llm_tts", 4)
    policy = EvidencePolicy()  # one policy object is shared by every session on a node
    tracemalloc.start()
    try:
        e = EvidenceEngine(policy, sim.references, 4)
        _drive(e, sim, 240.0)
        for i in range(40):
            e.on_challenge(
                ChallengeOutcome(f"c{i}", "nod", "passed", 400.0 + i, ("x",) if i % 5 == 0 else ())
            )
        e.assess(240.0)
        size_json = len(json.dumps(e.snapshot()))
        gc.collect()
        with_engine = tracemalloc.get_traced_memory()[0]
        del e  # what deleting the session's engine frees is what the session held
        gc.collect()
        held = with_engine - tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert size_json < 20_000, size_json
    assert 1_000 < held < 20_000, held


def test_a_silent_feed_of_a_still_face_never_reads_as_a_person() -> None:
    e = EvidenceEngine()
    times = list(frames(200.0))
    recv = 0.0
    for k in range(0, len(times), 150):  # assess every 5 s, as the server does
        recv = feed(
            e, times[k : k + 150], lambda t: (0.0, 0.0, 0.0, 0.0, 0.0, 0.0), recv0=times[k] - times[0]
        )
        a = e.assess(recv)
    assert a.state in ("at_risk", "violation")
    assert a.score < 0.5


def test_no_tracking_at_all_ends_as_absent_operator() -> None:
    e = EvidenceEngine()
    e.on_chat(1.0, "hello", 0.0)
    assert e.assess(60.0).state == "at_risk"
    a = e.assess(200.0)
    assert a.state == "violation"
    assert a.reasons[0].code == "absent_operator"


@pytest.mark.parametrize(("species", "seed"), [("human", 1), ("human", 2), ("human", 5)])
def test_simulated_people_read_as_human(species: str, seed: int) -> None:
    sim = SimSession(species, seed)
    srv = ProtocolServer(sim.references, seed=seed)
    r = run_session(sim, srv, 150.0)
    assert r.final_state == "human", r.verdicts[-1]
    assert r.first_decision_s is not None and r.first_decision_s <= 120.0


@pytest.mark.parametrize(
    ("species", "seed", "code"),
    [
        ("live2d_idle", 1, None),
        ("ai_driver", 2, None),
        ("llm_tts", 3, None),
        ("likeness_swap", 1, "likeness_mismatch"),
    ],
)
def test_attacks_reach_violation_with_reasons(species: str, seed: int, code: str | None) -> None:
    sim = SimSession(species, seed)
    srv = ProtocolServer(sim.references, seed=seed)
    r = run_session(sim, srv, 150.0)
    assert r.worst_state == "violation"
    last = r.verdicts[-1]
    assert last["action"] == "terminate" and sim.terminated
    assert last["reasons"] and all(x["detail"] for x in last["reasons"])
    if code:
        assert last["reasons"][0]["code"] == code
