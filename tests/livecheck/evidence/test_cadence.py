"""Timestamp cadence: fixed clock, uniform jitter, a tracker's wobble and drops."""

import random

from livecheck.evidence.cadence import Cadence
from livecheck.evidence.policy import MotionPolicy


def _run(ts: list[float]) -> dict[str, float]:
    c = Cadence(MotionPolicy())
    for i in range(0, len(ts), 10):
        c.update(ts[i : i + 10])
    return {e.code: e.llr for e in c.evidence()}


def test_fixed_clock() -> None:
    assert _run([500.0 + i / 30 for i in range(1200)])["cadence_fixed"] < 0


def test_fixed_clock_rounded_to_milliseconds() -> None:
    ts = [round((500.0 + i / 30) * 1000) / 1000 for i in range(1200)]
    assert _run(ts)["cadence_fixed"] < 0


def test_uniformly_jittered_intervals() -> None:
    rng = random.Random(1)
    t, ts = 500.0, []
    for _ in range(3000):
        ts.append(t)
        t += 1 / 30 + rng.uniform(-0.004, 0.004)
    assert _run(ts)["cadence_uniform_jitter"] < 0


def test_a_camera_wobbles_and_drops() -> None:
    rng = random.Random(2)
    ts = []
    for i in range(3000):
        if rng.random() < 0.02:
            continue
        ts.append(500.0 + i / 30 + rng.gauss(0, 0.002))
    ts.sort()
    codes = _run(ts)
    assert codes["cadence_wobble"] > 0


def test_rounded_camera_times_are_not_read_as_uniform_noise() -> None:
    rng = random.Random(3)
    ts = sorted(round((500.0 + i / 30 + rng.gauss(0, 0.003)) * 1000) / 1000 for i in range(3000))
    assert set(_run(ts)) == {"cadence_wobble"}


def test_needs_enough_samples() -> None:
    assert _run([500.0 + i / 30 for i in range(100)]) == {}
