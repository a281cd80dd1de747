"""Adapters that turn VTuber tracking sources into live-protocol client messages (PROTOCOL.md).

Each adapter is pure: it takes decoded input with the caller's receive time and builds message dicts; the
I/O (UDP sockets, the websocket) lives in ``livecheck/bridge.py``.

- :mod:`livecheck.adapters.vmc`: the VMC protocol (OSC over UDP) as VSeeFace, VMagicMirror, Warudo and
  Virtual Motion Capture send it.
"""

from __future__ import annotations

from livecheck.adapters.vmc import (
    LiveClient,
    Sample,
    TrackingBatch,
    TrackingBatcher,
    VmcAccumulator,
    quat_to_ypr_degrees,
)

__all__ = [
    "LiveClient",
    "Sample",
    "TrackingBatch",
    "TrackingBatcher",
    "VmcAccumulator",
    "quat_to_ypr_degrees",
]
