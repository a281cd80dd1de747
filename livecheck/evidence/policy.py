"""The evidence engine's policy: windows, thresholds, family caps and actions, validated.

Every number the engine judges by lives here, so an operator can read and change the operating point in the
policy file without touching code. The defaults are the operating point published in the README (tuned on
the simulator's tuning seeds, reported on held-out seeds by ``bench/liveness_eval.py``). Unknown keys are
errors (``extra="forbid"``): a misspelt threshold must not silently fall back to its default.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "BlinkPolicy",
    "ChallengePolicy",
    "EvidencePolicy",
    "FamilyCaps",
    "LikenessPolicy",
    "MotionPolicy",
    "PresencePolicy",
    "SpeechPolicy",
    "VerdictPolicy",
]

Action = Literal["none", "warn", "require_label", "terminate"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BlinkPolicy(_Strict):
    """Blink detection (hysteresis on mean lid closure) and the blink statistics' thresholds."""

    # A blink starts when mean lid closure rises this far above the resting level and ends when it falls
    # back below ``open_delta`` above it: two levels, so tracker noise near one level cannot split a blink.
    close_delta: float = Field(0.15, gt=0, lt=1)
    open_delta: float = Field(0.08, gt=0, lt=1)
    # A peak at or above this is a full closure; below it a partial blink.
    full_closure: float = Field(0.8, gt=0, le=1)
    # Longer closures are eyes shut (looking down, resting), not blinks.
    max_blink_s: float = Field(1.0, gt=0)
    # Inter-blink intervals needed before their shape is judged.
    min_intervals: int = Field(8, ge=4)
    # Blinks needed before duration spread, partial share and eye sync are judged.
    min_blinks: int = Field(6, ge=3)
    # Coefficient of variation of intervals below which blinks look clocked (humans: 0.5-1.2).
    regular_cv: float = Field(0.22, gt=0)
    # Duration spread (ms) below which all blinks look identical (humans: tens of ms).
    identical_sd_ms: float = Field(8.0, gt=0)
    # Face-visible seconds without any blink that count as "never blinks".
    no_blink_s: float = Field(60.0, gt=0)
    # Weight applied to the log-normal-versus-uniform log-likelihood difference (model misfit discount).
    shape_weight: float = Field(0.5, gt=0)


class MotionPolicy(_Strict):
    """Head-motion spectrum, tracker noise and frame cadence."""

    # A spectral peak this many times its local background is a narrow line (a procedural sine).
    line_ratio: float = Field(60.0, gt=1)
    # Share of head-motion band power in lines from which the motion reads as procedural.
    line_share: float = Field(0.5, gt=0, le=1)
    # RMS of the third difference of head angles (deg) below which there is no sensor noise at all.
    noiseless_deg: float = Field(0.004, gt=0)
    # Excess kurtosis of the second difference below which the noise is uniform (bounded) jitter.
    uniform_kurtosis: float = Field(-0.35, lt=0)
    # Frame-interval standard deviation (ms) below which timestamps are a fixed clock.
    fixed_cadence_ms: float = Field(0.05, gt=0)
    # Samples needed before noise and cadence are judged.
    min_samples: int = Field(600, ge=50)


class SpeechPolicy(_Strict):
    """Mouth against ``speech`` and chat-to-reply latency."""

    # jawOpen level that counts as an open mouth.
    jaw_open: float = Field(0.15, gt=0, lt=1)
    # Utterances needed before lip-sync lag is judged.
    min_utterances: int = Field(4, ge=2)
    # Onset-lag spread (ms) and |median| (ms) below which the mouth is locked to the audio.
    locked_sd_ms: float = Field(25.0, gt=0)
    locked_median_ms: float = Field(45.0, gt=0)
    # Replies needed before reply latency is judged; latencies outside [min, max] s are not replies.
    min_replies: int = Field(4, ge=2)
    reply_min_s: float = Field(0.2, ge=0)
    reply_max_s: float = Field(20.0, gt=0)
    # Spread of log reply latency under each hypothesis (a person vs a language-model pipeline).
    human_log_sd: float = Field(0.6, gt=0)
    machine_log_sd: float = Field(0.2, gt=0)


