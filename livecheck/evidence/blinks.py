"""Blinks: detection with hysteresis, then intervals, durations, partial closures and eye sync.

Physiology this judges against (sources in docs/liveness.md): spontaneous blinks come about 17 a minute at
rest and 26 talking; inter-blink intervals are irregular with a right-skewed, roughly log-normal shape;
about half of spontaneous blinks are incomplete; durations vary by tens of milliseconds; both lids close
together within a few milliseconds but a tracker measures each eye with its own noise. The Live2D Cubism
default (``CubismEyeBlink``) instead waits a uniform ``[0, 7)`` s, then closes both eyes fully in exactly
0.1 + 0.05 + 0.15 s.

Detection follows the mean of ``eyeBlinkLeft`` and ``eyeBlinkRight`` against a slowly tracked resting
level (so squints and glasses do not read as closed): a blink starts when it rises ``close_delta`` above
that level and ends when it falls back under ``open_delta`` above it.
"""

from __future__ import annotations

import math
from typing import Any

from .base import Evidence
from .policy import BlinkPolicy
from .ring import Ring

__all__ = ["BlinkFeatures", "talk_rate_evidence"]

_NAN = float("nan")
_CAP = 64  # blinks kept (about four minutes at a human rate)
# Live2D Cubism CubismEyeBlink: interval uniform on [0, 2 * 4.0 - 1) s after a 0.3 s closure.
_CUBISM_MAX_IBI_S = 7.3


