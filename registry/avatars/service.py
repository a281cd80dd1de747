"""Avatar registration and every change to an avatar: the rules, the likeness check, the transaction.

Every change to what the match index holds runs in one transaction that (1) takes the likeness lock first,
before any row lock, so writers never deadlock and are serialised; (2) catches the local index up to the
committed state when it must check conflicts; (3) writes the change, its transparency-log leaf
(``append_leaf``, same transaction), its audit entry and its ``avatar_changes`` row (``NOTIFY``). After
commit the caller refreshes the local index. Two owners racing to register copies of one likeness are
therefore decided one after the other against an exact index: exactly one wins.

Status changes also ``NOTIFY live_control`` with ``{"kind": "avatar_status", "avatar_id", "status"}`` in the
same transaction, so live sessions of a suspended or revoked avatar end (docs/avatars.md).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import asyncpg

from registry import audit, errors
from registry.avatars import store
from registry.avatars.images import decode_image
from registry.avatars.models import ModelInfo
from registry.avatars.trigrams import trigrams
from registry.fingerprints import store as fp_store
from registry.fingerprints.phash import augmented_pdqs, dihedral_pdqs
from registry.fingerprints.service import AUGMENT_SIDE, SLOT_NAMES, FingerprintService, LikenessHit
from registry.operators import store as operator_store
from registry.operators.store import Operator
from registry.roles import Principal, Role
from registry.translog.log import append_leaf

__all__ = [
    "LIVE_CONTROL_CHANNEL",
    "MAX_IMAGES_PER_REQUEST",
    "Reference",
    "add_allow_entry",
    "add_images",
    "approve_transfer",
    "change_status",
    "conflict_out",
    "fingerprint_upload",
    "register_avatar",
    "reject_transfer",
    "remove_allow_entry",
    "remove_image",
    "request_transfer",
    "require_owner",
    "require_verified",
    "resolve_review",
    "set_delegate",
    "set_match_disabled",
    "unset_delegate",
]

# A registration or image addition carries 1 to 8 image parts (the issue).
MAX_IMAGES_PER_REQUEST: Final = 8
# Channel the live servers listen on for commands about sessions (PROTOCOL.md; docs/avatars.md).
LIVE_CONTROL_CHANNEL: Final = "live_control"

OnConflict = Literal["reject", "hold"]


@dataclass(frozen=True, slots=True)
class Reference:
    """A decoded, fingerprinted image part, ready to check and store."""

    part: str
    filename: str | None
    image: store.NewImage
    # Every slot's hash (SLOT_NAMES order: 8 dihedral variants, then the augmentations): the queries a
    # likeness check runs, and what the index holds for the image once stored.
    hashes: tuple[bytes, ...]


def fingerprint_upload(part: str, filename: str | None, data: bytes, *, min_quality: int) -> Reference:
    """Decode one image part safely, hash it (PDQ of its 8 dihedral variants and of its augmentations) and
    check its quality.

    CPU-bound and pure: callers run it in a thread. Raises what ``decode_image`` raises (each 4xx names the
    part), and ``Unprocessable`` ``image_low_quality`` (naming the part) below ``min_quality``.
    """
    decoded = decode_image(part, data)
    pdqs = dihedral_pdqs(decoded.image)
    quality = pdqs[0].quality
    if quality < min_quality:
        raise errors.Unprocessable(
            f"image part {part!r} is too featureless to protect: PDQ quality {quality}, "
            f"expected at least {min_quality}",
            code="image_low_quality",
            details={"part": part, "filename": filename, "quality": quality, "min_quality": min_quality},
        )
    variants = tuple(p.bits for p in pdqs)
    augments = tuple(p.bits for p in augmented_pdqs(decoded.image, max_side=AUGMENT_SIDE))
    return Reference(
        part=part,
        filename=filename,
        image=store.NewImage(
            sha256=decoded.sha256,
            pdq=variants[0],
            variants=b"".join(variants),
            augments=b"".join(augments),
            quality=quality,
            width=decoded.width,
            height=decoded.height,
            format=decoded.format,
            content=data,
        ),
        hashes=variants + augments,
    )


def conflict_out(part: str | None, hit: LikenessHit) -> dict[str, Any]:
    """A conflict as the API reports it (409 ``details.conflicts``, review items)."""
    out: dict[str, Any] = {
        "avatar_id": str(hit.avatar_id),
        "distance": hit.distance,
        "image_sha256": hit.image_sha256.hex(),
        "status": hit.status,
        "variant": SLOT_NAMES[hit.variant],
        "disposition": hit.disposition,
    }
    if part is not None:
        out["part"] = part
    return out


async def require_verified(conn: asyncpg.Connection, operator_id: uuid.UUID | None) -> Operator:
    """The operator, if identity-verified. Raises ``Forbidden`` (``operator_unverified``)."""
    if operator_id is None:
        raise errors.Forbidden("this action needs an operator key", code="forbidden")
    op = await operator_store.get_operator(conn, operator_id)
    if op.identity_status != "verified":
        raise errors.Forbidden(
            f"operator identity is {op.identity_status}: only identity-verified operators may do this",
            code="operator_unverified",
        )
    return op


def require_owner(actor: Principal, avatar: store.Avatar) -> None:
    """Raises ``Forbidden`` (``not_owner``) unless ``actor`` is the avatar owner's operator key."""
    if actor.role is not Role.OPERATOR or actor.operator_id != avatar.owner_operator_id:
        raise errors.Forbidden("only the avatar's owner may do this", code="not_owner")


