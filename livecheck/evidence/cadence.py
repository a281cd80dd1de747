"""Timestamp cadence: a camera tracker's frame times wobble and drop; a renderer's clock does not.

The frame period is the median of the first 24 intervals; after that each interval is either a drop
(longer than 1.6 periods: the missing frames are counted) or a deviation from the period, whose running
moments give the jitter's spread and kurtosis. Millisecond-rounded timestamps (common in trackers) are
recognised so that rounding is neither read as jitter nor as uniform noise.
"""

from __future__ import annotations

import math
from typing import Any

from .base import Evidence
from .policy import MotionPolicy

__all__ = ["Cadence"]

_WARMUP = 24


class Cadence:
    """Running statistics of the sender's sample intervals."""

    __slots__ = ("_drops", "_m", "_ms_grid", "_n", "_period", "_prev", "_warm", "p")

    def __init__(self, policy: MotionPolicy) -> None:
        self.p = policy
        self._prev = float("nan")  # previous sample time
        self._warm: list[float] = []  # first intervals, for the period estimate (dropped after warm-up)
        self._period = 0.0  # nominal frame period, s (0 until warmed up)
        self._n = 0  # regular intervals counted
        self._m = [0.0, 0.0, 0.0, 0.0]  # sums of deviation^1..4 from the period
        self._drops = 0  # frames missing (long intervals), in periods
        self._ms_grid = 0  # intervals that are whole milliseconds (rounded timestamps)

    def update(self, ts: Any) -> None:
        """Feed every sample time (face or not) in order."""
        prev, period = self._prev, self._period
        m = self._m
        n, drops, grid = self._n, self._drops, self._ms_grid
        for t in ts:
            dt = t - prev
            prev = t
            if dt != dt or dt <= 0:
                continue
            if not period:
                self._warm.append(dt)
                if len(self._warm) >= _WARMUP:
                    period = sorted(self._warm)[_WARMUP // 2]
                    self._warm = []
                continue
            if dt > 1.6 * period:
                drops += round(dt / period) - 1
                continue
            d = dt - period
            d2 = d * d
            m[0] += d
            m[1] += d2
            m[2] += d2 * d
            m[3] += d2 * d2
            n += 1
            ms = dt * 1000.0
            if abs(ms - round(ms)) < 1e-6:
                grid += 1
        self._prev, self._period = prev, period
        self._n, self._drops, self._ms_grid = n, drops, grid

    @property
    def period(self) -> float | None:
        """The nominal frame period (s), once warmed up."""
        return self._period or None

    def gap(self) -> None:
        """Messages were lost: the next interval is not a frame interval."""
        self._prev = float("nan")

    def evidence(self) -> list[Evidence]:
        """Fixed clock, uniform jitter, or a tracker's wobble; empty until enough samples."""
        n = self._n
        if n < self.p.min_samples or not self._period:
            return []
        m1 = self._m[0] / n
        var = max(self._m[1] / n - m1 * m1, 0.0)
        sd_ms = 1000 * math.sqrt(var)
        hz = 1.0 / self._period
        drop_rate = self._drops / (n + self._drops)
        rounded = self._ms_grid > 0.95 * n
        if sd_ms < self.p.fixed_cadence_ms or (rounded and sd_ms < 0.6):
            how = (
                "to the rounding of whole milliseconds"
                if rounded and sd_ms >= self.p.fixed_cadence_ms
                else ""
            )
            return [
                Evidence(
                    "cadence_fixed",
                    "cadence",
                    -2.0 if not self._drops else -1.2,
                    f"frame times tick like a fixed clock{(' ' + how) if how else ''}: {hz:.1f} Hz, "
                    f"σ = {sd_ms:.3f} ms over {n} frames, {self._drops} dropped",
                )
            ]
        if not rounded and var > 0:
            m2c = var
            m4c = self._m[3] / n - 4 * m1 * self._m[2] / n + 6 * m1 * m1 * self._m[1] / n - 3 * m1**4
            kurt = m4c / (m2c * m2c) - 3.0
            if kurt < -0.45 and kurt / math.sqrt(24.0 / n) < -4.0:
                return [
                    Evidence(
                        "cadence_uniform_jitter",
                        "cadence",
                        -1.5,
                        f"frame-time jitter is bounded and flat (excess kurtosis {kurt:.2f}, "
                        f"σ = {sd_ms:.2f} ms):"
                        f" added by a script, not a camera",
                    )
                ]
        return [
            Evidence(
                "cadence_wobble",
                "cadence",
                0.5 if self._drops else 0.3,
                f"frame times wobble like a camera tracker's: {hz:.1f} Hz, σ = {sd_ms:.2f} ms, "
                f"{100 * drop_rate:.1f}% dropped",
            )
        ]

    def to_state(self) -> dict[str, Any]:
        return {
            "prev": None if self._prev != self._prev else self._prev,
            "warm": list(self._warm),
            "period": self._period,
            "n": self._n,
            "m": list(self._m),
            "drops": self._drops,
            "grid": self._ms_grid,
        }

    @classmethod
    def from_state(cls, policy: MotionPolicy, s: dict[str, Any]) -> Cadence:
        c = cls(policy)
        c._prev = float("nan") if s["prev"] is None else float(s["prev"])
        c._warm = [float(x) for x in s["warm"]]
        c._period = float(s["period"])
        c._n, c._drops, c._ms_grid = int(s["n"]), int(s["drops"]), int(s["grid"])
        c._m = [float(x) for x in s["m"]]
        return c
