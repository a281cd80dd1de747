"""Blink detection with hysteresis and the blink statistics (intervals, shape, eye sync)."""

import math
import random

from livecheck.evidence.blinks import BlinkFeatures, talk_rate_evidence
from livecheck.evidence.policy import BlinkPolicy


def _run(level_l, level_r, duration: float, rate: float = 30.0, face=None) -> BlinkFeatures:
    b = BlinkFeatures(BlinkPolicy())
    ts = [100.0 + i / rate for i in range(int(duration * rate))]
    for i in range(0, len(ts), 10):
        chunk = ts[i : i + 10]
        b.update(
            chunk,
            [level_l(t) for t in chunk],
            [level_r(t) for t in chunk],
            [face(t) if face else True for t in chunk],
        )
    return b


def _train(onsets, durs, peaks):
    def level(t: float) -> float:
        for on, d, p in zip(onsets, durs, peaks, strict=True):
            if on <= t <= on + d:
                return p * (1 - abs(2 * (t - on) / d - 1))
        return 0.02

    return level


def _codes(b: BlinkFeatures) -> dict[str, float]:
    return {e.code: e.llr for e in b.evaluate()}


def test_detects_each_blink_and_its_duration() -> None:
    onsets = [101.0 + 3.1 * k for k in range(10)]
    lvl = _train(onsets, [0.3] * 10, [1.0] * 10)
    b = _run(lvl, lvl, 35.0)
    assert b.count == 10
    durs = b._r_dur.values()
    # Between the two hysteresis levels of a 0.3 s triangle: about 0.3 * (1 - 0.27 - 0.14) / 1.
    assert all(0.1 < d < 0.3 for d in durs)
    assert max(durs) - min(durs) < 0.01
    ibis = b.intervals()
    assert len(ibis) == 9 and all(abs(x - 3.1) < 0.02 for x in ibis)


def test_noise_around_one_level_does_not_split_a_blink() -> None:
    rng = random.Random(3)

    # A slow closure that dithers around the closing level for half a second, then opens.
    def lvl(t: float) -> float:
        u = t - 101.0
        if 0 <= u < 0.5:
            return 0.3 + rng.uniform(-0.04, 0.04)
        return 0.02

    b = _run(lvl, lvl, 5.0)
    assert b.count == 1


def test_partial_and_full_closures_are_told_apart() -> None:
    onsets = [101.0 + 2.5 * k for k in range(12)]
    peaks = [1.0 if k % 2 else 0.55 for k in range(12)]
    lvl = _train(onsets, [0.25] * 12, peaks)
    b = _run(lvl, lvl, 33.0)
    ev = {e.code: e for e in b.evaluate()}
    assert "blinks_partial_mix" in ev and ev["blinks_partial_mix"].llr > 0
    assert "6 of 12" in ev["blinks_partial_mix"].detail


def test_all_full_identical_blinks_count_against() -> None:
    onsets = [101.0 + 2.7 * k for k in range(12)]
    lvl = _train(onsets, [0.3] * 12, [1.0] * 12)
    codes = _codes(_run(lvl, lvl, 36.0))
    assert codes["blinks_all_full"] < -2
    assert codes["blinks_identical"] < 0
    assert codes["eyes_locked"] < 0


def test_uniform_intervals_read_as_uniform_and_lognormal_as_human() -> None:
    rng = random.Random(7)
    uni, t = [], 101.0
    for _ in range(45):
        uni.append(t)
        t += 0.3 + 7.0 * rng.random()
    lvl = _train(uni, [0.3] * len(uni), [1.0] * len(uni))
    assert _codes(_run(lvl, lvl, t - 100 + 1))["blink_intervals_uniform"] < 0

    rng = random.Random(8)
    ln, t = [], 101.0
    for _ in range(45):
        ln.append(t)
        t += max(0.4, 2.5 * math.exp(rng.gauss(0.0, 0.8)))
    durs = [rng.uniform(0.15, 0.35) for _ in ln]
    lvl = _train(ln, durs, [1.0] * len(ln))
    assert _codes(_run(lvl, lvl, t - 100 + 1))["blink_intervals_lognormal"] > 0