def _sha_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def _check_likeness(
    conn: asyncpg.Connection, fps: FingerprintService, refs: list[Reference], owner: uuid.UUID, now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Under the likeness lock: bring the index to the committed state and return (conflicts, reviews):
    hits on other owners' references that block, and hits on quarantined references that go to review."""
    await fps.catch_up(conn)
    blocking: list[dict[str, Any]] = []
    review: list[dict[str, Any]] = []
    for ref in refs:
        for hit in fps.index.conflicts(ref.hashes, fps.policy.threshold, owner, now):
            (review if hit.disposition == "review" else blocking).append(conflict_out(ref.part, hit))
    blocking.sort(key=lambda c: (c["distance"], c["avatar_id"], c["part"]))
    return blocking, review


def _check_new_images(refs: list[Reference]) -> None:
    if not 1 <= len(refs) <= MAX_IMAGES_PER_REQUEST:
        raise errors.BadRequest(
            f"expected 1 to {MAX_IMAGES_PER_REQUEST} image parts, got {len(refs)}", code="image_count"
        )
    seen: dict[bytes, str] = {}
    for ref in refs:
        if ref.image.sha256 in seen:
            raise errors.BadRequest(
                f"image part {ref.part!r} is the same file as {seen[ref.image.sha256]!r}",
                code="duplicate_image",
                details={"part": ref.part, "same_as": seen[ref.image.sha256]},
            )
        seen[ref.image.sha256] = ref.part


async def register_avatar(
    pool: asyncpg.Pool,
    fps: FingerprintService,
    actor: Principal,
    *,
    name: str,
    refs: list[Reference],
    model: ModelInfo | None,
    on_conflict: OnConflict,
    now: datetime,
) -> tuple[store.Avatar, list[dict[str, Any]]]:
    """Register an avatar (DESIGN §3, §5): conflict check and insert atomically, under the likeness lock.
    Returns the avatar and the conflicts it was held for (empty when it is active).

    A conflict with another owner's active or held avatar is a ``Conflict`` ``likeness_conflict`` (details:
    ``conflicts``) and nothing is stored, or, with ``on_conflict="hold"``, the avatar is stored
    ``held_for_review`` with a ``likeness_hold`` review item. Hits on quarantined references never block:
    they open a ``quarantined_match`` review item.

    Raises:
        Forbidden: ``operator_unverified``.
        BadRequest: ``image_count``, ``duplicate_image``.
        Conflict: ``likeness_conflict``.
        NotReady: ``index_not_ready``.
    """
    _check_new_images(refs)
    owner_id = actor.operator_id
    async with pool.acquire() as conn:
        async with conn.transaction():
            await fp_store.take_likeness_lock(conn)
            owner = await require_verified(conn, owner_id)
            blocking, review = await _check_likeness(conn, fps, refs, owner.id, now)
            if blocking and on_conflict == "reject":
                raise errors.Conflict(
                    f"the images resemble {len({c['avatar_id'] for c in blocking})} avatar(s) of another "
                    "owner",
                    code="likeness_conflict",
                    details={"conflicts": blocking},
                )
            status = "held_for_review" if blocking else "active"
            avatar = await store.insert_avatar(
                conn,
                owner_operator_id=owner.id,
                name=name,
                name_trigrams=trigrams(name),
                status=status,
                model_kind=model.kind if model else None,
                model_sha256=model.sha256 if model else None,
                model_size=model.size if model else None,
                model_meta=model.meta if model else None,
            )
            await store.insert_images(conn, avatar.id, [r.image for r in refs])
            if blocking:
                await store.create_review_item(conn, "likeness_hold", avatar.id, {"conflicts": blocking})
            if review:
                await store.create_review_item(conn, "quarantined_match", avatar.id, {"matches": review})
            index = await append_leaf(
                conn,
                {
                    "kind": "avatar.registered",
                    "avatar_id": str(avatar.id),
                    "owner_operator_id": str(owner.id),
                    "name_sha256": _sha_hex(name),
                    "images": [r.image.sha256.hex() for r in refs],
                    "pdq": [r.image.pdq.hex() for r in refs],
                    "model_sha256": model.sha256.hex() if model else None,
                    "status": status,
                },
            )
            avatar = await store.set_log_index(conn, avatar.id, index)
            await fp_store.record_change(conn, avatar.id, "registered")
            await audit.record(
                conn,
                actor,
                "avatar.register",
                "avatar",
                avatar.id,
                details={
                    "status": status,
                    "images": len(refs),
                    "conflicts": len(blocking),
                    "log_index": index,
                },
            )
        await fps.catch_up(conn)
    return avatar, blocking


async def _owned_for_change(
    conn: asyncpg.Connection, actor: Principal, avatar_id: uuid.UUID
) -> tuple[store.Avatar, Operator]:
    """Lock the avatar for a change by its owner, who must be verified; revoked and suspended avatars are
    frozen. Raises ``NotFound``, ``Forbidden`` (``not_owner``, ``operator_unverified``), ``Conflict``
    (``avatar_frozen``)."""
    avatar = await store.get_avatar(conn, avatar_id, for_update=True)
    require_owner(actor, avatar)
    owner = await require_verified(conn, actor.operator_id)
    if avatar.status in ("suspended", "revoked"):
        raise errors.Conflict(
            f"the avatar is {avatar.status}: its owner cannot change it", code="avatar_frozen"
        )
    return avatar, owner


async def add_images(
    pool: asyncpg.Pool,
    fps: FingerprintService,
    actor: Principal,
    avatar_id: uuid.UUID,
    refs: list[Reference],
    now: datetime,
) -> store.Avatar:
    """Add reference images to an avatar, conflict-checked like a registration (a conflict is a 409;
    quarantined references open a review item). Raises ``Unprocessable`` ``too_many_images`` past
    ``max_reference_images``, ``Conflict`` ``image_exists``, and what ``register_avatar`` raises."""
    _check_new_images(refs)
    async with pool.acquire() as conn:
        async with conn.transaction():
            await fp_store.take_likeness_lock(conn)
            avatar, owner = await _owned_for_change(conn, actor, avatar_id)
            have = await store.count_live_images(conn, avatar_id)
            limit = fps.policy.max_reference_images
            if have + len(refs) > limit:
                raise errors.Unprocessable(
                    f"an avatar holds at most {limit} reference images: it has {have}, got {len(refs)} more",
                    code="too_many_images",
                    details={"have": have, "adding": len(refs), "limit": limit},
                )
            blocking, review = await _check_likeness(conn, fps, refs, owner.id, now)
            if blocking:
                raise errors.Conflict(
                    "the images resemble avatar(s) of another owner",
                    code="likeness_conflict",
                    details={"conflicts": blocking},
                )
            await store.insert_images(conn, avatar_id, [r.image for r in refs])
            if review:
                await store.create_review_item(conn, "quarantined_match", avatar_id, {"matches": review})
            added = [r.image.sha256.hex() for r in refs]
            index = await append_leaf(
                conn,
                {"kind": "avatar.images_changed", "avatar_id": str(avatar_id), "added": added, "removed": []},
            )
            await fp_store.record_change(conn, avatar_id, "images_added")
            await audit.record(
                conn,
                actor,
                "avatar.images.add",
                "avatar",
                avatar_id,
                details={"added": added, "log_index": index},
            )
        await fps.catch_up(conn)
    return avatar


async def remove_image(
    pool: asyncpg.Pool, fps: FingerprintService, actor: Principal, avatar_id: uuid.UUID, sha256: bytes
) -> None:
    """Remove a reference image (the avatar keeps at least one). Raises ``NotFound`` ``image_not_found``,
    ``Conflict`` ``last_image``, and the owner checks of ``add_images``."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            await fp_store.take_likeness_lock(conn)
            await _owned_for_change(conn, actor, avatar_id)
            await store.remove_image(conn, avatar_id, sha256)
            if await store.count_live_images(conn, avatar_id) == 0:
                # Without a reference image the avatar's likeness would silently lose all protection.
                raise errors.Conflict("an avatar keeps at least one reference image", code="last_image")
            index = await append_leaf(
                conn,
                {
                    "kind": "avatar.images_changed",
                    "avatar_id": str(avatar_id),
                    "added": [],
                    "removed": [sha256.hex()],
                },
            )
            await fp_store.record_change(conn, avatar_id, "image_removed")
            await audit.record(
                conn,
                actor,
                "avatar.images.remove",
                "avatar",
                avatar_id,
                details={"removed": sha256.hex(), "log_index": index},
            )
        await fps.catch_up(conn)


async def change_status(
    conn: asyncpg.Connection, actor: Principal, avatar_id: uuid.UUID, status: str, reason: str
) -> store.Avatar:
    """Set an avatar's status (staff), in the caller's transaction; the caller refreshes the index after
    commit. Revoked is final. Logs the leaf, closes the avatar's open ``likeness_hold`` items (approved when
    released to active, else rejected), and tells live servers (``NOTIFY live_control``).

    Raises ``NotFound``, ``Conflict`` (``avatar_revoked``, ``status_unchanged``), ``BadRequest``
    (``invalid_status``).
    """
    if status not in store.STATUSES:
        raise errors.BadRequest(f"unknown status {status!r}", code="invalid_status")
    await fp_store.take_likeness_lock(conn)
    avatar = await store.get_avatar(conn, avatar_id, for_update=True)
    if avatar.status == "revoked":
        raise errors.Conflict("a revoked avatar stays revoked", code="avatar_revoked")
    if avatar.status == status:
        raise errors.Conflict(f"the avatar is already {status}", code="status_unchanged")
    before = avatar.status
    avatar = await store.set_status(conn, avatar_id, status, reason)
    if status != "held_for_review":
        outcome = "approved" if status == "active" else "rejected"
        await store.resolve_reviews_of_avatar(conn, avatar_id, "likeness_hold", outcome, actor.key_id, reason)
    index = await append_leaf(
        conn,
        {
            "kind": "avatar.status_changed",
            "avatar_id": str(avatar_id),
            "status": status,
            "reason_sha256": _sha_hex(reason),
        },
    )
    await fp_store.record_change(conn, avatar_id, "status")
    payload = json.dumps({"kind": "avatar_status", "avatar_id": str(avatar_id), "status": status})
    await conn.execute("SELECT pg_notify($1, $2)", LIVE_CONTROL_CHANNEL, payload)
    await audit.record(
        conn,
        actor,
        "avatar.status",
        "avatar",
        avatar_id,
        reason=reason,
        details={"from": before, "to": status, "log_index": index},
    )
    return avatar


async def set_delegate(
    pool: asyncpg.Pool, actor: Principal, avatar_id: uuid.UUID, operator_id: uuid.UUID
) -> None:
    """Allow a verified operator to drive the avatar. Raises ``Unprocessable`` (``delegate_unverified``),
    ``BadRequest`` (``delegate_is_owner``), ``NotFound`` (``operator_not_found``) and the owner checks."""
    async with pool.acquire() as conn, conn.transaction():
        avatar, owner = await _owned_for_change(conn, actor, avatar_id)
        if operator_id == owner.id:
            raise errors.BadRequest("the owner drives the avatar already", code="delegate_is_owner")
        delegate = await operator_store.get_operator(conn, operator_id)
        if delegate.identity_status != "verified":
            raise errors.Unprocessable(
                f"delegate's identity is {delegate.identity_status}: only verified operators may drive "
                "an avatar",
                code="delegate_unverified",
            )
        if await store.add_delegate(conn, avatar.id, operator_id):
            await audit.record(
                conn,
                actor,
                "avatar.delegate.add",
                "avatar",
                avatar_id,
                details={"operator_id": str(operator_id)},
            )


async def unset_delegate(
    pool: asyncpg.Pool, actor: Principal, avatar_id: uuid.UUID, operator_id: uuid.UUID
) -> None:
    """Stop a delegate. Raises ``NotFound`` (``delegate_not_found``) and the owner checks (a frozen avatar's
    owner may still remove delegates)."""
    async with pool.acquire() as conn, conn.transaction():
        avatar = await store.get_avatar(conn, avatar_id, for_update=True)
        require_owner(actor, avatar)
        await store.remove_delegate(conn, avatar_id, operator_id)
        await audit.record(
            conn,
            actor,
            "avatar.delegate.remove",
            "avatar",
            avatar_id,
            details={"operator_id": str(operator_id)},
        )


async def request_transfer(
    pool: asyncpg.Pool, actor: Principal, avatar_id: uuid.UUID, to_operator_id: uuid.UUID
) -> store.Transfer:
    """The owner asks to move the avatar to another verified operator; staff approve it later.

    Raises ``BadRequest`` (``transfer_to_self``), ``Unprocessable`` (``transfer_target_unverified``),
    ``Conflict`` (``transfer_pending``) and the owner checks."""
    async with pool.acquire() as conn, conn.transaction():
        avatar, owner = await _owned_for_change(conn, actor, avatar_id)
        if to_operator_id == owner.id:
            raise errors.BadRequest("the avatar already belongs to that operator", code="transfer_to_self")
        target = await operator_store.get_operator(conn, to_operator_id)
        if target.identity_status != "verified":
            raise errors.Unprocessable(
                f"recipient's identity is {target.identity_status}: avatars move only to verified operators",
                code="transfer_target_unverified",
            )
        transfer = await store.create_transfer(conn, avatar.id, owner.id, to_operator_id)
        await audit.record(
            conn,
            actor,
            "avatar.transfer.request",
            "avatar",
            avatar_id,
            details={"transfer_id": str(transfer.id), "to_operator_id": str(to_operator_id)},
        )
    return transfer


async def approve_transfer(
    pool: asyncpg.Pool, fps: FingerprintService, actor: Principal, transfer_id: uuid.UUID, reason: str
) -> store.Transfer:
    """Staff approve a pending transfer: both operators must still be verified and the sender still the
    owner. Moves the avatar (its delegates are dropped), logs the leaf.

    Raises ``NotFound`` (``transfer_not_found``), ``Conflict`` (``transfer_not_pending``, ``transfer_stale``,
    ``avatar_revoked``), ``Unprocessable`` (``transfer_party_unverified``)."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            await fp_store.take_likeness_lock(conn)
            transfer = await store.get_transfer(conn, transfer_id, for_update=True)
            if transfer.status != "pending":
                raise errors.Conflict(
                    f"the transfer is already {transfer.status}", code="transfer_not_pending"
                )
            avatar = await store.get_avatar(conn, transfer.avatar_id, for_update=True)
            if avatar.owner_operator_id != transfer.from_operator_id:
                raise errors.Conflict("the avatar changed owner since the request", code="transfer_stale")
            if avatar.status == "revoked":
                raise errors.Conflict("a revoked avatar cannot be transferred", code="avatar_revoked")
            for who, op_id in (("sender", transfer.from_operator_id), ("recipient", transfer.to_operator_id)):
                op = await operator_store.get_operator(conn, op_id)
                if op.identity_status != "verified":
                    raise errors.Unprocessable(
                        f"the {who}'s identity is {op.identity_status}: both parties must be verified",
                        code="transfer_party_unverified",
                        details={"party": who},
                    )
            await store.set_owner(conn, avatar.id, transfer.to_operator_id)
            transfer = await store.decide_transfer(conn, transfer_id, "approved", actor.key_id, reason)
            index = await append_leaf(
                conn,
                {
                    "kind": "avatar.transferred",
                    "avatar_id": str(avatar.id),
                    "from_operator_id": str(transfer.from_operator_id),
                    "to_operator_id": str(transfer.to_operator_id),
                },
            )
            await fp_store.record_change(conn, avatar.id, "transferred")
            await audit.record(
                conn,
                actor,
                "avatar.transfer.approve",
                "avatar",
                avatar.id,
                reason=reason,
                details={"transfer_id": str(transfer_id), "log_index": index},
            )
        await fps.catch_up(conn)
    return transfer


