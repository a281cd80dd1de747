"""Tracker models: when frames are taken, which are dropped, and what noise the sensor adds.

A camera tracker (ARKit, MediaPipe) runs at 24-60 Hz; its frame times wobble by a few milliseconds,
frames drop singly or in bursts, every value carries sensor noise, and some pipelines smooth or round
what they send. A renderer or a script instead ticks a fixed clock and adds no noise, or adds bounded
uniform jitter.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

__all__ = ["Frame", "TrackerModel", "TrackerState"]

Noise = Literal["gauss", "uniform", "none"]


@dataclass(frozen=True, slots=True)
class Frame:
    """One tracked sample: sender time, the six required channels and whether a face was seen."""

    t: float
    yaw: float
    pitch: float
    roll: float
    eye_l: float
    eye_r: float
    jaw: float
    face: bool


@dataclass(frozen=True, slots=True)
class TrackerModel:
    """How a tracker samples and distorts a driver's ground truth."""

    rate_hz: float = 30.0
    ts_jitter_ms: float = 2.0  # Gaussian wobble of frame times (camera exposure, scheduling)
    ts_uniform_ms: float = 0.0  # bounded uniform jitter of each interval (a script's sleep + random)
    drop_p: float = 0.01  # chance a frame is dropped
    burst_p: float = 0.002  # chance a drop starts a burst of 2-8 frames
    noise: Noise = "gauss"
    head_noise_deg: float = 0.15  # sensor noise scale of head angles (SD for gauss, half-width for uniform)
    eye_noise: float = 0.02
    jaw_noise: float = 0.015
    smoothing: float = 0.0  # exponential smoothing weight of the previous output (0 = none)
    round_ms: bool = False  # timestamps rounded to whole milliseconds
    linked_eyes: bool = False  # one estimator drives both eyelids (a "link blinks" option)
    batch_s: float = 1.0 / 3.0  # how often the client sends a tracking message


class TrackerState:
    """The running state of one tracker (next frame time, smoothing memory)."""

    def __init__(self, model: TrackerModel, rng: random.Random, t0: float) -> None:
        self.m = model
        self.rng = rng
        self.next_nominal = t0  # the ideal time of the next frame
        self.last_t = -math.inf  # last emitted time (times strictly increase)
        self.drop_left = 0  # frames still to drop in a burst
        self.prev: list[float] | None = None  # previous output values (smoothing)

    def next_time(self) -> tuple[float, bool]:
        """The next frame's sender time and whether it is delivered (False: dropped)."""
        m, rng = self.m, self.rng
        period = 1.0 / m.rate_hz
        t = self.next_nominal
        if m.ts_uniform_ms:
            self.next_nominal += period + rng.uniform(-m.ts_uniform_ms, m.ts_uniform_ms) / 1000.0
        else:
            self.next_nominal += period
        if m.ts_jitter_ms:
            t += rng.gauss(0.0, m.ts_jitter_ms / 1000.0)
            # Late frames are more common than early ones (a busy pipeline): a small exponential tail.
            if rng.random() < 0.05:
                t += rng.expovariate(1000.0 / (3 * m.ts_jitter_ms))
        if m.round_ms:
            t = round(t * 1000.0) / 1000.0
        if t <= self.last_t:
            t = self.last_t + (0.001 if m.round_ms else 1e-4)
        self.last_t = t
        if self.drop_left > 0:
            self.drop_left -= 1
            return t, False
        if rng.random() < m.drop_p:
            if rng.random() < m.burst_p / max(m.drop_p, 1e-9):
                self.drop_left = rng.randint(1, 7)
            return t, False
        return t, True

    def distort(self, t: float, truth: tuple[float, float, float, float, float, float], face: bool) -> Frame:
        """Add the sensor's noise, smoothing and eye linking to a driver's ground truth."""
        m, rng = self.m, self.rng
        vals = list(truth)
        if m.noise != "none":
            scales = (
                m.head_noise_deg,
                m.head_noise_deg,
                m.head_noise_deg,
                m.eye_noise,
                m.eye_noise,
                m.jaw_noise,
            )
            for i, s in enumerate(scales):
                if s:
                    vals[i] += rng.gauss(0.0, s) if m.noise == "gauss" else rng.uniform(-s, s)
        if m.smoothing and self.prev is not None:
            a = m.smoothing
            vals = [a * p + (1 - a) * v for p, v in zip(self.prev, vals, strict=True)]
        self.prev = vals
        if m.linked_eyes:
            vals[3] = vals[4] = 0.5 * (vals[3] + vals[4])
        for i in (3, 4, 5):
            vals[i] = min(1.0, max(0.0, vals[i]))
        return Frame(t, vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], face)