class ChallengePolicy(_Strict):
    """How challenge outcomes weigh (log-likelihood ratios, human over automation)."""

    # A pass is weak evidence: programmatic answers pass too; failures and misses say more. A person
    # fails now and then (looked away, did too little); a challenge never shown is the client's doing.
    passed_llr: float = 0.5
    failed_llr: float = -1.0
    missed_llr: float = -2.2
    # A challenge failed while the tracker saw no face (flag `face_lost`): the operator looked away.
    face_lost_llr: float = -0.5
    # Answers flagged by the challenge engine as faster than a person (`reaction_too_fast`) or begun
    # before the prompt was shown (`moved_before_shown`): a binomial model of how often an answer is
    # flagged, for a person (a coincidence: a blink or a glance just then) against a script that acts on
    # the challenge message. It only ever counts against the session.
    flag_rate_human: float = Field(0.05, gt=0, lt=1)
    flag_rate_bot: float = Field(0.5, gt=0, lt=1)
    # Answers flagged `template_movement` (a noiseless or repeated constant-speed ramp), the same way; people
    # simulated with canned movements exist, so this evidence is weak and capped.
    template_rate_human: float = Field(0.15, gt=0, lt=1)
    template_rate_bot: float = Field(0.8, gt=0, lt=1)
    template_cap: float = Field(2.0, ge=0)
    # Reaction-time spread, pooled within each action (a script's canned movements reach the onset level
    # at a different point for each action): a Gaussian likelihood ratio of the spread under a person's
    # trial-to-trial SD against a script's near-fixed delay, both blurred by the frame-time quantisation
    # (a uniform of one frame period). Judged from ``min_reactions`` answers with at least
    # ``min_reactions - 2`` degrees of freedom; only ever against the session, at most ``regular_llr``.
    person_rt_sd_ms: float = Field(15.0, gt=0)
    script_rt_sd_ms: float = Field(4.0, gt=0)
    min_reactions: int = Field(5, ge=3)
    regular_llr: float = Field(-2.0, le=0)
    # A "pass" whose movement began this late (ms) is a coincidence, not an answer (people: under ~1.5 s).
    late_ms: float = Field(2000.0, gt=0)
    late_llr: float = -0.5
    # Violation when at most ``unresponsive_max_passed`` of the last ``unresponsive_window`` challenges were
    # answered and at most ``unresponsive_max_share`` of the session's (a recording never answers; a
    # person who answered most so far and then misses a run of them is warned, not ended); at_risk after
    # ``at_risk_streak`` unanswered in a row. Challenges failed with the face out of view do not count.
    unresponsive_window: int = Field(6, ge=2, le=8)
    unresponsive_max_passed: int = Field(1, ge=0)
    unresponsive_max_share: float = Field(0.5, gt=0, le=1)
    # A client that never shows the last ``unresponsive_missed`` challenges (no `challenge.shown` in time;
    # a person's app always shows them) is a violation sooner, under the same session-share condition.
    unresponsive_missed: int = Field(4, ge=2, le=8)
    at_risk_streak: int = Field(3, ge=1, le=8)

    @model_validator(mode="after")
    def _rates_ordered(self) -> ChallengePolicy:
        if not self.flag_rate_human < self.flag_rate_bot:
            raise ValueError("need flag_rate_human < flag_rate_bot")
        if not self.template_rate_human < self.template_rate_bot:
            raise ValueError("need template_rate_human < template_rate_bot")
        if not self.script_rt_sd_ms < self.person_rt_sd_ms:
            raise ValueError("need script_rt_sd_ms < person_rt_sd_ms")
        return self


class PresencePolicy(_Strict):
    """No face, no tracking."""

    window_s: float = Field(60.0, gt=0)
    # Share of the window without a face from which absence counts against the session.
    absent_share: float = Field(0.7, gt=0, le=1)
    # Continuous absence (no face, no tracking) that forces at_risk, then violation.
    at_risk_after_s: float = Field(45.0, gt=0)
    violation_after_s: float = Field(150.0, gt=0)


class LikenessPolicy(_Strict):
    """``frame`` PDQ against the avatar's reference fingerprints (DESIGN §5 operating point)."""

    match_distance: int = Field(31, ge=0, le=256)
    min_quality: int = Field(50, ge=0, le=100)
    # Recent good frames considered, how many are needed, and the mismatch share that is a violation.
    window_frames: int = Field(6, ge=1, le=64)
    min_frames: int = Field(3, ge=1)
    mismatch_share: float = Field(0.75, gt=0, le=1)


