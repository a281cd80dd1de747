"""The bench's stand-in challenge referee follows PROTOCOL.md's default completion rules."""

import itertools
import random

from livecheck.simulator.referee import Referee


def _tracking(ts, yaw=None, pitch=None, eyes=None, jaw=None) -> dict:
    n = len(ts)
    return {
        "type": "tracking",
        "ts": ts,
        "channels": {
            "headYaw": yaw or [0.0] * n,
            "headPitch": pitch or [0.0] * n,
            "headRoll": [0.0] * n,
            "eyeBlinkLeft": eyes or [0.05] * n,
            "eyeBlinkRight": eyes or [0.05] * n,
            "jawOpen": jaw or [0.02] * n,
        },
        "face": [True] * n,
    }


def _issue(ref: Referee, now: float) -> dict:
    ref.next_at = now
    msgs, _ = ref.poll(now, "s")
    return msgs[0]


def test_a_turn_after_the_prompt_passes_with_its_reaction_time() -> None:
    ref = Referee(random.Random(1))
    ch = _issue(ref, 10.0)
    action = ch["action"]
    ts = [100.0 + i / 30 for i in range(300)]
    shown = 103.0

    def sig(t: float) -> float:
        return 0.0 if t < shown + 0.4 else min(25.0, (t - shown - 0.4) * 60)

    yaw = pitch = eyes = jaw = None
    if action == "turn_head_left":
        yaw = [sig(t) for t in ts]
    elif action == "turn_head_right":
        yaw = [-sig(t) for t in ts]
    elif action == "nod":
        pitch = [sig(t) if t < shown + 1.2 else 0.0 for t in ts]
    elif action == "open_mouth":
        jaw = [0.9 if shown + 0.4 <= t < shown + 1.4 else 0.02 for t in ts]
    else:
        eyes = [0.95 if any(a <= t < a + 0.15 for a in (shown + 0.4, shown + 0.9)) else 0.05 for t in ts]
    ref.on_message(_tracking(ts, yaw, pitch, eyes, jaw), 11.0)
    ref.on_message({"type": "challenge.shown", "t": shown, "challenge_id": ch["challenge_id"]}, 11.0)
    _, outcomes = ref.poll(20.0, "s")
    (o,) = outcomes
    assert o.result == "passed", action
    assert o.reaction_ms is not None and 350 <= o.reaction_ms <= 500
    assert o.flags == ()


def test_nothing_done_fails_and_never_shown_is_missed() -> None:
    ref = Referee(random.Random(2))
    ch = _issue(ref, 10.0)
    ts = [100.0 + i / 30 for i in range(300)]
    ref.on_message(_tracking(ts), 11.0)
    ref.on_message({"type": "challenge.shown", "t": 102.0, "challenge_id": ch["challenge_id"]}, 11.0)
    _, (o,) = ref.poll(20.0, "s")
    assert o.result == "failed"
    ref2 = Referee(random.Random(3))
    _issue(ref2, 10.0)
    _, (o2,) = ref2.poll(16.0, "s")
    assert o2.result == "missed"


def test_challenges_are_spaced() -> None:
    ref = Referee(random.Random(4), mean_interval_s=5.0)
    times = []
    for k in range(400):
        now = k * 0.5
        msgs, _ = ref.poll(now, "s")
        times += [now for m in msgs if m["type"] == "challenge"]
    assert len(times) > 5
    assert min(b - a for a, b in itertools.pairwise(times)) >= 11.0
