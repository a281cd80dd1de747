"""The mouth against ``speech``: is the jaw driven by a person speaking, or by the audio's loudness?

A person's jaw starts moving around voice onset with a lag that varies from utterance to utterance
(articulation leads the sound, the tracker adds its own latency) and keeps moving a little between
utterances (smiles, breathing, tracker noise). Loudness lip-sync (Live2D Cubism's ``LAppWavFileHandler``
RMS fed straight into ParamMouthOpenY, or any "volume" lip-sync) is an instant function of the audio: the
mouth opens exactly when the sound starts, shuts exactly when it stops, and is frozen in between. A
pre-recorded or synthetic voice over an undriven avatar does not move the mouth at all.

The jaw is kept as the per-bin maximum of 25 ms bins for the last 19.2 s (768 bytes), enough to look
back at an utterance's onset when its ``speech`` message arrives after it ended.
"""

from __future__ import annotations

import math
from typing import Any

from .base import Evidence
from .policy import SpeechPolicy
from .ring import Ring

__all__ = ["Mouth"]

_BIN_S = 0.025
_RING = 768
_NO_FACE = 255  # bin value: no face-visible sample in the bin


class Mouth:
    """Jaw history, speech intervals, onset lags and jaw activity in speech and silence."""

    __slots__ = (
        "_bin",
        "_bmax",
        "_lags",
        "_last_t1",
        "_moving",
        "_ring",
        "_silent",
        "_speech",
        "_static",
        "p",
    )

    def __init__(self, policy: SpeechPolicy) -> None:
        self.p = policy
        self._ring = Ring("B", _RING)  # jaw per bin, 0-250 (jawOpen * 250); 255 = no face
        self._bin = -1  # index of the bin being filled (floor(t / 0.025))
        self._bmax = -1  # max jaw in that bin (0-250), -1 while it has no visible sample
        self._speech = Ring("d", 64)  # speech intervals, flattened t0, t1 (32 intervals)
        self._lags = Ring("f", 16)  # onset lag of the jaw behind the speech start, s
        self._moving = 0  # utterances (>= 1 s) during which the jaw moved
        self._static = 0  # utterances (>= 1 s) during which it did not
        self._silent = [0, 0.0, 0.0]  # silent bins counted, sum of jaw, sum of jaw^2
        self._last_t1 = float("-inf")  # end of the previous utterance

    def update(self, ts: Any, jaw: Any, face: Any) -> None:
        """Feed samples in time order."""
        b_cur, bmax, ring = self._bin, self._bmax, self._ring
        for t, j, f in zip(ts, jaw, face, strict=True):
            b = int(t * 40.0)
            if b != b_cur:
                if b_cur >= 0:
                    ring.push(bmax if bmax >= 0 else _NO_FACE)
                    for _ in range(min(b - b_cur - 1, _RING)):
                        ring.push(_NO_FACE)
                b_cur, bmax = b, -1
            if f:
                q = int(j * 250.0 + 0.5)
                q = 0 if q < 0 else (250 if q > 250 else q)
                if q > bmax:
                    bmax = q
        self._bin, self._bmax = b_cur, bmax

    def _window(self, t_from: float, t_to: float) -> list[tuple[float, float]]:
        """(bin start time, jaw) of face-visible bins in [t_from, t_to) still held."""
        vals = self._ring.values()
        first = self._bin - len(vals)  # bin index of vals[0]
        lo = max(0, math.floor(t_from / _BIN_S) - first)
        hi = min(len(vals), math.ceil(t_to / _BIN_S) - first)
        return [((first + i) * _BIN_S, vals[i] / 250.0) for i in range(lo, hi) if vals[i] != _NO_FACE]

    def on_speech(self, t0: float, t1: float) -> None:
        """An utterance [t0, t1] (sender clock): measure the jaw's onset lag and activity around it."""
        self._speech.push(t0)
        self._speech.push(t1)
        held_from = (self._bin - len(self._ring)) * _BIN_S
        pre = self._window(t0 - 1.0, t0 - 0.4) if t0 - 1.0 >= held_from else []
        during = self._window(t0, t1)
        if t1 - t0 >= 1.0 and len(during) >= 10:
            mean = sum(j for _, j in during) / len(during)
            if mean < 0.05 and max(j for _, j in during) < self.p.jaw_open:
                self._static += 1
            else:
                self._moving += 1
        if pre and len(pre) >= 8:
            base = sorted(j for _, j in pre)[len(pre) // 2]
            level = max(self.p.jaw_open, base + 0.1)
            if base < level - 0.05:
                for tb, j in self._window(t0 - 0.6, min(t1, t0 + 1.0)):
                    if j >= level:
                        self._lags.push(tb + _BIN_S / 2 - t0)
                        break
        # Silence between the previous utterance and this one (half a second clear of both).
        if self._last_t1 > float("-inf"):
            s_from, s_to = max(self._last_t1 + 0.5, held_from), t0 - 0.5
            if s_to - s_from >= 1.0:
                for _, j in self._window(s_from, s_to):
                    self._silent[0] += 1
                    self._silent[1] += j
                    self._silent[2] += j * j
        self._last_t1 = max(self._last_t1, t1)

    def speech_intervals(self) -> list[tuple[float, float]]:
        """The last 32 utterances, oldest first."""
        v = self._speech.values()
        return [(v[i], v[i + 1]) for i in range(0, len(v) - 1, 2)]

    def evidence(self) -> list[Evidence]:
        """Lip-sync lag, jaw still while speaking, jaw frozen in silence."""
        out: list[Evidence] = []
        lags = self._lags.values()
        if len(lags) >= self.p.min_utterances:
            srt = sorted(lags)
            med = srt[len(srt) // 2]
            mean = sum(lags) / len(lags)
            sd = math.sqrt(sum((x - mean) ** 2 for x in lags) / (len(lags) - 1))
            nums = f"lag {1000 * med:+.0f} ± {1000 * sd:.0f} ms over {len(lags)} utterances"
            if 1000 * sd < self.p.locked_sd_ms and abs(1000 * med) < self.p.locked_median_ms:
                out.append(
                    Evidence(
                        "lipsync_locked",
                        "mouth",
                        -2.0,
                        f"the mouth opens exactly when the audio starts ({nums}): lip-sync from loudness",
                    )
                )
            elif 1000 * sd >= 2 * self.p.locked_sd_ms:
                out.append(
                    Evidence(
                        "lipsync_natural",
                        "mouth",
                        0.7,
                        f"the jaw leads and lags speech like a person ({nums})",
                    )
                )
        total = self._moving + self._static
        if total >= 3 and self._static >= 0.75 * total:
            out.append(
                Evidence(
                    "mouth_static_speech",
                    "mouth",
                    -2.0,
                    f"the avatar speaks but its mouth does not move in {self._static} of {total} utterances",
                )
            )
        n, s, ss = self._silent
        if n >= 400:
            mean = s / n
            sd = math.sqrt(max(ss / n - mean * mean, 0.0))
            if sd < 0.004:
                out.append(
                    Evidence(
                        "mouth_frozen_silence",
                        "mouth",
                        -1.0,
                        f"between utterances the jaw is frozen (σ = {sd:.4f} over {n * _BIN_S:.0f} s)",
                    )
                )
        return out

    def to_state(self) -> dict[str, Any]:
        return {
            "ring": self._ring.to_state(),
            "bin": self._bin,
            "bmax": self._bmax,
            "speech": self._speech.to_state(),
            "lags": self._lags.to_state(),
            "mv": [self._moving, self._static],
            "silent": list(self._silent),
            "last_t1": None if self._last_t1 == float("-inf") else self._last_t1,
        }

    @classmethod
    def from_state(cls, policy: SpeechPolicy, s: dict[str, Any]) -> Mouth:
        m = cls(policy)
        m._ring = Ring.from_state(s["ring"])
        m._bin, m._bmax = int(s["bin"]), int(s["bmax"])
        m._speech, m._lags = Ring.from_state(s["speech"]), Ring.from_state(s["lags"])
        m._moving, m._static = (int(x) for x in s["mv"])
        m._silent = [int(s["silent"][0]), float(s["silent"][1]), float(s["silent"][2])]
        m._last_t1 = float("-inf") if s["last_t1"] is None else float(s["last_t1"])
        return m
