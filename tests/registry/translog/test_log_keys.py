"""The log's signing key file: created once (0600, never overwritten), parsed strictly, and required outside
development mode; and the leaf encoding the log signs over."""

from __future__ import annotations

import json
import stat
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import rfc8785

from registry.config import Settings
from registry.localsecrets import LocalSecrets
from registry.services import Services
from registry.translog.keys import (
    LogKeyError,
    create_key_file,
    ensure_key_file,
    load_log_keys,
    parse_key_file,
)
from registry.translog.leaves import check_leaf, decode_leaf, encode_leaf, format_time
from registry.translog.note import generate_signer

ORIGIN = "keys.test/log"
SECRETS = LocalSecrets(pii_keys={"k": b"k" * 32}, pii_current_kid="k", blind_index_key=b"b" * 32)


def test_a_created_key_file_is_private_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "log-signing.key"
    signer = create_key_file(path, ORIGIN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keys = load_log_keys(path, ORIGIN)
    assert keys.verifier == signer.verifier and keys.cosigners == ()
    assert keys.key_id == f"{signer.key_id:08x}" and keys.origin == ORIGIN


def test_ensure_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "log-signing.key"
    assert ensure_key_file(path, ORIGIN) is True
    before = path.read_text()
    assert ensure_key_file(path, ORIGIN) is False
    assert path.read_text() == before
    with pytest.raises(FileExistsError):
        create_key_file(path, ORIGIN)


def test_rotation_file_lists_the_current_key_first() -> None:
    new, old = generate_signer(ORIGIN), generate_signer(ORIGIN)
    keys = parse_key_file(f"# rotated\n{new.key_string}\n\n{old.key_string}\n", ORIGIN)
    assert keys.signer.key_id == new.key_id
    assert [s.key_id for s in keys.all_signers] == [new.key_id, old.key_id]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no signer key"),
        ("# only a comment\n", "holds no signer key"),
        ("PRIVATE+KEY+garbage", "line 1: malformed signer key"),
        (generate_signer("other/log").key_string, "key name does not match the log origin"),
    ],
)
def test_bad_key_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(LogKeyError, match=message):
        parse_key_file(text, ORIGIN)


def test_a_key_listed_twice_is_refused() -> None:
    signer = generate_signer(ORIGIN)
    with pytest.raises(LogKeyError, match=r"line 2: key [0-9a-f]{8} is listed twice"):
        parse_key_file(f"{signer.key_string}\n{signer.key_string}\n", ORIGIN)


def test_messages_never_include_key_material() -> None:
    signer = generate_signer("other/log")
    with pytest.raises(LogKeyError) as info:
        parse_key_file(signer.key_string, ORIGIN)
    assert signer.key_string.rsplit("+", 1)[1] not in str(info.value)


def test_production_requires_the_key_file(tmp_path: Path) -> None:
    settings = Settings(DATA_DIR=tmp_path, dev_mode=False)
    with pytest.raises(LogKeyError, match="does not exist: create it with `avatar-registry log keygen`"):
        Services.build(settings, SECRETS, {})
    create_key_file(settings.log_signing_key_path(), settings.log_origin)
    assert Services.build(settings, SECRETS, {}).log_keys is not None


def test_development_creates_the_key_file_and_a_configured_path_wins(tmp_path: Path) -> None:
    configured = tmp_path / "elsewhere.key"
    settings = Settings(DATA_DIR=tmp_path / "data", dev_mode=True, log_signing_key_file=configured)
    services = Services.build(settings, SECRETS, {})
    assert configured.exists() and not (tmp_path / "data" / "log-signing.key").exists()
    assert services.log_keys is not None and services.log_keys.origin == "localhost/avatar-registry"


def test_leaf_bytes_are_rfc_8785_with_version_and_time() -> None:
    at = datetime(2025, 1, 31, 20, 0, 0, 250_999, tzinfo=timezone(timedelta(hours=8)))
    avatar = uuid.uuid4()
    data = encode_leaf(
        check_leaf({"kind": "avatar.status_changed", "avatar_id": avatar, "status": "active"}), at
    )
    obj = decode_leaf(data)
    assert obj == {
        "kind": "avatar.status_changed",
        "avatar_id": str(avatar),
        "status": "active",
        "v": 1,
        "at": "2025-01-31T12:00:00.250Z",
    }
    assert data == rfc8785.dumps(obj) and list(json.loads(data)) == sorted(obj)


def test_times_are_fixed_width_utc() -> None:
    assert format_time(datetime(2025, 3, 1, tzinfo=UTC)) == "2025-03-01T00:00:00.000Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_time(datetime(2025, 3, 1))


def test_the_subject_is_the_avatar_else_the_operator() -> None:
    avatar, operator = uuid.uuid4(), uuid.uuid4()
    assert (
        check_leaf({"kind": "a.b", "avatar_id": str(avatar), "operator_id": str(operator)}).subject == avatar
    )
    assert check_leaf({"kind": "a.b", "operator_id": str(operator)}).subject == operator
    assert check_leaf({"kind": "a.b", "avatar_id": "not-a-uuid"}).subject is None
