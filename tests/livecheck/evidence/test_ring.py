"""The bounded ring buffer and its checkpoint form."""

import json

import pytest

from livecheck.evidence.ring import Ring


def test_keeps_the_last_values_in_order() -> None:
    r = Ring("h", 4)
    for v in range(7):
        r.push(v)
    assert r.values() == [3, 4, 5, 6]
    assert len(r) == 4
    assert r.last() == 6


def test_partial_ring_and_empty_default() -> None:
    r = Ring("f", 8)
    assert r.values() == []
    assert r.last(-1.0) == -1.0
    r.push(1.5)
    assert r.values() == [1.5]


def test_state_round_trips_through_json() -> None:
    r = Ring("d", 5)
    for v in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
        r.push(v)
    back = Ring.from_state(json.loads(json.dumps(r.to_state())))
    assert back.values() == r.values()
    back.push(0.7)
    assert back.values() == [0.3, 0.4, 0.5, 0.6, 0.7]


def test_inconsistent_state_is_refused() -> None:
    state = Ring("B", 4).to_state()
    state["c"] = 5
    with pytest.raises(ValueError, match="holds 4 values, expected 5"):
        Ring.from_state(state)
    state = Ring("B", 4).to_state()
    state["h"] = 9
    with pytest.raises(ValueError, match="out of range"):
        Ring.from_state(state)


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity must be positive"):
        Ring("f", 0)
