"""A simulated live-protocol client: one session of one species, deterministic per seed.

``SimSession`` produces the client's messages (PROTOCOL.md, as dicts, with the sender's own clock) up to
a stream time, and reacts to the server's messages it is given (``challenge`` → ``challenge.shown`` and
maybe a movement; ``session.terminate`` → stop). The same object can be driven by the pure engine (the
bench's in-process transport) or streamed through the real websocket server.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from .alt import AltHuman
from .attacks import AIDriver, CarefulBot, Live2DIdle, LLMTTSDriver, ReplayDriver
from .driver import Driver
from .human import HumanDriver, HumanParams, human_tracker
from .tracker import Frame, TrackerState

__all__ = [
    "ATTACK_SPECIES",
    "BONA_FIDE",
    "BONA_FIDE_ALT",
    "BONA_FIDE_SPECIES",
    "SPECIES",
    "SimSession",
    "make_driver",
]

BONA_FIDE = "human"
# People from the independent generator (simulator/alt.py): a robustness check the engine is not tuned on.
BONA_FIDE_ALT = "human_alt"
BONA_FIDE_SPECIES = (BONA_FIDE, BONA_FIDE_ALT)
ATTACK_SPECIES = ("live2d_idle", "ai_driver", "llm_tts", "replay", "careful_bot", "likeness_swap")
SPECIES = (*BONA_FIDE_SPECIES, *ATTACK_SPECIES)


def make_driver(species: str, rng: random.Random, heldout: bool) -> Driver:
    """The driver of ``species``. Raises ``ValueError`` for an unknown species."""
    if species in (BONA_FIDE, "likeness_swap"):
        return HumanDriver(
            rng, HumanParams.draw(rng, heldout), human_tracker(rng, heldout), send_reply_to=rng.random() < 0.5
        )
    makers = {
        BONA_FIDE_ALT: AltHuman,
        "live2d_idle": Live2DIdle,
        "ai_driver": AIDriver,
        "llm_tts": LLMTTSDriver,
        "replay": ReplayDriver,
        "careful_bot": CarefulBot,
    }
    if species not in makers:
        raise ValueError(f"unknown species {species!r}; expected one of {', '.join(SPECIES)}")
    return makers[species](rng, heldout)


@dataclass(order=True)
class _Out:
    t: float  # stream time the client sends it
    order: int  # tie-break: insertion order
    msg: dict[str, Any] = field(compare=False)


class SimSession:
    """One simulated client session (see module docstring)."""

    def __init__(
        self,
        species: str,
        seed: int,
        *,
        heldout: bool = False,
        session_id: str | None = None,
        avatar_id: str = "avatar-sim",
        operator_id: str = "operator-sim",
    ) -> None:
        root = random.Random(f"{species}:{seed}:{int(heldout)}")
        self.species = species
        self.seed = seed
        self.session_id = session_id or f"sim-{species}-{seed}"
        self.avatar_id, self.operator_id = avatar_id, operator_id
        self.driver = make_driver(species, random.Random(root.getrandbits(64)), heldout)
        self._env = random.Random(root.getrandbits(64))  # viewers, frames, clock offset
        self._trk = TrackerState(
            self.driver.tracker, random.Random(root.getrandbits(64)), self._env.uniform(0, 0.03)
        )
        self.offset = self._env.uniform(1_000.0, 90_000.0)  # the sender's monotonic clock at stream time 0
        self.references = [self._env.randbytes(32) for _ in range(self._env.randint(1, 3))]
        self._other = self._env.randbytes(32)  # the avatar a likeness swap actually shows
        self._chat_rate = self._env.choice((0.0, 1.0, 3.0, 6.0, 10.0)) / 60.0  # viewer messages per second
        self._next_chat = self._env.expovariate(self._chat_rate) if self._chat_rate else float("inf")
        self._chat_n = 0
        self._next_frame = self._env.uniform(1.0, 5.0)
        self._frame_every = self._env.uniform(4.0, 8.0)
        self._out: list[_Out] = []
        self._order = 0
        self._seq = 0
        self._batch: list[Frame] = []
        self._next_batch = self.driver.tracker.batch_s
        self._gen_t = 0.0  # stream time generated so far
        self._pending_frame: tuple[float, Frame | None] | None = None  # a tracker frame beyond _gen_t
        self.terminated = False
        self.verdicts: list[dict[str, Any]] = []  # every verdict received, with its stream time
        self.challenges: list[dict[str, Any]] = []  # every challenge received, with its stream time

    def use_references(self, references: list[bytes]) -> None:
        """Stream frames near these reference PDQ hashes (an avatar registered with the real registry)
        instead of the random ones drawn from the seed. Raises ``ValueError`` on an empty list or a hash
        that is not 32 bytes."""
        if not references or any(len(r) != 32 for r in references):
            raise ValueError("references must be one or more 32-byte PDQ hashes")
        self.references = list(references)

    # -- client → server ---------------------------------------------------------------------------------

    def open_message(self) -> dict[str, Any]:
        return {
            "type": "session.open",
            "session": self.session_id,
            "avatar_id": self.avatar_id,
            "operator_id": self.operator_id,
        }

    def close_message(self) -> dict[str, Any]:
        self._seq += 1
        return {"type": "session.close", "session": self.session_id, "seq": self._seq}

    def _emit(self, t: float, msg: dict[str, Any]) -> None:
        self._order += 1
        self._out.append(_Out(t, self._order, msg))

    def messages_until(self, t: float) -> list[dict[str, Any]]:
        """Every client message due by stream time ``t``, in sending order, with ``seq`` assigned."""
        if self.terminated:
            return []
        self._generate(t)
        self._out.sort()
        due = [o for o in self._out if o.t <= t]
        self._out = [o for o in self._out if o.t > t]
        msgs = []
        for o in due:
            self._seq += 1
            msgs.append({**o.msg, "session": self.session_id, "seq": self._seq})
        return msgs

    def _generate(self, t: float) -> None:
        env, d = self._env, self.driver
        while self._next_chat <= t:
            tc = self._next_chat
            self._chat_n += 1
            mid = f"m{self.seed}-{self._chat_n}"
            d.on_chat(tc, mid)
            self._emit(tc + 0.01, {"type": "chat", "t": tc + self.offset, "message_id": mid})
            self._next_chat += env.expovariate(self._chat_rate)
        frames = d.frames_until(t) if d.recorded_frames() else self._live_frames(t)
        for f in frames:
            while f.t >= self._next_batch:
                self._flush(self._next_batch)
                self._next_batch += d.tracker.batch_s
            self._batch.append(f)
        while self._next_batch <= t:
            self._flush(self._next_batch)
            self._next_batch += d.tracker.batch_s
        for u in d.utterances_until(t):
            msg: dict[str, Any] = {"type": "speech", "t0": u.t0 + self.offset, "t1": u.t1 + self.offset}
            if u.reply_to is not None:
                msg["reply_to"] = u.reply_to
            self._emit(u.t1 + 0.15, msg)
        while self._next_frame <= t:
            self._emit(self._next_frame, self._frame_msg(self._next_frame))
            self._next_frame += self._frame_every * env.uniform(0.8, 1.2)
        self._gen_t = t

    def _live_frames(self, t: float) -> list[Frame]:
        out: list[Frame] = []
        while True:
            if self._pending_frame is None:
                tf, ok = self._trk.next_time()
                self._pending_frame = (tf, None if ok else Frame(tf, 0, 0, 0, 0, 0, 0, False))
            tf, dropped = self._pending_frame
            if tf > t:
                return out
            self._pending_frame = None
            truth, face = self.driver.truth(tf)
            if dropped is None:
                out.append(self._trk.distort(tf, truth, face))

    def _flush(self, t_send: float) -> None:
        if not self._batch:
            return
        b, self._batch = self._batch, []
        msg = {
            "type": "tracking",
            "ts": [f.t + self.offset for f in b],
            "channels": {
                "headYaw": [round(f.yaw, 4) for f in b],
                "headPitch": [round(f.pitch, 4) for f in b],
                "headRoll": [round(f.roll, 4) for f in b],
                "eyeBlinkLeft": [round(f.eye_l, 4) for f in b],
                "eyeBlinkRight": [round(f.eye_r, 4) for f in b],
                "jawOpen": [round(f.jaw, 4) for f in b],
            },
            "face": [f.face for f in b],
            "source": "sim",
        }
        self._emit(t_send, msg)

    def _frame_msg(self, t: float) -> dict[str, Any]:
        env = self._env
        ref = self._other if self.species == "likeness_swap" else env.choice(self.references)
        h = int.from_bytes(ref, "big")
        for _ in range(env.randint(0, 18)):  # compression, overlays, pose: a few bits differ
            h ^= 1 << env.randrange(256)
        quality = env.choice((35, 70, 85, 95, 100))
        return {"type": "frame", "t": t + self.offset, "pdq": h.to_bytes(32, "big").hex(), "quality": quality}

    # -- server → client ---------------------------------------------------------------------------------

    def on_server_message(self, msg: dict[str, Any], t: float) -> None:
        """React to a server message received at stream time ``t``."""
        kind = msg.get("type")
        if kind == "challenge":
            self.challenges.append({**msg, "_t": t})
            shown = self.driver.on_challenge(
                str(msg["challenge_id"]), str(msg["action"]), float(msg["deadline_s"]), t
            )
            if shown is not None:
                self._emit(
                    max(shown, t) + 0.005,
                    {
                        "type": "challenge.shown",
                        "t": shown + self.offset,
                        "challenge_id": msg["challenge_id"],
                    },
                )
        elif kind == "verdict":
            self.verdicts.append({**msg, "_t": t})
        elif kind == "session.terminate":
            self.terminated = True
