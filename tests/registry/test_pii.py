"""Tests for registry/pii.py: blob format, contexts, key rotation, ID normalisation, blind index."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from registry.errors import RegistryError
from registry.pii import (
    KEY_BYTES,
    PiiCipher,
    blind_index,
    field_context,
    generate_key,
    normalise_id_number,
)

# Obviously fake key material.
KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
INDEX_KEY = b"\x42" * 32
CONTEXT = field_context("op-0001", "legal_name")


def cipher(**keys: bytes) -> PiiCipher:
    return PiiCipher(keys or {"k1": KEY_A}, next(iter(keys)) if keys else "k1")


def code_of(info: pytest.ExceptionInfo[RegistryError]) -> str:
    return info.value.code


class TestRoundTrip:
    def test_decrypts_what_it_encrypted(self) -> None:
        pii = cipher()
        assert (
            pii.decrypt(pii.encrypt("Zhang San 张三", context=CONTEXT), context=CONTEXT) == "Zhang San 张三"
        )

    def test_empty_plaintext(self) -> None:
        pii = cipher()
        assert pii.decrypt(pii.encrypt("", context=CONTEXT), context=CONTEXT) == ""

    def test_blob_layout(self) -> None:
        blob = cipher(**{"key-2025": KEY_A}).encrypt("abc", context=CONTEXT)
        assert blob[0] == len("key-2025")
        assert blob[1:9] == b"key-2025"
        # 1 + kid + 12-byte nonce + 3 bytes of ciphertext + 16-byte tag
        assert len(blob) == 1 + 8 + 12 + 3 + 16
        assert b"abc" not in blob

    def test_fresh_nonce_each_time(self) -> None:
        pii = cipher()
        first, second = (pii.encrypt("same", context=CONTEXT) for _ in range(2))
        assert first != second
        assert pii.decrypt(first, context=CONTEXT) == pii.decrypt(second, context=CONTEXT) == "same"

    def test_reads_a_blob_built_by_hand(self) -> None:
        # The documented format, built directly with AES-GCM: associated data = kid_len ‖ kid ‖ context.
        nonce = b"\x07" * 12
        header = bytes([2]) + b"k1"
        blob = header + nonce + AESGCM(KEY_A).encrypt(nonce, b"hand made", header + CONTEXT)
        assert cipher().decrypt(blob, context=CONTEXT) == "hand made"


class TestContext:
    def test_wrong_context_fails(self) -> None:
        pii = cipher()
        blob = pii.encrypt("secret", context=field_context("op-0001", "legal_name"))
        with pytest.raises(RegistryError) as info:
            pii.decrypt(blob, context=field_context("op-0002", "legal_name"))
        assert code_of(info) == "pii_decrypt_failed"
        assert "secret" not in info.value.message

    def test_other_field_fails(self) -> None:
        pii = cipher()
        blob = pii.encrypt("secret", context=field_context("op-0001", "legal_name"))
        with pytest.raises(RegistryError, match="failed authentication"):
            pii.decrypt(blob, context=field_context("op-0001", "id_number"))

    def test_context_parts_cannot_be_shifted(self) -> None:
        assert field_context("ab", "c") != field_context("a", "bc")

    @pytest.mark.parametrize(("operator_id", "field"), [("", "x"), ("op", ""), ("op\x00", "x")])
    def test_context_parts_are_checked(self, operator_id: str, field: str) -> None:
        with pytest.raises(ValueError, match="non-empty"):
            field_context(operator_id, field)


class TestTampering:
    def test_flipped_ciphertext_bit(self) -> None:
        pii = cipher()
        blob = bytearray(pii.encrypt("secret", context=CONTEXT))
        blob[-1] ^= 1
        with pytest.raises(RegistryError) as info:
            pii.decrypt(bytes(blob), context=CONTEXT)
        assert code_of(info) == "pii_decrypt_failed"

    def test_relabelled_key_id(self) -> None:
        # A blob written under k1 but relabelled k2 must not decrypt, even though k2 is a configured key.
        pii = PiiCipher({"k1": KEY_A, "k2": KEY_B}, "k1")
        blob = pii.encrypt("secret", context=CONTEXT)
        relabelled = blob[:1] + b"k2" + blob[3:]
        with pytest.raises(RegistryError) as info:
            pii.decrypt(relabelled, context=CONTEXT)
        assert code_of(info) == "pii_decrypt_failed"

    @pytest.mark.parametrize(
        "blob", [b"", b"\x00" + b"\x00" * 40, b"\x02k1" + b"\x00" * 27, b"\x02\xff\xfe" + b"\x00" * 28]
    )
    def test_malformed_blobs(self, blob: bytes) -> None:
        with pytest.raises(RegistryError) as info:
            cipher().decrypt(blob, context=CONTEXT)
        assert code_of(info) == "pii_malformed"


class TestRotation:
    def test_old_blobs_decrypt_after_rotation(self) -> None:
        old = PiiCipher({"k1": KEY_A}, "k1")
        old_blob = old.encrypt("before rotation", context=CONTEXT)
        rotated = PiiCipher({"k1": KEY_A, "k2": KEY_B}, "k2")
        new_blob = rotated.encrypt("after rotation", context=CONTEXT)
        assert PiiCipher.key_id_of(old_blob) == "k1"
        assert PiiCipher.key_id_of(new_blob) == "k2"
        assert rotated.decrypt(old_blob, context=CONTEXT) == "before rotation"
        assert rotated.decrypt(new_blob, context=CONTEXT) == "after rotation"

    def test_retired_key_is_unknown(self) -> None:
        old_blob = PiiCipher({"k1": KEY_A}, "k1").encrypt("x", context=CONTEXT)
        retired = PiiCipher({"k2": KEY_B}, "k2")
        with pytest.raises(RegistryError, match="unknown key id 'k1'") as info:
            retired.decrypt(old_blob, context=CONTEXT)
        assert code_of(info) == "pii_unknown_key"

    def test_same_kid_with_another_key_fails(self) -> None:
        blob = PiiCipher({"k1": KEY_A}, "k1").encrypt("x", context=CONTEXT)
        with pytest.raises(RegistryError) as info:
            PiiCipher({"k1": KEY_B}, "k1").decrypt(blob, context=CONTEXT)
        assert code_of(info) == "pii_decrypt_failed"


class TestConfiguration:
    @pytest.mark.parametrize(
        ("keys", "current", "fragment"),
        [
            ({}, "k1", "at least one"),
            ({"k1": b"short"}, "k1", "must be 32 bytes"),
            ({"k1": KEY_A}, "k2", "not among the configured keys"),
            ({"": KEY_A}, "", "printable ASCII"),
            ({"k 1": KEY_A}, "k 1", "printable ASCII"),
            ({"x" * 256: KEY_A}, "x" * 256, "printable ASCII"),
        ],
    )
    def test_invalid_key_rings(self, keys: dict[str, bytes], current: str, fragment: str) -> None:
        with pytest.raises(ValueError, match=fragment):
            PiiCipher(keys, current)

    def test_longest_kid(self) -> None:
        kid = "k" * 255
        pii = PiiCipher({kid: KEY_A}, kid)
        assert pii.decrypt(pii.encrypt("x", context=CONTEXT), context=CONTEXT) == "x"

    def test_generate_key(self) -> None:
        first, second = generate_key(), generate_key()
        assert len(first) == len(second) == KEY_BYTES
        assert first != second


class TestNormalise:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("11010519491231002x", "11010519491231002X"),
            ("110105 19491231 002X", "11010519491231002X"),
            ("110105-19491231-002x", "11010519491231002X"),
            (
                "１１０１０５１９４９１２３１００２ｘ",
                "11010519491231002X",
            ),  # full-width, as typed with a CJK IME
            ("  ab‐12 34\t", "AB1234"),  # U+2010 hyphen and a tab
            ("850101/1234", "8501011234"),
            ("123.456.789-09", "12345678909"),
        ],
    )
    def test_spellings_of_one_number(self, raw: str, expected: str) -> None:
        assert normalise_id_number(raw) == expected

    @pytest.mark.parametrize("raw", ["", " - ", "12#45", "Ω12345", "1" * 65])
    def test_refuses_what_is_not_an_id_number(self, raw: str) -> None:
        with pytest.raises(ValueError, match="1-64 ASCII letters and digits") as info:
            normalise_id_number(raw)
        assert raw.strip() == "" or raw not in str(info.value)


class TestBlindIndex:
    def test_is_hmac_sha256_of_the_normalised_number(self) -> None:
        expected = hmac.new(INDEX_KEY, b"11010519491231002X", hashlib.sha256).digest()
        assert blind_index("110105-19491231-002x", INDEX_KEY) == expected
        assert len(expected) == 32

    def test_same_person_same_index(self) -> None:
        assert blind_index("11010519491231002x", INDEX_KEY) == blind_index("110105 19491231 002X", INDEX_KEY)

    def test_different_numbers_differ(self) -> None:
        assert blind_index("11010519491231002X", INDEX_KEY) != blind_index("11010519491231003X", INDEX_KEY)

    def test_depends_on_the_key(self) -> None:
        assert blind_index("A1234567", INDEX_KEY) != blind_index("A1234567", b"\x43" * 32)

    def test_refuses_a_short_key(self) -> None:
        with pytest.raises(ValueError, match="at least 32 bytes"):
            blind_index("A1234567", b"\x42" * 31)
