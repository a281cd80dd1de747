"""Chat-to-reply latency: a person reads, thinks and answers some messages; a pipeline answers all, on time.

A language model plus speech synthesis answers after network, generation and synthesis delays that vary
little (log spread ≈ 0.2), and answers nearly every message. A person's latency spreads over seconds
(reading, deciding whether to answer, finishing a sentence; log spread ≈ 0.6) and many messages get no
spoken answer. A reply is the ``speech`` whose ``reply_to`` names the chat message; without ``reply_to``
it is the first unanswered chat message 0.2-20 s before the utterance starts.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

from .base import Evidence
from .policy import SpeechPolicy
from .ring import Ring

__all__ = ["Replies"]

_CHATS = 32


class Replies:
    """Recent chat messages, which of them were answered, and the reply latencies."""

    __slots__ = ("_answered", "_chat_id", "_chat_t", "_lat", "_n_chats", "p")

    def __init__(self, policy: SpeechPolicy) -> None:
        self.p = policy
        self._chat_t = Ring("d", _CHATS)  # when each message became visible (sender clock)
        self._chat_id = Ring("I", _CHATS)  # CRC-32 of its message_id (stable across processes)
        self._answered = Ring("B", _CHATS)  # 1 once a reply was matched to it
        self._lat = Ring("f", 32)  # reply latencies, s
        self._n_chats = 0  # chat messages seen in the session

    def on_chat(self, t: float, message_id: str) -> None:
        self._chat_t.push(t)
        self._chat_id.push(zlib.crc32(message_id.encode("utf-8")))
        self._answered.push(0)
        self._n_chats += 1

    def on_speech(self, t0: float, reply_to: str | None) -> None:
        """Match an utterance starting at ``t0`` to the chat message it answers, if any."""
        ts, ids, ans = self._chat_t.values(), self._chat_id.values(), self._answered.values()
        idx = -1
        if reply_to is not None:
            crc = zlib.crc32(reply_to.encode("utf-8"))
            idx = next((i for i in range(len(ids) - 1, -1, -1) if ids[i] == crc), -1)
        else:
            for i, t in enumerate(ts):
                if not ans[i] and self.p.reply_min_s <= t0 - t <= self.p.reply_max_s:
                    idx = i
                    break
        if idx < 0 or ans[idx]:
            return
        lat = t0 - ts[idx]
        if not (0.0 <= lat <= 4 * self.p.reply_max_s):
            return
        self._lat.push(lat)
        # Mark it answered: rebuild the flags ring in order (32 items, only on speech messages).
        ans[idx] = 1
        self._answered.clear()
        for a in ans:
            self._answered.push(a)

    def evidence(self, now_t: float) -> list[Evidence]:
        """Latency spread and answer share; ``now_t`` is the latest sender time seen."""
        out: list[Evidence] = []
        lats = [x for x in self._lat.values() if x > 0.05]
        n = len(lats)
        if n >= self.p.min_replies:
            logs = [math.log(x) for x in lats]
            m = sum(logs) / n
            ss = sum((v - m) ** 2 for v in logs)
            sh, sb = self.p.human_log_sd, self.p.machine_log_sd
            llr = n * math.log(sb / sh) + ss * (1 / (2 * sb * sb) - 1 / (2 * sh * sh))
            sd = math.sqrt(ss / (n - 1))
            med = sorted(lats)[n // 2]
            nums = f"{n} replies, median {med:.1f} s, log spread {sd:.2f}"
            if llr < 0:
                out.append(
                    Evidence(
                        "reply_latency_machine",
                        "replies",
                        llr,
                        f"chat replies come on a machine's clock: {nums}",
                    )
                )
            else:
                out.append(
                    Evidence(
                        "reply_latency_human", "replies", llr, f"chat replies vary like a person's: {nums}"
                    )
                )
        ts, ans = self._chat_t.values(), self._answered.values()
        old = [a for t, a in zip(ts, ans, strict=True) if now_t - t > self.p.reply_max_s]
        if len(old) >= 6:
            share = sum(old) / len(old)
            if share >= 0.95:
                out.append(
                    Evidence(
                        "replies_every_chat",
                        "replies",
                        -0.8,
                        f"every one of {len(old)} chat messages got a spoken answer",
                    )
                )
        return out

    def to_state(self) -> dict[str, Any]:
        return {
            "t": self._chat_t.to_state(),
            "id": self._chat_id.to_state(),
            "ans": self._answered.to_state(),
            "lat": self._lat.to_state(),
            "n": self._n_chats,
        }

    @classmethod
    def from_state(cls, policy: SpeechPolicy, s: dict[str, Any]) -> Replies:
        r = cls(policy)
        r._chat_t, r._chat_id = Ring.from_state(s["t"]), Ring.from_state(s["id"])
        r._answered, r._lat = Ring.from_state(s["ans"]), Ring.from_state(s["lat"])
        r._n_chats = int(s["n"])
        return r
