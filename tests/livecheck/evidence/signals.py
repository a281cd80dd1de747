"""Synthetic tracking signals for the evidence tests (made here, seeded, no files)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator

from livecheck.evidence import EvidenceEngine

CHANNELS = ("headYaw", "headPitch", "headRoll", "eyeBlinkLeft", "eyeBlinkRight", "jawOpen")
Pose = Callable[[float], tuple[float, float, float, float, float, float]]


def frames(
    duration: float,
    rate: float = 30.0,
    t0: float = 100.0,
    jitter_ms: float = 0.0,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Frame times from ``t0`` for ``duration`` s at ``rate`` Hz, with optional Gaussian jitter."""
    n = int(duration * rate)
    last = -math.inf
    for i in range(n):
        t = t0 + i / rate
        if jitter_ms and rng is not None:
            t += rng.gauss(0.0, jitter_ms / 1000.0)
        t = max(t, last + 1e-4)
        last = t
        yield t


def feed(
    engine: EvidenceEngine,
    times: list[float],
    pose: Pose,
    *,
    batch: int = 10,
    recv0: float = 0.0,
    face: Callable[[float], bool] | None = None,
) -> float:
    """Send ``pose`` sampled at ``times`` in batches; returns the last receive time used."""
    recv = recv0
    for i in range(0, len(times), batch):
        ts = times[i : i + batch]
        vals = [pose(t) for t in ts]
        channels = {c: [v[k] for v in vals] for k, c in enumerate(CHANNELS)}
        recv = recv0 + (ts[-1] - times[0])
        engine.on_tracking(ts, channels, [face(t) if face else True for t in ts], recv)
    return recv


def blink_train(onsets: list[float], durations: list[float], peaks: list[float]) -> Callable[[float], float]:
    """Lid closure over time: triangular blinks at ``onsets`` (sorted)."""

    def level(t: float) -> float:
        for on, d, p in zip(onsets, durations, peaks, strict=True):
            if on <= t <= on + d:
                u = (t - on) / d
                return p * (1 - abs(2 * u - 1))
            if on > t:
                break
        return 0.0

    return level