class BlinkFeatures:
    """Incremental blink detector and the statistics of the last 64 blinks."""

    __slots__ = (
        "_base",
        "_closed",
        "_eye_equal",
        "_eye_flat",
        "_eye_n",
        "_ibi_ok",
        "_last_onset",
        "_peak",
        "_peak_l",
        "_peak_r",
        "_pl",
        "_pm",
        "_pr",
        "_pt",
        "_r_asym",
        "_r_dur",
        "_r_ibi",
        "_r_lag",
        "_r_onset",
        "_r_peak",
        "_shut",
        "_t_start",
        "_up_l",
        "_up_r",
        "_visible_since_blink",
        "p",
    )

    def __init__(self, policy: BlinkPolicy) -> None:
        self.p = policy
        self._base = _NAN  # resting lid-closure level (slow average while open); NaN until first sample
        self._closed = False  # inside a blink
        self._shut = False  # closed longer than a blink: waiting for the eyes to reopen
        self._t_start = 0.0  # interpolated onset of the current blink
        self._peak = 0.0  # peak mean closure in the current blink
        self._peak_l = 0.0  # per-eye peaks in the current blink (asymmetry)
        self._peak_r = 0.0
        self._up_l = _NAN  # last upward threshold crossing per eye (lag between the lids)
        self._up_r = _NAN
        self._pt = _NAN  # previous face-visible sample: time, mean, left, right
        self._pm = 0.0
        self._pl = 0.0
        self._pr = 0.0
        self._last_onset = _NAN  # onset of the previous recorded blink
        self._ibi_ok = False  # the face stayed visible since that onset, so the interval is measurable
        self._visible_since_blink = 0.0  # face-visible seconds since the last blink (or the start)
        self._eye_n = 0  # face-visible samples seen
        self._eye_equal = 0  # ... where left and right are exactly equal (one estimator drives both)
        self._eye_flat = 0  # ... where the left lid repeats its previous value exactly (no sensor noise)
        self._r_onset = Ring("d", _CAP)  # blink onset times (sender clock)
        self._r_ibi = Ring("f", _CAP)  # interval from the previous onset, NaN when not measurable
        self._r_dur = Ring("f", _CAP)  # durations, s
        self._r_peak = Ring("f", _CAP)  # peak mean closure
        self._r_asym = Ring("f", _CAP)  # |peak left - peak right|
        self._r_lag = Ring("f", _CAP)  # left onset - right onset, s (NaN when one lid never crossed)

    # -- incremental -------------------------------------------------------------------------------------

    def lost_face(self) -> None:
        """The tracker lost the face: abandon a blink in progress and break the interval chain."""
        self._closed = False
        self._shut = False
        self._ibi_ok = False
        self._pt = _NAN

    def update(self, ts: Any, left: Any, right: Any, face: Any) -> None:
        """Feed face-visible-or-not samples in time order (sequences of equal length)."""
        p = self.p
        cd, od, max_s = p.close_delta, p.open_delta, p.max_blink_s
        base, pt, pm, pl, pr = self._base, self._pt, self._pm, self._pl, self._pr
        for t, lv, rv, f in zip(ts, left, right, face, strict=True):
            if not f:
                if pt == pt:  # a visible stretch just ended
                    self._base = base
                    self.lost_face()
                    pt = _NAN
                continue
            m = (lv + rv) * 0.5
            self._eye_n += 1
            if lv == rv:
                self._eye_equal += 1
            if lv == pl:
                self._eye_flat += 1
            if pt != pt:  # first visible sample of a stretch
                if base != base:
                    base = min(max(m, 0.0), 0.5)
                pt, pm, pl, pr = t, m, lv, rv
                continue
            self._visible_since_blink += t - pt
            hi = base + cd
            if pl < hi <= lv:
                self._up_l = pt + (hi - pl) / (lv - pl) * (t - pt)
            if pr < hi <= rv:
                self._up_r = pt + (hi - pr) / (rv - pr) * (t - pt)
            if self._shut:
                if m <= base + od:
                    self._shut = False
            elif not self._closed:
                if m >= hi:
                    self._closed = True
                    self._t_start = pt + (hi - pm) / (m - pm) * (t - pt) if m != pm else t
                    self._peak, self._peak_l, self._peak_r = m, lv, rv
                elif m < base + od:
                    # Follow the resting level slowly (about 2 s at 30 Hz) while the eyes are open.
                    base += 0.02 * (m - base)
                    if base > 0.5:
                        base = 0.5
            else:
                if m > self._peak:
                    self._peak = m
                if lv > self._peak_l:
                    self._peak_l = lv
                if rv > self._peak_r:
                    self._peak_r = rv
                lo = base + od
                if m <= lo:
                    t_end = pt + (pm - lo) / (pm - m) * (t - pt) if pm != m else t
                    self._closed = False
                    self._record(t_end)
                elif t - self._t_start > max_s:
                    self._closed = False
                    self._shut = True
                    self._ibi_ok = False
            pt, pm, pl, pr = t, m, lv, rv
        self._base, self._pt, self._pm, self._pl, self._pr = base, pt, pm, pl, pr

    def _record(self, t_end: float) -> None:
        onset = self._t_start
        ibi = onset - self._last_onset if self._ibi_ok else _NAN
        lag = _NAN
        if self._up_l >= onset - 0.3 and self._up_r >= onset - 0.3:
            lag = self._up_l - self._up_r
        self._r_onset.push(onset)
        self._r_ibi.push(ibi)
        self._r_dur.push(t_end - onset)
        self._r_peak.push(self._peak)
        self._r_asym.push(abs(self._peak_l - self._peak_r))
        self._r_lag.push(lag)
        self._last_onset = onset
        self._ibi_ok = True
        self._visible_since_blink = 0.0

    # -- read-outs ---------------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Blinks held (at most 64)."""
        return len(self._r_onset)

    def onsets(self) -> list[float]:
        return self._r_onset.values()

    def intervals(self) -> list[float]:
        """Measurable inter-blink intervals, oldest first."""
        return [x for x in self._r_ibi.values() if x == x]

    def evaluate(self) -> list[Evidence]:
        """Evidence from the blinks so far (empty until there are enough)."""
        out: list[Evidence] = []
        out += self._interval_evidence()
        out += self._shape_evidence()
        out += self._sync_evidence()
        if self._visible_since_blink >= self.p.no_blink_s:
            secs = self._visible_since_blink
            out.append(
                Evidence(
                    "no_blinks",
                    "blink_intervals",
                    -min(3.0, 1.5 * secs / self.p.no_blink_s),
                    f"no blink in {secs:.0f} s of visible face (people blink every few seconds)",
                )
            )
        return out

    def _interval_evidence(self) -> list[Evidence]:
        ibis = [x for x in self.intervals() if x > 0.05]
        n = len(ibis)
        if n < self.p.min_intervals:
            return []
        out: list[Evidence] = []
        mean = sum(ibis) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in ibis) / (n - 1))
        cv = sd / mean
        m3 = sum((x - mean) ** 3 for x in ibis) / n
        m2 = sum((x - mean) ** 2 for x in ibis) / n
        skew = m3 / m2**1.5 * math.sqrt(n * (n - 1)) / (n - 2) if m2 > 0 else 0.0  # adjusted Fisher-Pearson
        logs = [math.log(x) for x in ibis]
        mu = sum(logs) / n
        sig = max(math.sqrt(sum((v - mu) ** 2 for v in logs) / n), 1e-3)
        # Log-likelihood of the intervals under the fitted log-normal and under the fitted uniform (range
        # widened by (n+1)/(n-1), the unbiased estimate, so the uniform's edge fit is not over-rewarded).
        ll_ln = sum(
            -v - math.log(sig * math.sqrt(2 * math.pi)) - (v - mu) ** 2 / (2 * sig * sig) for v in logs
        )
        lo, hi = min(ibis), max(ibis)
        width = max((hi - lo) * (n + 1) / (n - 1), 1e-3)
        ll_u = -n * math.log(width)
        ks_p = _ks_normal_p(logs, mu, sig)
        delta = ll_ln - ll_u
        nums = f"{n + 1} blinks, CV {cv:.2f}, skew {skew:.2f}, KS p(log-normal) = {ks_p:.3f}"
        if cv < self.p.regular_cv:
            out.append(
                Evidence(
                    "blink_intervals_regular",
                    "blink_intervals",
                    -3.0 * min(1.0, (self.p.regular_cv - cv) / (0.5 * self.p.regular_cv) + 0.5),
                    f"blinks come at a near-fixed interval (mean {mean:.2f} s): {nums}",
                )
            )
        llr = self.p.shape_weight * delta
        if llr < 0:
            bound = f", all within {hi:.1f} s" if hi <= _CUBISM_MAX_IBI_S else ""
            out.append(
                Evidence(
                    "blink_intervals_uniform",
                    "blink_intervals",
                    llr,
                    f"blink intervals look uniform, not log-normal{bound}: {nums}",
                )
            )
        elif skew > 0.3 and cv > 0.3:
            # Only irregular, right-skewed intervals speak for a person; a clock with jitter can also
            # fit a narrow log-normal better than a uniform.
            out.append(
                Evidence(
                    "blink_intervals_lognormal",
                    "blink_intervals",
                    llr,
                    f"blink intervals are irregular and right-skewed like a person's: {nums}",
                )
            )
        rep = _repeats(ibis)
        if rep:
            out.append(
                Evidence(
                    "blink_pattern_repeats",
                    "replay",
                    -4.0,
                    f"a run of {rep} blink intervals repeats to within 15 ms: the session looks replayed",
                )
            )
        return out

    def _shape_evidence(self) -> list[Evidence]:
        durs = self._r_dur.values()
        n = len(durs)
        if n < self.p.min_blinks:
            return []
        out: list[Evidence] = []
        mean = sum(durs) / n
        sd_ms = 1000 * math.sqrt(sum((d - mean) ** 2 for d in durs) / (n - 1))
        if sd_ms < self.p.identical_sd_ms:
            out.append(
                Evidence(
                    "blinks_identical",
                    "blink_shape",
                    -2.0 * (1.0 - sd_ms / self.p.identical_sd_ms) - 0.5,
                    f"all {n} blinks last the same {1000 * mean:.0f} ms (spread {sd_ms:.1f} ms)",
                )
            )
        elif sd_ms > 3 * self.p.identical_sd_ms:
            out.append(
                Evidence(
                    "blink_durations_vary",
                    "blink_shape",
                    0.5,
                    f"blink durations vary like a person's: {n} blinks, {1000 * mean:.0f} ± {sd_ms:.0f} ms",
                )
            )
        peaks = self._r_peak.values()
        k = sum(1 for x in peaks if x < self.p.full_closure)
        # Partial closures are easy to fake (and a fast rendered blink sampled at 30 Hz can miss its own
        # apex), so they may support a person only a little; all-full closures count fully against.
        llr = min(_partial_llr(k, n), 1.0)
        share = k / n
        if llr < 0:
            detail = f"{n - k} of {n} blinks are full closures; people leave about half partial"
            out.append(Evidence("blinks_all_full", "blink_shape", llr, detail))
        else:
            detail = f"{k} of {n} blinks are partial ({100 * share:.0f}%), as in spontaneous human blinking"
            out.append(Evidence("blinks_partial_mix", "blink_shape", llr, detail))
        return out

    def _sync_evidence(self) -> list[Evidence]:
        lags = [x for x in self._r_lag.values() if x == x]
        asym = self._r_asym.values()
        if len(asym) < self.p.min_blinks:
            return []
        equal = self._eye_equal / self._eye_n if self._eye_n else 0.0
        max_lag_ms = 1000 * max((abs(x) for x in lags), default=0.0)
        mean_asym = sum(asym) / len(asym)
        if equal > 0.95 or (max_lag_ms < 0.5 and mean_asym < 0.002):
            return [
                Evidence(
                    "eyes_locked",
                    "eye_sync",
                    -1.5,
                    f"both eyes move as one: identical in {100 * equal:.0f}% of samples, "
                    f"largest lid lag {max_lag_ms:.1f} ms over {len(asym)} blinks",
                )
            ]
        return [
            Evidence(
                "eyes_independent",
                "eye_sync",
                0.3,
                f"each eye is measured separately: lid peaks differ by {mean_asym:.3f} on average",
            )
        ]

    def flat_share(self) -> tuple[float, int]:
        """Share of samples whose left lid value repeats exactly (a tracker never does), and the count."""
        return (self._eye_flat / self._eye_n if self._eye_n else 0.0), self._eye_n

    # -- checkpoint --------------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "base": _f(self._base),
            "closed": self._closed,
            "shut": self._shut,
            "t_start": self._t_start,
            "peak": [self._peak, self._peak_l, self._peak_r],
            "up": [_f(self._up_l), _f(self._up_r)],
            "prev": [_f(self._pt), self._pm, self._pl, self._pr],
            "last_onset": _f(self._last_onset),
            "ibi_ok": self._ibi_ok,
            "vis": self._visible_since_blink,
            "eyes": [self._eye_n, self._eye_equal, self._eye_flat],
            "rings": {
                "onset": self._r_onset.to_state(),
                "ibi": self._r_ibi.to_state(),
                "dur": self._r_dur.to_state(),
                "peak": self._r_peak.to_state(),
                "asym": self._r_asym.to_state(),
                "lag": self._r_lag.to_state(),
            },
        }

    @classmethod
    def from_state(cls, policy: BlinkPolicy, s: dict[str, Any]) -> BlinkFeatures:
        b = cls(policy)
        b._base = _nf(s["base"])
        b._closed, b._shut, b._t_start = bool(s["closed"]), bool(s["shut"]), float(s["t_start"])
        b._peak, b._peak_l, b._peak_r = (float(x) for x in s["peak"])
        b._up_l, b._up_r = (_nf(x) for x in s["up"])
        b._pt = _nf(s["prev"][0])
        b._pm, b._pl, b._pr = (float(x) for x in s["prev"][1:])
        b._last_onset = _nf(s["last_onset"])
        b._ibi_ok = bool(s["ibi_ok"])
        b._visible_since_blink = float(s["vis"])
        b._eye_n, b._eye_equal, b._eye_flat = (int(x) for x in s["eyes"])
        r = s["rings"]
        b._r_onset, b._r_ibi = Ring.from_state(r["onset"]), Ring.from_state(r["ibi"])
        b._r_dur, b._r_peak = Ring.from_state(r["dur"]), Ring.from_state(r["peak"])
        b._r_asym, b._r_lag = Ring.from_state(r["asym"]), Ring.from_state(r["lag"])
        return b


