"""The bench's in-process server is the real protocol core; the independent bona fide generator."""

from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest

from livecheck.policy import parse_policy
from livecheck.simulator import BONA_FIDE_ALT, SimSession, run_session
from livecheck.simulator.alt import AltHuman
from livecheck.simulator.run import session_result, total_of
from livecheck.simulator.served import ProtocolServer


def _run(species: str, seed: int, duration: float = 120.0) -> tuple[SimSession, ProtocolServer]:
    sim = SimSession(species, seed)
    server = ProtocolServer(sim.references, seed=seed)
    run_session(sim, server, duration)
    return sim, server


class TestProtocolServer:
    def test_a_person_is_challenged_answers_and_is_judged_human(self) -> None:
        sim, server = _run("human", 3)
        assert server.engine is not None  # the evidence engine, built from the policy's [evidence]
        assert sim.challenges and server.outcomes
        assert any(o.result == "passed" for o in server.outcomes)
        assert sim.verdicts[0]["state"] == "pending"  # PROTOCOL.md: a first pending verdict
        assert sim.verdicts[-1]["state"] == "human"
        assert all(v["reasons"] for v in sim.verdicts)

    def test_challenges_keep_the_policy_spacing(self) -> None:
        sim, _ = _run("human", 4, 180.0)
        times = [c["_t"] for c in sim.challenges]
        c = ProtocolServer([]).policy.challenges
        assert len(times) >= 5
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= c.mean_interval_s - c.jitter_s - 0.1
        assert max(gaps) <= c.mean_interval_s + c.jitter_s + 0.1

    def test_a_renderer_is_terminated_with_its_reasons(self) -> None:
        sim, _ = _run("live2d_idle", 5)
        last = sim.verdicts[-1]
        assert last["state"] == "violation" and last["action"] == "terminate"
        assert sim.terminated
        assert {r["code"] for r in last["reasons"]} & {"blinks_all_full", "blinks_identical", "cadence_fixed"}

    def test_the_same_seed_gives_the_same_session(self) -> None:
        a, b = _run("ai_driver", 6, 90.0)[0], _run("ai_driver", 6, 90.0)[0]
        assert [(v["state"], v["score"]) for v in a.verdicts] == [
            (v["state"], v["score"]) for v in b.verdicts
        ]

    def test_the_policy_evidence_table_configures_the_engine(self) -> None:
        # Evidence alone never decides before 100 s here (hard rules still may): a person stays pending.
        policy = parse_policy("[evidence.verdict]\nmin_observe_s = 100\nmax_pending_s = 120\n")
        sim = SimSession("human", 3)
        server = ProtocolServer(sim.references, policy=policy, seed=3)
        run_session(sim, server, 90.0)
        assert server.engine is not None and server.engine.policy == policy.evidence
        assert {v["state"] for v in sim.verdicts} == {"pending"}

    def test_a_likeness_swap_is_caught_with_real_references(self) -> None:
        sim = SimSession("likeness_swap", 7)
        refs = [random.Random(1).randbytes(32)]
        sim.use_references(refs)
        assert sim.references == refs
        run_session(sim, ProtocolServer(refs, seed=7), 60.0)
        assert sim.verdicts[-1]["state"] == "violation"
        assert sim.verdicts[-1]["reasons"][0]["code"] == "likeness_mismatch"

    def test_references_must_be_pdq_hashes(self) -> None:
        with pytest.raises(ValueError, match="32-byte"):
            SimSession("human", 1).use_references([b"short"])


def test_total_of_inverts_the_score() -> None:
    assert total_of({"score": 1 / (1 + math.exp(-2.5))}) == pytest.approx(2.5)
    assert total_of({"score": 0.0}) < -29 and total_of({"score": 1.0}) > 29
    assert total_of({"score": 0.3, "total": -4.0}) == -4.0
    sim, _ = _run("human", 8, 60.0)
    assert session_result(sim).min_total is not None


class TestAltHuman:
    def test_deterministic_and_well_formed(self) -> None:
        def collect(seed: int) -> list[dict]:
            sim, out, t = SimSession(BONA_FIDE_ALT, seed), [], 0.0
            while t < 20.0:
                t += 0.5
                out += sim.messages_until(t)
            return out

        a, b = collect(2), collect(2)
        assert a == b and a != collect(3)
        ts = [x for m in a if m["type"] == "tracking" for x in m["ts"]]
        assert all(y > x for x, y in itertools.pairwise(ts))

    def test_blinks_at_a_person_rate(self) -> None:
        rates = []
        for seed in range(5):
            d = AltHuman(random.Random(seed))
            frames = d.frames_until(120.0)
            lids = [(f.eye_l + f.eye_r) / 2 for f in frames]
            onsets = sum(1 for a, b in itertools.pairwise(lids) if a < d.eye_rest + 0.25 <= b)
            rates.append(onsets / 2.0)
        assert 8 <= statistics.median(rates) <= 30

    def test_answers_start_190_to_250_ms_after_the_prompt(self) -> None:
        d = AltHuman(random.Random(4))
        d.miss_p = 0.0
        starts = []
        for i in range(40):
            shown = d.on_challenge(f"c{i}", "turn_head_left", 6.0, 10.0 * i)
            assert shown is not None
            starts.append(d.moves[-1].start - shown)
        assert min(starts) >= 0.15 and max(starts) <= 0.3
