"""Chat-to-reply latency: a pipeline's clock against a person's."""

import math
import random

from livecheck.evidence.policy import SpeechPolicy
from livecheck.evidence.replies import Replies


def _run(latencies: list[float | None], *, reply_to: bool) -> Replies:
    r = Replies(SpeechPolicy())
    t = 1000.0
    for i, lat in enumerate(latencies):
        r.on_chat(t, f"msg-{i}")
        if lat is not None:
            r.on_speech(t + lat, f"msg-{i}" if reply_to else None)
        t += 30.0
    return r


def test_machine_latencies() -> None:
    rng = random.Random(1)
    lats = [1.6 * math.exp(rng.gauss(0, 0.08)) for _ in range(8)]
    for reply_to in (True, False):
        codes = {e.code: e.llr for e in _run(lats, reply_to=reply_to).evidence(2000.0)}
        assert codes["reply_latency_machine"] < 0
        assert codes["replies_every_chat"] < 0


def test_human_latencies_and_unanswered_messages() -> None:
    rng = random.Random(2)
    lats = [4.0 * math.exp(rng.gauss(0, 0.7)) if rng.random() < 0.6 else None for _ in range(14)]
    codes = {e.code: e.llr for e in _run(lats, reply_to=True).evidence(2000.0)}
    assert codes["reply_latency_human"] > 0
    assert "replies_every_chat" not in codes


def test_reply_to_an_unknown_message_is_ignored() -> None:
    r = Replies(SpeechPolicy())
    r.on_chat(10.0, "a")
    r.on_speech(12.0, "zzz")
    assert r._lat.values() == []


def test_a_message_is_answered_once() -> None:
    r = Replies(SpeechPolicy())
    r.on_chat(10.0, "a")
    r.on_speech(12.0, None)
    r.on_speech(15.0, None)
    assert r._lat.values() == [2.0]