def _partial_llr(k: int, n: int) -> float:
    """LLR of ``k`` partial blinks out of ``n``: a person (beta-binomial, mean 0.45) over a driver (0.12).

    The person's partial share varies between people (roughly 0.15-0.75), hence a beta prior with
    concentration 6 rather than one fixed rate; a procedural blink closes fully nearly every time.
    """
    a, b = 0.45 * 6, 0.55 * 6
    ll_h = (
        math.lgamma(k + a)
        + math.lgamma(n - k + b)
        - math.lgamma(n + a + b)
        - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    )
    # A rendered blink always closes fully, but a fast one sampled at 30 Hz misses its apex now and then.
    q = 0.12
    ll_b = k * math.log(q) + (n - k) * math.log(1 - q)
    return ll_h - ll_b


def _ks_normal_p(xs: list[float], mu: float, sig: float) -> float:
    """Kolmogorov-Smirnov p-value of ``xs`` against N(mu, sig) (asymptotic, with Stephens' correction).

    Numerical Recipes' ``probks`` with the effective-n correction; the parameters were fitted to the same
    data, so the p-value is conservative (too large), which only weakens the claim it supports.
    """
    n = len(xs)
    d = 0.0
    for i, x in enumerate(sorted(xs)):
        c = 0.5 * (1.0 + math.erf((x - mu) / (sig * math.sqrt(2.0))))
        d = max(d, (i + 1) / n - c, c - i / n)
    sq = math.sqrt(n)
    lam = (sq + 0.12 + 0.11 / sq) * d
    if lam < 0.2:
        return 1.0
    total, sign = 0.0, 1.0
    for k in range(1, 101):
        term = sign * 2.0 * math.exp(-2.0 * k * k * lam * lam)
        total += term
        if abs(term) < 1e-10:
            break
        sign = -sign
    return min(1.0, max(0.0, total))


