"""The VMC bridge: a VTuber tracking app's VMC output (OSC over UDP) → one live-protocol session.

``avatar-registry bridge vmc --listen 127.0.0.1:39539 --live URL --key KEY --avatar ID --operator ID``
calls :func:`run_vmc_bridge`. It listens for the VMC protocol (protocol.vmc.info) on UDP, turns each
frame into ``tracking`` samples with the pure :mod:`livecheck.adapters.vmc`, and speaks PROTOCOL.md to
livecheck over a websocket: ``session.open``, tracking batches, each ``challenge`` printed for the
operator followed by ``challenge.shown`` with the time it was printed, verdicts printed as they come,
``reconnect`` (resume on the new node with ``session.resume``), and ``session.close`` on Ctrl-C. This
module only moves bytes and keeps time; message building, numbering and re-sending live in the adapter.

Times (``ts``, ``challenge.shown.t``) are this process's ``time.monotonic()``: one clock for both, as the
server's reaction-time check needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from pythonosc import osc_packet
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from livecheck.adapters.vmc import LiveClient, SourceLock, TrackingBatcher, VmcAccumulator

__all__ = [
    "EXIT_CONNECT",
    "EXIT_ENDED",
    "EXIT_OK",
    "EXIT_REJECTED",
    "SUBPROTOCOL",
    "challenge_prompt",
    "parse_listen",
    "run_vmc_bridge",
    "summary_lines",
    "verdict_lines",
]

_logger = logging.getLogger(__name__)

# Exit codes of run_vmc_bridge.
EXIT_OK = 0  # the operator stopped the bridge (the session was closed if it was live)
EXIT_ENDED = 1  # the server ended the session, or the connection could not be resumed in time
EXIT_CONNECT = 2  # bad arguments, or the live server refused or could not be reached at the start
EXIT_REJECTED = 3  # session.rejected

SUBPROTOCOL = Subprotocol("avatar-live.v1")
PROTOCOL_VERSION = 1

# How long to wait for the server's first message, and for session.summary after session.close.
_WELCOME_TIMEOUT_S = 10.0
_SUMMARY_TIMEOUT_S = 5.0
# Back-off between reconnect attempts after a dropped connection.
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 8.0
# PROTOCOL.md policy default; session.accepted's policy may say otherwise.
_DEFAULT_RESUME_WINDOW_S = 60.0
# A reconnect's after_s beyond this is not worth waiting for: the session would be gone.
_MAX_RECONNECT_WAIT_S = 30.0
# Hint the operator when no VMC data has arrived this long after the session was accepted.
_NO_DATA_HINT_S = 5.0
# Keep tracking messages to at most half the server's message budget (challenge.shown needs room too).
_RATE_SHARE = 0.5

_CHALLENGE_PROMPTS = {
    "blink_twice": "blink twice",
    "turn_head_left": "turn your head to your left",
    "turn_head_right": "turn your head to your right",
    "nod": "nod (chin down, then back up)",
    "open_mouth": "open your mouth wide and hold it",
}


def challenge_prompt(action: str, deadline_s: float) -> str:
    """The line shown to the operator for a ``challenge``, e.g. "CHALLENGE: turn your head to your left
    within 6 s". Directions are the operator's own (PROTOCOL.md); an action this bridge does not know yet is
    shown by name so the operator can still try."""
    what = _CHALLENGE_PROMPTS.get(action, action.replace("_", " "))
    return f"CHALLENGE: {what} within {deadline_s:g} s"


def verdict_lines(msg: dict[str, Any]) -> list[str]:
    """Lines for a ``verdict``: state, score, action, then one line per reason."""
    score = msg.get("score")
    score_text = f"{score:.2f}" if isinstance(score, int | float) else "?"
    lines = [f"verdict: {msg.get('state')} (score {score_text}, action {msg.get('action')})"]
    for reason in msg.get("reasons") or []:
        if isinstance(reason, dict):
            lines.append(f"  - {reason.get('code')}: {reason.get('detail')}")
    return lines


def summary_lines(msg: dict[str, Any]) -> list[str]:
    """Lines for a ``session.summary``."""
    raw = msg.get("challenges")
    c: dict[str, Any] = raw if isinstance(raw, dict) else {}
    counts = ", ".join(f"{k} {c.get(k, 0)}" for k in ("issued", "passed", "failed", "missed", "open"))
    return [
        f"session ended after {msg.get('duration_s')} s: final {msg.get('final_state')}, "
        f"worst {msg.get('worst_state')}",
        f"  challenges: {counts}",
    ]


def parse_listen(text: str) -> tuple[str, int]:
    """Parse ``--listen``: ``HOST:PORT``, ``[IPv6]:PORT`` or a bare ``PORT`` (on 127.0.0.1).

    Raises:
        ValueError: not one of those forms, or the port is not 0–65535.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"--listen must be HOST:PORT with a port 0–65535, got {text!r}")
    return host, int(port_text)