def test_clocked_blinks_are_regular() -> None:
    onsets = [101.0 + 4.0 * k + (0.1 if k % 2 else -0.1) for k in range(14)]
    lvl = _train(onsets, [0.3] * 14, [1.0] * 14)
    codes = _codes(_run(lvl, lvl, 60.0))
    assert codes["blink_intervals_regular"] < -1


def test_separately_measured_eyes_are_not_locked() -> None:
    rng = random.Random(2)
    onsets = [101.0 + 2.5 * k for k in range(10)]
    left = _train(onsets, [0.25] * 10, [rng.uniform(0.7, 1.0) for _ in onsets])
    right_on = [o + 0.006 for o in onsets]
    right = _train(right_on, [0.25] * 10, [rng.uniform(0.7, 1.0) for _ in onsets])
    noisy_r = lambda t: right(t) + rng.gauss(0.0, 0.01)  # noqa: E731  # a tiny inline signal
    codes = _codes(_run(left, noisy_r, 28.0))
    assert codes.get("eyes_independent", 0) > 0
    assert "eyes_locked" not in codes


def test_face_loss_breaks_the_interval_chain() -> None:
    onsets = [101.0, 104.0, 107.0, 110.0]
    lvl = _train(onsets, [0.3] * 4, [1.0] * 4)
    b = _run(lvl, lvl, 12.0, face=lambda t: not (105.0 <= t < 106.0))
    # Intervals 101->104 and 107->110 are measurable; 104->107 spans the lost face.
    assert [round(x, 1) for x in b.intervals()] == [3.0, 3.0]


def test_long_closures_are_not_blinks() -> None:
    lvl = lambda t: 0.95 if 101.0 <= t < 104.0 else 0.02  # noqa: E731  # eyes shut for 3 s
    assert _run(lvl, lvl, 6.0).count == 0


def test_no_blinks_for_a_minute_counts_against() -> None:
    b = _run(lambda t: 0.02, lambda t: 0.02, 70.0)
    codes = _codes(b)
    assert codes["no_blinks"] < 0


def test_blinks_faster_while_talking_is_human_evidence() -> None:
    rng = random.Random(4)
    speech = [(100.0 + 40 * k, 120.0 + 40 * k) for k in range(6)]
    onsets = []
    for a, b in speech:
        onsets += sorted(rng.uniform(a, b) for _ in range(10))  # 30/min talking
        onsets += sorted(rng.uniform(b, b + 20) for _ in range(5))  # 15/min silent
    talky = talk_rate_evidence(sorted(onsets), speech, 340.0)
    assert talky and talky[0].llr > 0
    assert "faster while talking" in talky[0].detail
    # A clock that ignores speech: half the time is talk, so about half the blinks fall in it.
    flat = [100.0 + 240.0 * (k + 0.5) / 90 for k in range(90)]
    clocked = talk_rate_evidence(flat, speech, 340.0)
    assert clocked and clocked[0].llr < 0 < talky[0].llr


def test_state_round_trip_continues_detection() -> None:
    import json

    onsets = [101.0 + 2.0 * k for k in range(10)]
    lvl = _train(onsets, [0.3] * 10, [1.0] * 10)
    b = _run(lvl, lvl, 10.05)
    back = BlinkFeatures.from_state(BlinkPolicy(), json.loads(json.dumps(b.to_state())))
    assert back.count == b.count
    ts = [110.05 + i / 30 for i in range(300)]
    for x in (b, back):
        x.update(ts, [lvl(t) for t in ts], [lvl(t) for t in ts], [True] * len(ts))
    assert back.count == b.count == 10
    assert back.intervals() == b.intervals()