async def reject_transfer(
    pool: asyncpg.Pool, actor: Principal, transfer_id: uuid.UUID, reason: str
) -> store.Transfer:
    """Staff turn a pending transfer down. Raises ``NotFound``, ``Conflict`` (``transfer_not_pending``)."""
    async with pool.acquire() as conn, conn.transaction():
        transfer = await store.get_transfer(conn, transfer_id, for_update=True)
        if transfer.status != "pending":
            raise errors.Conflict(f"the transfer is already {transfer.status}", code="transfer_not_pending")
        transfer = await store.decide_transfer(conn, transfer_id, "rejected", actor.key_id, reason)
        await audit.record(
            conn,
            actor,
            "avatar.transfer.reject",
            "avatar",
            transfer.avatar_id,
            reason=reason,
            details={"transfer_id": str(transfer_id)},
        )
    return transfer


async def resolve_review(
    pool: asyncpg.Pool,
    fps: FingerprintService,
    actor: Principal,
    item_id: uuid.UUID,
    decision: Literal["approve", "reject"],
    reason: str,
) -> store.ReviewItem:
    """Staff decide an open review item.

    ``likeness_hold``: approve releases the held avatar (active), reject revokes it. ``flood_quarantine``:
    approve lifts the reference image's quarantine (its flood counter restarts), reject keeps it. A
    ``quarantined_match`` item is only closed. Raises ``NotFound`` (``review_not_found``), ``Conflict``
    (``review_closed``) and what ``change_status`` raises.
    """
    async with pool.acquire() as conn:
        async with conn.transaction():
            await fp_store.take_likeness_lock(conn)
            item = await store.get_review_item(conn, item_id, for_update=True)
            if item.status != "open":
                raise errors.Conflict(f"the review item is already {item.status}", code="review_closed")
            if item.kind == "likeness_hold":
                avatar = await store.get_avatar(conn, item.avatar_id)
                if avatar.status == "held_for_review":
                    # change_status closes this item (and any other hold of the avatar) with the outcome.
                    await change_status(
                        conn, actor, item.avatar_id, "active" if decision == "approve" else "revoked", reason
                    )
            elif item.kind == "flood_quarantine" and decision == "approve" and item.image_id is not None:
                await fp_store.release_quarantine(conn, item.image_id)
                await fp_store.record_change(conn, item.avatar_id, "quarantine_released")
            item = await store.get_review_item(conn, item_id)
            if item.status == "open":
                item = await store.resolve_review_item(
                    conn, item_id, "approved" if decision == "approve" else "rejected", actor.key_id, reason
                )
            await audit.record(
                conn,
                actor,
                "review.resolve",
                "review_item",
                item_id,
                reason=reason,
                details={"kind": item.kind, "decision": decision, "avatar_id": str(item.avatar_id)},
            )
        await fps.catch_up(conn)
    return item


