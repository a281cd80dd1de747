"""Head-motion spectrum (lines vs broadband) and tracker noise."""

import math
import random

from livecheck.evidence.motion import HeadMotion
from livecheck.evidence.policy import MotionPolicy


def _run(pose, duration: float = 70.0, rate: float = 30.0) -> HeadMotion:
    h = HeadMotion(MotionPolicy())
    ts = [200.0 + i / rate for i in range(int(duration * rate))]
    for i in range(0, len(ts), 10):
        chunk = ts[i : i + 10]
        vals = [pose(t) for t in chunk]
        h.update(chunk, [v[0] for v in vals], [v[1] for v in vals], [v[2] for v in vals], [True] * len(chunk))
    return h


def _cubism(t: float) -> tuple[float, float, float]:
    return (
        7.5 * math.sin(2 * math.pi * t / 6.5345),
        4.0 * math.sin(2 * math.pi * t / 3.5345),
        5.0 * math.sin(2 * math.pi * t / 5.5345),
    )


def _person(seed: int):
    rng = random.Random(seed)
    state = [0.0, 0.0, 0.0]
    last = [None]

    def pose(t: float) -> tuple[float, float, float]:
        dt = 1 / 30 if last[0] is None else t - last[0]
        last[0] = t
        for i, (tau, sd) in enumerate(((8.0, 5.0), (5.0, 3.0), (10.0, 2.0))):
            a = math.exp(-dt / tau)
            state[i] = a * state[i] + sd * math.sqrt(1 - a * a) * rng.gauss(0, 1)
        return (state[0] + rng.gauss(0, 0.2), state[1] + rng.gauss(0, 0.2), state[2] + rng.gauss(0, 0.2))

    return pose


def test_cubism_breath_is_pure_tones_at_its_periods() -> None:
    ev = {e.code: e for e in _run(_cubism).spectrum_evidence()}
    assert ev["head_motion_tones"].llr <= -1.5
    # Lines at the published Cubism periods weigh more than lines anywhere else.
    assert ev["head_motion_cubism"].llr < ev["head_motion_tones"].llr
    assert "6.5345 s" in ev["head_motion_cubism"].detail


def test_tones_survive_uniform_jitter() -> None:
    rng = random.Random(1)
    jittered = lambda t: tuple(v + rng.uniform(-0.5, 0.5) for v in _cubism(t))  # noqa: E731  # inline signal
    codes = {e.code for e in _run(jittered).spectrum_evidence()}
    assert "head_motion_tones" in codes


def test_a_drifting_head_is_broadband() -> None:
    for seed in range(3):
        codes = {e.code: e.llr for e in _run(_person(seed)).spectrum_evidence()}
        assert codes.get("head_motion_broadband", 0) > 0, codes
        assert "head_motion_tones" not in codes


def test_a_still_head_has_no_noise() -> None:
    codes = {e.code for e in _run(lambda t: (0.0, 0.0, 0.0)).noise_evidence()}
    assert codes == {"tracker_noise_absent"}


def test_movement_outliers_do_not_hide_uniform_jitter() -> None:
    # Scripted ramps (a kink at each end) every few seconds, plus bounded uniform jitter: the kinks are
    # outliers of the second difference and are trimmed, so the jitter's flat shape still shows.
    rng = random.Random(9)

    def pose(t: float) -> tuple[float, float, float]:
        u = (t % 4.0) / 0.25
        ramp = 25.0 * min(1.0, u) if u < 4 else 0.0
        return (ramp + rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2))

    assert {e.code for e in _run(pose, duration=120.0).noise_evidence()} == {"tracker_noise_uniform"}


def test_spectrum_waits_for_thirty_seconds() -> None:
    assert _run(_cubism, duration=20.0).spectrum_evidence() == []


def test_rendered_motion_has_no_sensor_noise() -> None:
    codes = {e.code: e.llr for e in _run(_cubism).noise_evidence()}
    assert codes["tracker_noise_absent"] < -2


def test_uniform_jitter_is_told_from_gaussian_noise() -> None:
    rng = random.Random(5)
    uni = lambda t: tuple(v + rng.uniform(-0.4, 0.4) for v in _cubism(t))  # noqa: E731  # inline signal
    assert {e.code for e in _run(uni).noise_evidence()} == {"tracker_noise_uniform"}
    assert {e.code for e in _run(_person(4)).noise_evidence()} == {"tracker_noise_present"}


def test_state_round_trip() -> None:
    import json

    h = _run(_cubism)
    back = HeadMotion.from_state(MotionPolicy(), json.loads(json.dumps(h.to_state())))
    assert [e.code for e in back.spectrum_evidence()] == [e.code for e in h.spectrum_evidence()]
    assert back.noise_evidence() == h.noise_evidence()
