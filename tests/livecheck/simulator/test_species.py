"""The simulated drivers reproduce the facts they are built from (DESIGN §6, docs/liveness.md)."""

import itertools
import math
import random
import statistics

from livecheck.simulator.attacks import CUBISM_BREATH, CubismEyeBlink, Live2DIdle, ReplayDriver
from livecheck.simulator.driver import gesture_for, min_jerk
from livecheck.simulator.human import HumanDriver, HumanParams, human_tracker


def _onsets(level, duration: float, dt: float = 0.005, thr: float = 0.5) -> list[float]:
    out, prev = [], 0.0
    for i in range(int(duration / dt)):
        t = i * dt
        v = level(t)
        if prev < thr <= v:
            out.append(t)
        prev = v
    return out


def test_cubism_eye_blink_is_uniform_and_identical() -> None:
    blink = CubismEyeBlink(random.Random(1))
    onsets = _onsets(blink.closure, 600.0)
    ibis = [b - a for a, b in itertools.pairwise(onsets)]
    assert min(ibis) >= 0.3 - 0.01 and max(ibis) <= 7.3 + 0.01
    assert abs(statistics.mean(ibis) - 3.8) < 0.3  # 0.3 s closure + mean of U[0, 7)
    # Every closure reaches 1.0 and lasts 0.3 s (closing 0.1, closed 0.05, opening 0.15).
    fresh = CubismEyeBlink(random.Random(1))
    spans, peak, start = [], 0.0, None
    for i in range(int(120 / 0.001)):
        t = i * 0.001
        v = fresh.closure(t)
        if v > 0 and start is None:
            start, peak = t, v
        elif v > 0:
            peak = max(peak, v)
        elif start is not None:
            spans.append((round(t - start, 2), peak))
            start = None
    assert spans and all(s == (0.3, 1.0) for s in spans)


def test_live2d_breath_uses_the_sample_periods() -> None:
    d = Live2DIdle(random.Random(2))
    assert {k: v[1] for k, v in CUBISM_BREATH.items()} == {
        "yaw": 6.5345,
        "pitch": 3.5345,
        "roll": 5.5345,
        "body": 15.5345,
    }
    (_y0, p0, *_), _ = d.truth(0.0)
    (_y1, p1, *_), _ = d.truth(3.5345)
    assert abs(p1 - p0) < 1e-9  # one full pitch cycle later
    (_, _, _, el, er, jaw), face = d.truth(10.0)
    assert el == er and jaw == 0.0 and face


def test_people_blink_like_people() -> None:
    rates, partials = [], []
    for seed in range(6):
        rng = random.Random(seed)
        p = HumanParams.draw(rng)
        d = HumanDriver(rng, p, human_tracker(rng, False))
        peaks, onsets, prev, cur = [], [], 0.0, 0.0
        for i in range(int(300 / 0.01)):
            t = i * 0.01
            (_, _, _, el, er, _), _ = d.truth(t)
            m = (el + er) / 2 - p.eye_rest
            if prev < 0.2 <= m:
                onsets.append(t)
                cur = m
            if onsets and t - onsets[-1] < 0.5:
                cur = max(cur, m)
            elif cur:
                peaks.append(cur / (1 - p.eye_rest))
                cur = 0.0
            prev = m
        rates.append(len(onsets) / 5.0)
        partials.append(sum(x < 0.8 for x in peaks) / max(1, len(peaks)))
    assert 8 <= statistics.median(rates) <= 30
    assert 0.15 <= statistics.median(partials) <= 0.75


def test_human_and_script_answers_differ() -> None:
    rng = random.Random(3)
    people = [gesture_for("turn_head_left", 0.0, rng, human=True) for _ in range(20)]
    bots = [gesture_for("turn_head_left", 0.0, rng, human=False) for _ in range(20)]
    assert len({g.amplitude for g in people}) > 10
    assert len({(g.amplitude, g.rise_s) for g in bots}) == 1
    assert min_jerk(0.0) == 0.0 and min_jerk(1.0) == 1.0 and abs(min_jerk(0.5) - 0.5) < 1e-12


def test_a_replay_ignores_the_present() -> None:
    d = ReplayDriver(random.Random(4))
    assert d.recorded_frames()
    assert d.on_challenge("c1", "nod", 6.0, 10.0) in (None, 10.1)
    frames = d.frames_until(30.0)
    assert frames and all(b.t > a.t for a, b in itertools.pairwise(frames))
    assert all(math.isfinite(f.yaw) for f in frames)