def _repeats(ibis: list[float], run: int = 4, tol: float = 0.015) -> int:
    """Length ``run`` if the latest ``run`` intervals occur earlier in the list within ``tol`` s, else 0."""
    n = len(ibis)
    if n < 2 * run:
        return 0
    tail = ibis[n - run :]
    for start in range(0, n - 2 * run + 1):
        if all(abs(ibis[start + j] - tail[j]) <= tol for j in range(run)):
            return run
    return 0


def _f(x: float) -> float | None:
    return None if x != x else x


def _nf(x: float | None) -> float:
    return _NAN if x is None else float(x)


def talk_rate_evidence(
    onsets: list[float], speech: list[tuple[float, float]], t_end: float
) -> list[Evidence]:
    """Do blinks come faster while talking (people: ≈ 26/min against ≈ 17/min at rest)?

    Given ``k`` blinks in the window, the number that fall in speech is binomial; its probability is the
    talking share of the time, weighted by the rate ratio (1.5 for a person, 1.0 for a clock that ignores
    speech). Returns the log-likelihood ratio, halved because the ratio varies between people.
    """
    if len(onsets) < 10 or not speech:
        return []
    t_start = onsets[0]
    if len(speech) >= 32:
        t_start = max(t_start, speech[0][0])
    spans = [(max(a, t_start), min(b, t_end)) for a, b in speech if b > t_start and a < t_end]
    talk = sum(max(0.0, b - a) for a, b in spans)
    total = t_end - t_start
    silent = total - talk
    if talk < 20.0 or silent < 20.0:
        return []
    inside = [t for t in onsets if t >= t_start]
    k_t = sum(1 for t in inside if any(a <= t <= b for a, b in spans))
    k_s = len(inside) - k_t
    p_h = 1.5 * talk / (1.5 * talk + silent)
    p_b = talk / total
    llr = 0.5 * (k_t * math.log(p_h / p_b) + k_s * math.log((1 - p_h) / (1 - p_b)))
    r_t, r_s = 60 * k_t / talk, 60 * k_s / silent
    words = "faster while talking, as people do" if llr > 0 else "no faster while talking"
    return [
        Evidence(
            "blink_rate_speech",
            "blink_speech",
            llr,
            f"blinks {words}: {r_t:.0f}/min talking ({talk:.0f} s) against "
            f"{r_s:.0f}/min silent ({silent:.0f} s)",
        )
    ]
