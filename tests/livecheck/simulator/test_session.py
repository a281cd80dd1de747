"""SimSession as a protocol client: deterministic, well-formed messages, reactions to the server."""

import re

import pytest

from livecheck.simulator import SPECIES, SimSession

REQUIRED = {"headYaw", "headPitch", "headRoll", "eyeBlinkLeft", "eyeBlinkRight", "jawOpen"}
FIELDS = {
    "tracking": {"type", "session", "seq", "ts", "channels", "face", "source"},
    "chat": {"type", "session", "seq", "t", "message_id"},
    "speech": {"type", "session", "seq", "t0", "t1", "reply_to"},
    "frame": {"type", "session", "seq", "t", "pdq", "quality"},
    "challenge.shown": {"type", "session", "seq", "t", "challenge_id"},
}


def _collect(sim: SimSession, until: float, step: float = 0.5) -> list[dict]:
    out, t = [], 0.0
    while t < until:
        t += step
        out += sim.messages_until(t)
    return out


def test_same_seed_same_messages_different_seed_different() -> None:
    a = _collect(SimSession("human", 3), 30.0)
    b = _collect(SimSession("human", 3), 30.0)
    c = _collect(SimSession("human", 4), 30.0)
    assert a == b
    assert a != c


def test_step_size_does_not_change_the_stream() -> None:
    a = _collect(SimSession("llm_tts", 5), 40.0, step=0.25)
    b = _collect(SimSession("llm_tts", 5), 40.0, step=1.0)
    strip = lambda ms: [{k: v for k, v in m.items() if k != "seq"} for m in ms]  # noqa: E731  # local helper
    assert sorted(map(repr, strip(a))) == sorted(map(repr, strip(b)))


@pytest.mark.parametrize("species", SPECIES)
def test_messages_follow_the_protocol(species: str) -> None:
    sim = SimSession(species, 1)
    msgs = _collect(sim, 60.0)
    assert msgs, species
    assert [m["seq"] for m in msgs] == list(range(1, len(msgs) + 1))
    last_ts = float("-inf")
    for m in msgs:
        assert set(m) <= FIELDS[m["type"]], m["type"]
        assert m["session"] == sim.session_id
        if m["type"] == "tracking":
            assert 1 <= len(m["ts"]) <= 120
            assert set(m["channels"]) == REQUIRED
            assert all(len(v) == len(m["ts"]) for v in m["channels"].values())
            assert len(m["face"]) == len(m["ts"])
            assert all(b > a for a, b in zip(m["ts"], m["ts"][1:], strict=False))
            assert m["ts"][0] > last_ts
            last_ts = m["ts"][-1]
            for name in ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen"):
                assert all(0.0 <= v <= 1.0 for v in m["channels"][name])
        elif m["type"] == "frame":
            assert re.fullmatch(r"[0-9a-f]{64}", m["pdq"]) and 0 <= m["quality"] <= 100
        elif m["type"] == "speech":
            assert m["t1"] > m["t0"]
    assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", sim.session_id)


def test_a_person_shows_challenges_and_a_terminate_stops_the_client() -> None:
    sim = SimSession("human", 2)
    sim.messages_until(5.0)
    sim.on_server_message({"type": "challenge", "challenge_id": "c1", "action": "nod", "deadline_s": 6}, 5.0)
    shown = [m for m in sim.messages_until(7.0) if m["type"] == "challenge.shown"]
    assert len(shown) == 1 and shown[0]["challenge_id"] == "c1"
    assert shown[0]["t"] - sim.offset >= 5.0
    sim.on_server_message({"type": "session.terminate", "reason": "violation"}, 7.0)
    assert sim.terminated and sim.messages_until(20.0) == []


def test_unknown_species_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown species"):
        SimSession("robot", 1)
