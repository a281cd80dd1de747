"""Head motion: its spectrum (narrow lines versus broadband drift and sway) and the tracker's noise.

A person's head drifts, sways with breathing and posture, and jumps when the gaze moves: a broadband
spectrum that changes over time. Procedural idle animation is a sum of fixed sines — Live2D Cubism's
default ``CubismBreath`` drives ParamAngleX/Y/Z and BodyAngleX with periods 6.5345, 3.5345, 5.5345 and
15.5345 s — whose power sits in a few narrow lines. A camera tracker also adds sensor noise to every
sample; a renderer adds none, and a script that fakes it usually adds bounded uniform jitter, whose
kurtosis is lower than a Gaussian's.

The head angles are averaged into 0.25 s bins (4 Hz, enough for head motion below 2 Hz) kept for 64 s
per channel as int16 centi-degrees: 1.5 KB. Noise statistics are running sums of the second and third
differences of the raw samples (yaw and pitch), so they cost O(1) memory. Movements (a gaze shift, the
kink at the start of a scripted ramp) put outliers into those differences that would hide the noise's
shape, so differences beyond about four standard deviations of a running, outlier-resistant scale are
left out: neither Gaussian noise nor bounded uniform jitter reaches that far, motion does.

Generic spectral lines weigh less than lines at Cubism's published breath periods: a simulated or
unusually regular person may sway at one steady rate, but not at 6.5345 and 3.5345 s together.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .base import Evidence
from .policy import MotionPolicy
from .ring import Ring

__all__ = ["CUBISM_BREATH_PERIODS_S", "HeadMotion"]

_BIN_S = 0.25
_RING = 256  # bins kept: 64 s at 4 Hz, spectral resolution 1/64 Hz
_MIN_BINS = 120  # 30 s before the spectrum is judged
_BAND = (0.04, 1.9)  # Hz: above slow posture drift, below the 2 Hz Nyquist of the bins
# Live2D Cubism sample defaults (LAppModel: CubismBreath parameters for ParamAngleX/Y/Z, BodyAngleX).
CUBISM_BREATH_PERIODS_S = (6.5345, 3.5345, 5.5345, 15.5345)
# The same periods by channel (yaw, pitch, roll): AngleX and BodyAngleX turn the head, AngleY nods it,
# AngleZ tilts it.
_CUBISM_BY_CHANNEL = ((6.5345, 15.5345), (3.5345,), (5.5345,))
_CUBISM_TOLERANCE_BINS = 0.35
_NAN = float("nan")
# Outlier trimming of the second differences (see module docstring): the running scale follows the mean
# |difference| with this weight per sample, and differences beyond _TRIM times it are left out. For
# Gaussian noise E|x| = 0.80 σ, so 5 E|x| ≈ 4 σ; uniform jitter's (1, -2, 1) sum never exceeds 3.5 E|x|.
_SCALE_RATE = 0.01
_TRIM = 5.0
_FLOOR_DEG = 1e-4  # far below any sensor noise: a perfectly still signal is still counted


class HeadMotion:
    """Binned head angles for the spectrum plus running noise moments."""

    __slots__ = (
        "_abs2",
        "_bin",
        "_cnt",
        "_last",
        "_n2",
        "_n3",
        "_prev",
        "_rings",
        "_s2",
        "_s3",
        "_s4",
        "_sums",
        "p",
    )

    def __init__(self, policy: MotionPolicy) -> None:
        self.p = policy
        self._rings = [Ring("h", _RING) for _ in range(3)]  # yaw, pitch, roll in centi-degrees
        self._bin = -1  # index of the bin being filled (floor(t / 0.25)), -1 before the first sample
        self._sums = [0.0, 0.0, 0.0]  # sums of the current bin
        self._cnt = 0  # samples in the current bin
        self._last = [0.0, 0.0, 0.0]  # last flushed bin means (held over gaps)
        # Last three samples of yaw and pitch for the differences: [y0, y1, y2, p0, p1, p2]; NaN = none.
        self._prev = [_NAN] * 6
        self._n2 = 0  # second differences counted
        self._s2 = 0.0  # sum of squared second differences (yaw and pitch)
        self._s4 = 0.0  # sum of fourth powers
        self._n3 = 0  # third differences counted
        self._s3 = 0.0  # sum of squared third differences
        # Running mean of |second difference|, each term clipped at 3x the mean so far: an outlier-resistant
        # scale (NaN until the first difference). Differences beyond _TRIM times it are motion, not noise.
        self._abs2 = _NAN

    def lost_face(self) -> None:
        """Break the difference chain (the next sample starts fresh)."""
        self._prev = [_NAN] * 6

    def update(self, ts: Any, yaw: Any, pitch: Any, roll: Any, face: Any) -> None:
        """Feed samples in time order; samples without a face are skipped and break the chain."""
        sums, prev = self._sums, self._prev
        b_cur, cnt = self._bin, self._cnt
        n2, s2, s4, n3, s3 = self._n2, self._s2, self._s4, self._n3, self._s3
        a2 = self._abs2
        y0, y1, y2, p0, p1, p2 = prev
        for t, y, pi, r, f in zip(ts, yaw, pitch, roll, face, strict=True):
            if not f:
                y0 = y1 = y2 = p0 = p1 = p2 = _NAN
                continue
            b = int(t * 4.0)
            if b != b_cur:
                if cnt:
                    self._flush(b_cur, b, cnt)
                b_cur, cnt = b, 0
                sums[0] = sums[1] = sums[2] = 0.0
            sums[0] += y
            sums[1] += pi
            sums[2] += r
            cnt += 1
            # Second and third differences by sample index: smooth motion cancels, sensor noise stays.
            if y0 == y0:
                d2y = y - 2 * y2 + y1
                d2p = pi - 2 * p2 + p1
                m = 0.5 * (abs(d2y) + abs(d2p))
                if a2 != a2:
                    a2 = m
                else:
                    a2 += _SCALE_RATE * (min(m, max(3.0 * a2, _FLOOR_DEG)) - a2)
                cut = max(_TRIM * a2, _FLOOR_DEG)
                if abs(d2y) <= cut and abs(d2p) <= cut:
                    n2 += 2
                    s2 += d2y * d2y + d2p * d2p
                    s4 += d2y**4 + d2p**4
                    e3y = d2y - (y2 - 2 * y1 + y0)
                    e3p = d2p - (p2 - 2 * p1 + p0)
                    n3 += 2
                    s3 += e3y * e3y + e3p * e3p
            y0, y1, y2, p0, p1, p2 = y1, y2, y, p1, p2, pi
        prev[:] = [y0, y1, y2, p0, p1, p2]
        self._abs2 = a2
        self._bin, self._cnt = b_cur, cnt
        self._n2, self._s2, self._s4, self._n3, self._s3 = n2, s2, s4, n3, s3

    def _flush(self, b_old: int, b_new: int, cnt: int) -> None:
        means = [s / cnt for s in self._sums]
        for ring, v in zip(self._rings, means, strict=True):
            ring.push(max(-32767, min(32767, round(v * 100))))
        # Hold the last value over bins with no visible sample (at most one ring's worth).
        for _ in range(min(b_new - b_old - 1, _RING)):
            for ring, v in zip(self._rings, means, strict=True):
                ring.push(max(-32767, min(32767, round(v * 100))))
        self._last = means

    # -- read-outs ---------------------------------------------------------------------------------------

    def spectrum_evidence(self) -> list[Evidence]:
        """Narrow spectral lines (procedural sines) against broadband motion; empty before 30 s."""
        n = len(self._rings[0])
        if n < _MIN_BINS:
            return []
        best_share, best_ratio, lines_hz = 0.0, 0.0, []
        total_power = 0.0
        per_channel: list[list[float]] = []
        for ring in self._rings:
            x = np.asarray(ring.values(), dtype=np.float64) / 100.0
            share, ratio, freqs, power = _line_analysis(x, self.p.line_ratio)
            total_power += power
            if share > best_share:
                best_share = share
            best_ratio = max(best_ratio, ratio)
            lines_hz += freqs
            per_channel.append(freqs)
        if total_power < 1e-3:
            return [
                Evidence(
                    "head_still",
                    "head_motion",
                    -1.0,
                    f"the head does not move at all over {n / 4:.0f} s (a person's head drifts and sways)",
                )
            ]
        res = 1.0 / (n * _BIN_S)
        # Each Cubism period belongs to its own parameter (ParamAngleX → yaw, AngleY → pitch, AngleZ →
        # roll): a line counts only in its channel and within a third of a bin (the peak is interpolated).
        cubism = sorted(
            {
                p
                for periods, freqs in zip(_CUBISM_BY_CHANNEL, per_channel, strict=True)
                for p in periods
                for f in freqs
                if abs(f - 1 / p) <= _CUBISM_TOLERANCE_BINS * res
            }
        )
        tones = ", ".join(f"{f:.3f} Hz" for f in sorted(set(lines_hz))[:4])
        if best_share >= 0.3 and best_ratio >= self.p.line_ratio:
            strength = min(1.0, (best_share - 0.3) / max(self.p.line_share - 0.3, 1e-6))
            llr = -0.5 - 1.0 * strength
            detail = (
                f"head motion is {100 * best_share:.0f}% pure tones ({tones}; peak {best_ratio:.0f}× "
                f"its neighbours) over {n / 4:.0f} s, as procedural sines"
            )
            out = [Evidence("head_motion_tones", "head_motion", llr, detail)]
            if len(cubism) >= 2:
                periods = ", ".join(f"{p} s" for p in cubism)
                out.append(
                    Evidence(
                        "head_motion_cubism",
                        "head_motion",
                        -2.0,
                        f"spectral lines sit at Live2D Cubism's default breath periods ({periods})",
                    )
                )
            return out
        if best_share < 0.15:
            return [
                Evidence(
                    "head_motion_broadband",
                    "head_motion",
                    1.0,
                    f"head motion is broadband drift and sway ({100 * best_share:.0f}% in narrow lines "
                    f"over {n / 4:.0f} s)",
                )
            ]
        return []

    def noise_evidence(self) -> list[Evidence]:
        """Sensor noise present, absent, or uniform (bounded) jitter."""
        if self._n2 < self.p.min_samples:
            return []
        rms3 = math.sqrt(self._s3 / self._n3) if self._n3 else 0.0
        m2 = self._s2 / self._n2
        if rms3 < self.p.noiseless_deg or m2 <= 0:
            return [
                Evidence(
                    "tracker_noise_absent",
                    "noise",
                    -2.5,
                    f"head angles carry no sensor noise (third-difference RMS {rms3:.4f}° over "
                    f"{self._n3 // 2} samples): rendered, not tracked",
                )
            ]
        kurt = (self._s4 / self._n2) / (m2 * m2) - 3.0
        se = math.sqrt(24.0 / self._n2)
        if kurt < self.p.uniform_kurtosis and kurt / se < -4.0:
            # The further below a Gaussian's kurtosis (in standard errors), the surer: -2.5 from 8 SE.
            return [
                Evidence(
                    "tracker_noise_uniform",
                    "noise",
                    -1.5 - min(1.0, max(0.0, (-kurt / se - 4.0) / 4.0)),
                    f"head-angle noise is bounded uniform jitter (excess kurtosis {kurt:.2f} ± {se:.2f}; "
                    f"a tracker's noise is Gaussian or heavier-tailed)",
                )
            ]
        return [
            Evidence(
                "tracker_noise_present",
                "noise",
                0.3,
                f"head angles carry tracker noise (RMS {math.sqrt(m2):.3f}°, excess kurtosis {kurt:.2f})",
            )
        ]

    # -- checkpoint --------------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "rings": [r.to_state() for r in self._rings],
            "bin": self._bin,
            "sums": list(self._sums),
            "cnt": self._cnt,
            "last": list(self._last),
            "prev": [None if x != x else x for x in self._prev],
            "mom": [self._n2, self._s2, self._s4, self._n3, self._s3],
            "abs2": None if self._abs2 != self._abs2 else self._abs2,
        }

    @classmethod
    def from_state(cls, policy: MotionPolicy, s: dict[str, Any]) -> HeadMotion:
        h = cls(policy)
        h._rings = [Ring.from_state(r) for r in s["rings"]]
        h._bin, h._cnt = int(s["bin"]), int(s["cnt"])
        h._sums = [float(x) for x in s["sums"]]
        h._last = [float(x) for x in s["last"]]
        h._prev = [_NAN if x is None else float(x) for x in s["prev"]]
        n2, s2, s4, n3, s3 = s["mom"]
        h._n2, h._s2, h._s4, h._n3, h._s3 = int(n2), float(s2), float(s4), int(n3), float(s3)
        h._abs2 = _NAN if s.get("abs2") is None else float(s["abs2"])
        return h


def _line_analysis(x: np.ndarray, line_ratio: float) -> tuple[float, float, list[float], float]:
    """Share of band power in narrow lines, the strongest line-to-background ratio, line frequencies, power.

    Detrended, Hann-windowed periodogram; a local maximum is a line when it exceeds ``line_ratio`` times
    the larger of the medians of the bins 3-8 away on each side (a sine's Hann leakage is below -31 dB
    there, while a broadband process has similar power in its neighbours). Both sides must be complete, so
    the falling low end of a drifting head's spectrum is never taken for a line.
    """
    n = len(x)
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    y = x - x.mean()
    y = (y - t * (float(t @ y) / float(t @ t))) * _hann(n)  # least-squares detrend, closed form
    p = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(n, d=_BIN_S)
    lo = int(np.searchsorted(freqs, _BAND[0]))
    hi = int(np.searchsorted(freqs, _BAND[1]))
    total = float(p[lo:hi].sum())
    if total <= 1e-9:
        return 0.0, 0.0, [], total
    # Candidate peaks: local maxima in the band with six bins on each side (3-8 bins away).
    k = np.arange(max(lo, 9), min(hi, len(p) - 9))
    if not len(k):
        return 0.0, 0.0, [], total
    cand = k[(p[k] >= p[k - 1]) & (p[k] >= p[k + 1])]
    if not len(cand):
        return 0.0, 0.0, [], total
    left = np.median(p[cand[:, None] + _LEFT], axis=1)
    right = np.median(p[cand[:, None] + _RIGHT], axis=1)
    ratios = p[cand] / (np.maximum(left, right) + 1e-12)
    best_ratio = float(ratios.max())
    line_power, found = 0.0, []
    used = np.zeros(len(p), dtype=bool)
    df = float(freqs[1] - freqs[0]) if len(freqs) > 1 else 0.0
    for kk in cand[ratios >= line_ratio].tolist():
        sl = slice(kk - 1, kk + 2)
        line_power += float(p[sl][~used[sl]].sum())
        used[sl] = True
        # Parabolic interpolation of the log power: a windowed sine's peak to a tenth of a bin.
        a, b, c = (math.log(float(p[j]) + 1e-300) for j in (kk - 1, kk, kk + 1))
        den = a - 2 * b + c
        shift = 0.5 * (a - c) / den if den < 0 else 0.0
        found.append(float(freqs[kk]) + max(-0.5, min(0.5, shift)) * df)
    return line_power / total, best_ratio, found, total


_LEFT = np.arange(-8, -2)
_RIGHT = np.arange(3, 9)
_HANN: dict[int, np.ndarray] = {}


def _hann(n: int) -> np.ndarray:
    """Hann window of length ``n`` (cached: the ring has few distinct lengths)."""
    w = _HANN.get(n)
    if w is None:
        w = _HANN[n] = np.hanning(n)
    return w
