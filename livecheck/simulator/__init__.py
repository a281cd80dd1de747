"""Simulated live sessions: people and attack species behind simulated trackers, as protocol clients.

``SimSession(species, seed)`` yields the client's protocol messages (``messages_until``) and reacts to
the server's (``on_server_message``); ``run_session`` drives one through a :class:`Transport` (the
in-process :class:`ProtocolServer`, which is the real protocol core). ``bench/liveness_ws.py`` streams
the same clients through the real websocket server. Parameters and their sources are in docs/liveness.md.
"""

from .run import SessionResult, Transport, run_session
from .served import ProtocolServer
from .session import ATTACK_SPECIES, BONA_FIDE, BONA_FIDE_ALT, BONA_FIDE_SPECIES, SPECIES, SimSession

__all__ = [
    "ATTACK_SPECIES",
    "BONA_FIDE",
    "BONA_FIDE_ALT",
    "BONA_FIDE_SPECIES",
    "SPECIES",
    "ProtocolServer",
    "SessionResult",
    "SimSession",
    "Transport",
    "run_session",
]
