"""PROTOCOL.md ``session.rejected``: each reason on its own, and the contract's order when several apply."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from livecheck.admission import REJECTION_ORDER, decide
from livecheck.policy import SessionPolicy
from livecheck.store import AdmissionFacts

GOOD = AdmissionFacts(
    session_exists=False,
    avatar_status="active",
    operator_status="verified",
    authorized=True,
    avatar_live=0,
    operator_live=0,
)
LIMITS = SessionPolicy(max_sessions_per_avatar=1, max_sessions_per_operator=1)

# Each reason decided here, and the smallest change of the good facts that causes it.
CAUSES: dict[str, dict[str, object]] = {
    "session_exists": {"session_exists": True},
    "avatar_unknown": {"avatar_status": None},
    "avatar_suspended": {"avatar_status": "suspended"},
    "avatar_revoked": {"avatar_status": "revoked"},
    "operator_unknown": {"operator_status": None},
    "operator_unverified": {"operator_status": "unverified"},
    "operator_not_authorized": {"authorized": False},
    "avatar_busy": {"avatar_live": 1},
    "operator_busy": {"operator_live": 1},
}


def test_good_facts_are_admitted() -> None:
    assert decide(GOOD, LIMITS) is None


@pytest.mark.parametrize("reason", sorted(CAUSES))
def test_each_reason_alone(reason: str) -> None:
    got = decide(dataclasses.replace(GOOD, **CAUSES[reason]), LIMITS)  # type: ignore[arg-type]  # test table
    assert got is not None
    assert got.reason == reason
    assert got.detail


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pair
        for pair in itertools.combinations([r for r in REJECTION_ORDER if r in CAUSES], 2)
        # A missing avatar has no status: suspended/revoked cannot also apply.
        if not (pair[0] == "avatar_unknown" and pair[1] in ("avatar_suspended", "avatar_revoked"))
        and not (pair[0] == "avatar_suspended" and pair[1] == "avatar_revoked")
        and not (pair[0] == "operator_unknown" and pair[1] == "operator_unverified")
    ],
)
def test_the_first_reason_in_the_contracts_order_wins(first: str, second: str) -> None:
    facts = dataclasses.replace(GOOD, **CAUSES[first], **CAUSES[second])  # type: ignore[arg-type]  # test table
    got = decide(facts, LIMITS)
    assert got is not None
    assert got.reason == first


def test_order_is_the_contracts() -> None:
    assert REJECTION_ORDER == (
        "session_exists",
        "too_many_sessions",
        "avatar_unknown",
        "avatar_suspended",
        "avatar_revoked",
        "operator_unknown",
        "operator_unverified",
        "operator_not_authorized",
        "avatar_busy",
        "operator_busy",
    )


def test_a_held_avatar_may_not_stream_and_says_why() -> None:
    got = decide(dataclasses.replace(GOOD, avatar_status="held_for_review"), LIMITS)
    assert got is not None
    assert got.reason == "avatar_suspended"
    assert "held for review" in got.detail


def test_a_revoked_identity_is_unverified() -> None:
    got = decide(dataclasses.replace(GOOD, operator_status="revoked"), LIMITS)
    assert got is not None
    assert (got.reason, "revoked" in got.detail) == ("operator_unverified", True)


def test_busy_limits_come_from_the_policy() -> None:
    roomy = SessionPolicy(max_sessions_per_avatar=3, max_sessions_per_operator=2)
    assert decide(dataclasses.replace(GOOD, avatar_live=2, operator_live=1), roomy) is None
    got = decide(dataclasses.replace(GOOD, avatar_live=3), roomy)
    assert got is not None and got.reason == "avatar_busy" and "3" in got.detail
    got = decide(dataclasses.replace(GOOD, operator_live=2), roomy)
    assert got is not None and got.reason == "operator_busy"