async def add_allow_entry(
    pool: asyncpg.Pool,
    fps: FingerprintService,
    actor: Principal,
    avatar_id: uuid.UUID,
    pdq: bytes,
    sha256: bytes | None,
    note: str,
) -> fp_store.AllowEntry:
    """The owner licenses a hash of their avatar (allow-list). Raises ``Conflict`` (``allowlist_duplicate``)
    and the owner checks."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            await fp_store.take_likeness_lock(conn)
            await _owned_for_change(conn, actor, avatar_id)
            entry = await fp_store.add_allow(conn, avatar_id, pdq, sha256, note)
            await fp_store.record_change(conn, avatar_id, "allowlist")
            await audit.record(
                conn,
                actor,
                "avatar.allowlist.add",
                "avatar",
                avatar_id,
                details={"entry_id": entry.id, "pdq": pdq.hex()},
            )
        await fps.catch_up(conn)
    return entry


async def remove_allow_entry(
    pool: asyncpg.Pool, fps: FingerprintService, actor: Principal, avatar_id: uuid.UUID, entry_id: int
) -> None:
    """The owner withdraws a licence. Raises ``NotFound`` (``allowlist_entry_not_found``) and the owner
    checks (a frozen avatar's owner may still withdraw)."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            await fp_store.take_likeness_lock(conn)
            avatar = await store.get_avatar(conn, avatar_id, for_update=True)
            require_owner(actor, avatar)
            await fp_store.delete_allow(conn, avatar_id, entry_id)
            await fp_store.record_change(conn, avatar_id, "allowlist")
            await audit.record(
                conn, actor, "avatar.allowlist.remove", "avatar", avatar_id, details={"entry_id": entry_id}
            )
        await fps.catch_up(conn)


async def set_match_disabled(
    pool: asyncpg.Pool,
    fps: FingerprintService,
    actor: Principal,
    avatar_id: uuid.UUID,
    until: datetime | None,
    reason: str,
) -> None:
    """Staff switch an avatar's matching off until ``until``, or back on (None). Raises ``NotFound``."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            await fp_store.take_likeness_lock(conn)
            await store.get_avatar(conn, avatar_id, for_update=True)
            await fp_store.set_match_disable(conn, avatar_id, until, reason if until else None)
            await fp_store.record_change(conn, avatar_id, "match_disable")
            await audit.record(
                conn,
                actor,
                "avatar.match.disable" if until else "avatar.match.enable",
                "avatar",
                avatar_id,
                reason=reason,
                details={"until": until.isoformat() if until else None},
            )
        await fps.catch_up(conn)
