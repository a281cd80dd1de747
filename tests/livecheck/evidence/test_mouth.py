"""Mouth against speech: loudness lip-sync, a still mouth, a person's varying lag."""

import math
import random

from livecheck.evidence.mouth import Mouth
from livecheck.evidence.policy import SpeechPolicy


def _session(jaw_of, utterances, duration: float = 120.0, rate: float = 30.0) -> Mouth:
    m = Mouth(SpeechPolicy())
    ts = [300.0 + i / rate for i in range(int(duration * rate))]
    pending = list(utterances)
    for i in range(0, len(ts), 10):
        chunk = ts[i : i + 10]
        m.update(chunk, [jaw_of(t) for t in chunk], [True] * len(chunk))
        # speech messages arrive after the utterance ends
        while pending and pending[0][1] + 0.2 <= chunk[-1]:
            m.on_speech(*pending.pop(0))
    return m


def _utterances(rng: random.Random) -> list[tuple[float, float]]:
    out, t = [], 302.0
    while t < 410.0:
        d = rng.uniform(1.5, 4.0)
        out.append((t, t + d))
        t += d + rng.uniform(2.0, 6.0)
    return out


def test_loudness_lip_sync_is_locked_to_the_audio() -> None:
    utt = _utterances(random.Random(1))

    def jaw(t: float) -> float:
        for a, b in utt:
            if a <= t <= b:
                return 0.3 + 0.3 * abs(math.sin(2 * math.pi * 4 * (t - a)))
        return 0.0

    m = _session(jaw, utt)
    codes = {e.code: e for e in m.evidence()}
    assert codes["lipsync_locked"].llr < 0
    assert codes["mouth_frozen_silence"].llr < 0


def test_a_person_leads_and_lags_the_voice() -> None:
    rng = random.Random(2)
    utt = _utterances(rng)
    lags = {a: rng.gauss(-0.05, 0.12) for a, _ in utt}

    def jaw(t: float) -> float:
        for a, b in utt:
            lag = lags[a]
            if a + lag <= t <= b + lag:
                return 0.35 + 0.25 * math.sin(2 * math.pi * 5 * (t - a - lag))
        return 0.05 + rng.gauss(0, 0.02)

    codes = {e.code: e.llr for e in _session(jaw, utt).evidence()}
    assert codes.get("lipsync_natural", 0) > 0
    assert "lipsync_locked" not in codes and "mouth_frozen_silence" not in codes


def test_speaking_with_a_still_mouth() -> None:
    utt = _utterances(random.Random(3))
    codes = {e.code: e.llr for e in _session(lambda t: 0.0, utt).evidence()}
    assert codes["mouth_static_speech"] < 0


def test_speech_intervals_are_kept() -> None:
    utt = _utterances(random.Random(4))
    m = _session(lambda t: 0.0, utt)
    assert m.speech_intervals()[-1] == utt[-1]


def test_state_round_trip() -> None:
    import json

    utt = _utterances(random.Random(5))
    m = _session(lambda t: 0.0, utt)
    back = Mouth.from_state(SpeechPolicy(), json.loads(json.dumps(m.to_state())))
    assert back.evidence() == m.evidence()
    assert back.speech_intervals() == m.speech_intervals()