def new_session_id() -> str:
    """A fresh session id (ids are never reused by one ingest key)."""
    return f"vmc-{secrets.token_hex(8)}"


class _VmcDatagramProtocol(asyncio.DatagramProtocol):
    """Decodes each UDP datagram with python-osc and hands its messages on with one receive time.

    python-osc's ``AsyncIOOSCUDPServer`` dispatcher honours bundle time tags by sleeping until them, inside
    the event loop; a sender whose clock runs ahead (another PC) would stall the websocket. We only need the
    messages, in order, stamped on arrival, so the datagram endpoint is ours and the decoding is python-osc's.
    """

    def __init__(self, on_message: Callable[[str, list[Any], tuple[Any, ...], float], None]) -> None:
        self._on_message = on_message
        # Datagrams that were not valid OSC.
        self.undecodable = 0

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        recv = time.monotonic()
        try:
            packet = osc_packet.OscPacket(data)
        # python-osc raises ParseError, lets UnicodeDecodeError (a ValueError) through for bad strings, and
        # recurses once per nested bundle.
        except (osc_packet.ParseError, ValueError, RecursionError):
            self.undecodable += 1
            return
        for timed in packet.messages:
            self._on_message(timed.message.address, timed.message.params, addr, recv)


@dataclass(frozen=True, slots=True)
class _Done:
    """The bridge is finished with this exit code."""

    code: int


@dataclass(frozen=True, slots=True)
class _Reconnect:
    """The server is draining: resume at ``url`` after ``after_s``."""

    url: str
    after_s: float


@dataclass(frozen=True, slots=True)
class _Lost:
    """The connection dropped without a word: resume on the same URL."""


_Outcome = _Done | _Reconnect | _Lost