class FamilyCaps(_Strict):
    """Per feature family, the most it may move the total toward automation (bot) or a person (human).

    Families are capped so that no single family decides: correlated features of one family (for example
    duration spread and partial share of the same blinks) cannot add up to a verdict on their own.
    """

    bot: dict[str, float] = Field(
        default_factory=lambda: {
            "blink_intervals": 3.0,
            "blink_shape": 3.0,
            "blink_speech": 1.0,
            "eye_sync": 1.5,
            "head_motion": 3.5,
            "noise": 2.5,
            "cadence": 2.0,
            "mouth": 2.5,
            "replies": 2.0,
            "challenges": 9.0,
            "presence": 3.0,
            "replay": 4.0,
        }
    )
    # Evidence for a person is capped lower than evidence against: a script can imitate one family cheaply
    # (random keyframes look broadband, Gaussian jitter looks like a sensor), so imitated families must not
    # cancel what the others show.
    human: dict[str, float] = Field(
        default_factory=lambda: {
            "blink_intervals": 2.0,
            "blink_shape": 1.5,
            "blink_speech": 0.5,
            "eye_sync": 0.3,
            "head_motion": 0.5,
            "noise": 0.3,
            "cadence": 0.5,
            "mouth": 0.7,
            "replies": 0.7,
            "challenges": 2.0,
            "presence": 0.0,
            "replay": 0.0,
        }
    )


class VerdictPolicy(_Strict):
    """The state machine: thresholds on the total log-likelihood ratio, with hysteresis and dwell."""

    # Prior log-odds (person over automation) before any evidence.
    prior: float = 0.0
    # Stay pending at least this long (stream seconds) and decide by ``max_pending_s`` at the latest.
    min_observe_s: float = Field(30.0, ge=0)
    max_pending_s: float = Field(90.0, gt=0)
    # Enter human at or above ``human_enter``; leave it only below ``human_exit``.
    human_enter: float = 2.0
    human_exit: float = -2.0
    # Enter violation at or below ``violation_enter`` (held for ``dwell_s``); violation is final.
    violation_enter: float = -5.5
    # A change between human and at_risk must hold this long before it is announced (no flapping).
    dwell_s: float = Field(10.0, ge=0)
    # at_risk with a total at or below this asks for an AI label instead of a plain warning.
    label_below: float = -4.0

    @model_validator(mode="after")
    def _ordered(self) -> VerdictPolicy:
        if not self.violation_enter < self.human_exit <= self.human_enter:
            raise ValueError("need violation_enter < human_exit <= human_enter")
        if self.max_pending_s < self.min_observe_s:
            raise ValueError("max_pending_s must be at least min_observe_s")
        return self


class EvidencePolicy(_Strict):
    """All of the evidence engine's policy. Defaults are the published operating point."""

    blink: BlinkPolicy = Field(default_factory=BlinkPolicy)
    motion: MotionPolicy = Field(default_factory=MotionPolicy)
    speech: SpeechPolicy = Field(default_factory=SpeechPolicy)
    challenges: ChallengePolicy = Field(default_factory=ChallengePolicy)
    presence: PresencePolicy = Field(default_factory=PresencePolicy)
    likeness: LikenessPolicy = Field(default_factory=LikenessPolicy)
    caps: FamilyCaps = Field(default_factory=FamilyCaps)
    verdict: VerdictPolicy = Field(default_factory=VerdictPolicy)
    # Action announced with each state; at_risk uses ``at_risk_label`` when the total is low.
    actions: dict[Literal["pending", "human", "at_risk", "violation"], Action] = Field(
        default_factory=lambda: {
            "pending": "none",
            "human": "none",
            "at_risk": "warn",
            "violation": "terminate",
        }
    )
    at_risk_label: Action = "require_label"
    # Reasons listed per verdict.
    max_reasons: int = Field(4, ge=1, le=16)
    # Minimum stream seconds between two full recomputations of the statistics (spectrum, fits).
    recompute_s: float = Field(10.0, ge=0)

    @model_validator(mode="after")
    def _complete(self) -> EvidencePolicy:
        missing = {"pending", "human", "at_risk", "violation"} - set(self.actions)
        if missing:
            raise ValueError(f"actions missing for states: {sorted(missing)}")
        return self

    def action_for(self, state: str, total: float) -> Action:
        """The action announced with ``state`` at total log-likelihood ratio ``total``."""
        if state == "at_risk" and total <= self.verdict.label_below:
            return self.at_risk_label
        return self.actions[state]  # type: ignore[index]  # state is one of the four VerdictStates