class _Bridge:
    """One bridge run: the UDP side feeds the adapter, each websocket connection drains it."""

    def __init__(
        self,
        *,
        live_url: str,
        key: str,
        client: LiveClient,
        out: TextIO,
        batch_interval_s: float,
        stop: asyncio.Event,
    ) -> None:
        self.live_url = live_url
        self.key = key
        self.client = client
        self.out = out
        self.stop = stop
        self.accumulator = VmcAccumulator()
        self.batcher = TrackingBatcher(interval_s=batch_interval_s)
        self.sources = SourceLock()
        # Set when there may be messages to send on the current connection.
        self.wake = asyncio.Event()
        # From session.accepted's policy.
        self.resume_window_s = _DEFAULT_RESUME_WINDOW_S
        # When the session was first accepted (monotonic), for the no-data hint; and whether it was given.
        self._accepted_at: float | None = None
        self._hinted = False
        self._warned_source = False
        # Where we listen, for the operator ("127.0.0.1:39539").
        self.listen_text = ""
        # Whether the current connection got a session.accepted.
        self._accepted_here = False

    def say(self, line: str) -> None:
        """Print one line for the operator, now (the challenge time is taken right after)."""
        self.out.write(line + "\n")
        self.out.flush()

    # --- UDP side -------------------------------------------------------------------------------------

    def on_osc(self, address: str, args: list[Any], source: tuple[Any, ...], recv: float) -> None:
        if not self.sources.accept(source, recv):
            if not self._warned_source:
                self._warned_source = True
                self.say(f"note: ignoring VMC data from {source[0]}:{source[1]}: another app is sending")
            return
        sample = self.accumulator.feed(address, args, recv)
        if sample is not None:
            self.batcher.add(sample)

    async def tick(self) -> None:
        """Close due batches into tracking messages, for the whole run (they wait while disconnected)."""
        while True:
            await asyncio.sleep(self.batcher.interval_s / 4 or 0.01)
            now = time.monotonic()
            for batch in self.batcher.take(now):
                self.client.tracking(batch)
                self.wake.set()
            if (
                not self._hinted
                and self._accepted_at is not None
                and self.accumulator.stats.messages == 0
                and now - self._accepted_at >= _NO_DATA_HINT_S
            ):
                self._hinted = True
                self.say(f"no VMC data yet: point your tracking app's VMC sender at {self.listen_text}")

    # --- websocket side -------------------------------------------------------------------------------

    async def run(self) -> int:
        url = self.live_url
        lost_since: float | None = None
        backoff = _BACKOFF_FIRST_S
        while True:
            self.say(f"connecting to {url}")
            self._accepted_here = False
            try:
                async with connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {self.key}"},
                    subprotocols=[SUBPROTOCOL],
                    open_timeout=10,
                    close_timeout=2,
                ) as ws:
                    outcome = await self._serve(ws)
            except InvalidStatus as exc:
                status = exc.response.status_code
                why = {401: "the key was not accepted", 403: "the key is not an ingest key"}.get(status, "")
                self.say(f"error: the live server refused the connection (HTTP {status}) {why}".rstrip())
                return EXIT_CONNECT
            except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed) as exc:
                if not self.client.opened:
                    self.say(f"error: cannot reach the live server at {url}: {exc}")
                    return EXIT_CONNECT
                outcome = _Lost()
            finally:
                self.client.on_disconnect()
            match outcome:
                case _Done(code):
                    return code
                case _Reconnect(new_url, after_s):
                    self.say(f"the server asked us to move to {new_url}; resuming in {after_s:g} s")
                    url, lost_since, backoff = new_url, None, _BACKOFF_FIRST_S
                    if await self._stopped_within(min(max(after_s, 0.0), _MAX_RECONNECT_WAIT_S)):
                        return self._stopped_offline()
                case _Lost():
                    now = time.monotonic()
                    if lost_since is None or self._accepted_here:
                        # A connection that got as far as session.accepted starts a fresh resume window.
                        lost_since, backoff = now, _BACKOFF_FIRST_S
                    if now - lost_since > self.resume_window_s:
                        self.say("error: could not resume the session within its resume window")
                        return EXIT_ENDED
                    self.say(f"connection lost; retrying in {backoff:g} s")
                    if await self._stopped_within(backoff):
                        return self._stopped_offline()
                    backoff = min(backoff * 2, _BACKOFF_MAX_S)

    async def _stopped_within(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stop.wait()
        return self.stop.is_set()

    def _stopped_offline(self) -> int:
        if self.client.opened:
            self.say("stopped while disconnected: the session ends on its own after its resume window")
        return EXIT_OK

    async def _serve(self, ws: ClientConnection) -> _Outcome:
        """One connection: welcome, open or resume, then send and receive until done, moved or dropped."""
        async with asyncio.timeout(_WELCOME_TIMEOUT_S):
            welcome = self._decode(await ws.recv())
        if welcome is None or welcome.get("type") != "welcome":
            self.say("error: the live server did not start with a welcome message")
            return _Done(EXIT_CONNECT)
        if welcome.get("protocol") != PROTOCOL_VERSION:
            self.say(f"error: the live server speaks protocol {welcome.get('protocol')}, this bridge 1")
            return _Done(EXIT_CONNECT)
        self._apply_limits(welcome.get("limits"))
        await ws.send(self._encode(self.client.hello()))
        reader = asyncio.create_task(self._read(ws))
        sender = asyncio.create_task(self._send(ws))
        stopper = asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait({reader, sender, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                return reader.result()
            if sender.done():
                exc = sender.exception()
                if exc is not None and not isinstance(exc, ConnectionClosed):
                    raise exc
                return _Lost()
            return await self._close(reader)
        finally:
            for task in (reader, sender, stopper):
                task.cancel()
            await asyncio.gather(reader, sender, stopper, return_exceptions=True)

    async def _close(self, reader: asyncio.Task[_Outcome]) -> _Outcome:
        """Ctrl-C: send what is pending, then ``session.close``, and wait briefly for the summary."""
        if not self.client.live:
            return _Done(self._stopped_offline())
        for batch in self.batcher.take(time.monotonic(), force=True):
            self.client.tracking(batch)
        self.client.close()
        self.wake.set()
        try:
            async with asyncio.timeout(_SUMMARY_TIMEOUT_S):
                await reader
        except TimeoutError:
            self.say("the server sent no summary; the session is closed")
        return _Done(EXIT_OK)

    async def _send(self, ws: ClientConnection) -> None:
        # The only writer after hello(), so messages leave in seq order.
        while True:
            await self.wake.wait()
            self.wake.clear()
            for msg in self.client.drain():
                await ws.send(self._encode(msg))

    async def _read(self, ws: ClientConnection) -> _Outcome:
        try:
            async for text in ws:
                msg = self._decode(text)
                if msg is None:
                    continue
                outcome = self._handle(msg)
                if outcome is not None:
                    return outcome
        except ConnectionClosed:
            pass
        return _Done(EXIT_OK) if self.client.closing else _Lost()

    def _handle(self, msg: dict[str, Any]) -> _Outcome | None:
        """React to one server message; an outcome ends this connection."""
        kind = msg.get("type")
        if kind == "reconnect":
            url, after = msg.get("url"), msg.get("after_s")
            if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
                self.say(f"server error: reconnect to an unusable url {url!r} ignored")
                return None
            return _Reconnect(url, float(after) if isinstance(after, int | float) else 0.0)
        if kind in ("keepalive", "welcome") or ("session" in msg and msg["session"] != self.client.session):
            return None
        if kind == "session.accepted":
            self._on_accepted(msg)
        elif kind == "session.rejected":
            self.say(f"error: session rejected: {msg.get('reason')} ({msg.get('detail')})")
            return _Done(EXIT_REJECTED)
        elif kind == "challenge":
            self._on_challenge(msg)
        elif kind == "verdict":
            if isinstance(msg.get("at_seq"), int):
                self.client.on_verdict(msg["at_seq"])
            for line in verdict_lines(msg):
                self.say(line)
        elif kind == "session.terminate":
            self.say(f"the platform ended this session: {msg.get('reason')}. Stop the stream.")
        elif kind == "session.summary":
            for line in summary_lines(msg):
                self.say(line)
            return _Done(EXIT_OK if self.client.closing else EXIT_ENDED)
        elif kind == "error":
            self.say(f"server error {msg.get('code')}: {msg.get('detail')}")
        return None

    def _on_accepted(self, msg: dict[str, Any]) -> None:
        resumed = self.client.opened
        resume_from = msg.get("resume_from_seq")
        self.client.on_accepted(resume_from if isinstance(resume_from, int) else None)
        self._accepted_here = True
        policy = msg.get("policy")
        if isinstance(policy, dict) and isinstance(policy.get("resume_window_s"), int | float):
            self.resume_window_s = float(policy["resume_window_s"])
        if self._accepted_at is None:
            self._accepted_at = time.monotonic()
        what = "resumed" if resumed else "accepted"
        self.say(f"session {self.client.session} {what}: streaming; watch this window for challenges")
        self.wake.set()

    def _on_challenge(self, msg: dict[str, Any]) -> None:
        challenge_id, action, deadline = msg.get("challenge_id"), msg.get("action"), msg.get("deadline_s")
        if not isinstance(challenge_id, str) or not isinstance(action, str) or self.client.closing:
            return
        self.say(challenge_prompt(action, deadline if isinstance(deadline, int | float) else 0))
        # The prompt is in front of the operator now: this is challenge.shown's t (PROTOCOL.md, Challenges).
        self.client.challenge_shown(challenge_id, time.monotonic())
        self.wake.set()

    def _apply_limits(self, limits: object) -> None:
        if not isinstance(limits, dict):
            return
        frame = limits.get("max_frame_bytes")
        if isinstance(frame, int) and frame > 0:
            self.batcher.max_bytes = frame
        rate = limits.get("max_msgs_per_s")
        if isinstance(rate, int | float) and rate > 0:
            self.batcher.interval_s = max(self.batcher.interval_s, 1.0 / (rate * _RATE_SHARE))

    @staticmethod
    def _encode(msg: dict[str, Any]) -> str:
        return json.dumps(msg, separators=(",", ":"), allow_nan=False)

    def _decode(self, data: str | bytes) -> dict[str, Any] | None:
        try:
            msg = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            _logger.warning("session %s: undecodable server message ignored", self.client.session)
            return None
        return msg if isinstance(msg, dict) else None


async def run_vmc_bridge(
    listen: tuple[str, int],
    live_url: str,
    key: str,
    avatar_id: str,
    operator_id: str,
    session: str | None,
    out: TextIO,
    *,
    stream_id: str | None = None,
    batch_interval_s: float = 0.2,
    stop: asyncio.Event | None = None,
    install_signal_handlers: bool = True,
    on_listening: Callable[[tuple[str, int]], None] | None = None,
) -> int:
    """Run the VMC bridge until the operator stops it or the session ends; return an exit code.

    Args:
        listen: UDP address for the VMC protocol (VMC's default port is 39539; port 0 picks a free one).
        live_url: the livecheck websocket URL, e.g. ``wss://live.example/v1/live``.
        key: an ``ingest`` API key, sent as ``Authorization: Bearer``.
        avatar_id, operator_id: for ``session.open``.
        session: the session id; a fresh ``vmc-…`` id when ``None``.
        out: where the operator reads challenges, verdicts and status lines.
        stream_id: optional opaque stream id for ``session.open``.
        batch_interval_s: at most one ``tracking`` message per this interval (raised to respect the
            server's ``max_msgs_per_s``).
        stop: set it to close the session and return; SIGINT/SIGTERM set it when ``install_signal_handlers``.
        install_signal_handlers: route Ctrl-C and SIGTERM to ``stop`` (main thread, Unix event loops).
        on_listening: called with the bound UDP address once the socket is open.

    Returns:
        :data:`EXIT_OK`, :data:`EXIT_ENDED`, :data:`EXIT_CONNECT` or :data:`EXIT_REJECTED`.

    Follows PROTOCOL.md (live protocol v1) and the VMC protocol's Marionette side.
    """
    loop = asyncio.get_running_loop()
    try:
        client = LiveClient(session or new_session_id(), avatar_id, operator_id, stream_id=stream_id)
    except ValueError as exc:
        out.write(f"error: {exc}\n")
        out.flush()
        return EXIT_CONNECT
    stop = stop if stop is not None else asyncio.Event()
    bridge = _Bridge(
        live_url=live_url, key=key, client=client, out=out, batch_interval_s=batch_interval_s, stop=stop
    )
    # Signals we took over, with the handler to put back: remove_signal_handler() would reset SIGINT to
    # Python's default and so drop asyncio.run()'s own Ctrl-C handling (asyncio.Runner._on_sigint).
    handled: list[tuple[signal.Signals, Any]] = []
    if install_signal_handlers:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            # Not available off the main thread or on Windows' proactor loop: Ctrl-C then cancels instead.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
                handled.append((sig, previous))
    transport: asyncio.DatagramTransport | None = None
    ticker: asyncio.Task[None] | None = None
    try:
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _VmcDatagramProtocol(bridge.on_osc), local_addr=listen
            )
        except OSError as exc:
            bridge.say(f"error: cannot listen for VMC on {listen[0]}:{listen[1]}: {exc}")
            return EXIT_CONNECT
        host, port = transport.get_extra_info("sockname")[:2]
        bridge.listen_text = f"{host}:{port}"
        bridge.say(f"listening for VMC on {host}:{port}; session {client.session}")
        if on_listening is not None:
            on_listening((host, port))
        ticker = asyncio.create_task(bridge.tick())
        return await bridge.run()
    finally:
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        if transport is not None:
            transport.close()
        for sig, previous in handled:
            loop.remove_signal_handler(sig)
            if previous is not None:
                signal.signal(sig, previous)
