"""Tests for registry/translog/note.py: C2SP signed notes, checked against Go sumdb/note's published vectors.

The keys, key ids and signed messages are those of golang.org/x/mod/sumdb/note's note_test.go and package
documentation. Ed25519 is deterministic, so a note signed here with Go's test key must match Go's bytes.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from registry.translog.note import (
    InvalidNoteSignature,
    MalformedNote,
    NoteKeyError,
    Signature,
    UnverifiedNote,
    Verifier,
    compute_key_id,
    generate_signer,
    open_note,
    parse_signer_key,
    parse_verifier_key,
    sign_note,
    signer_from_seed,
)

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_B64 = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
ENOCH_B64 = "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ="
PETER_SIG = f"— PeterNeumann {PETER_B64}\n"
ENOCH_SIG = f"— EnochRoot {ENOCH_B64}\n"
PETER = Signature("PeterNeumann", 0xC74F20A3, PETER_B64)
ENOCH = Signature("EnochRoot", 0xAF0CFE78, ENOCH_B64)

peter = parse_verifier_key(PETER_VKEY)
enoch = parse_verifier_key(ENOCH_VKEY)


def note(*signature_lines: str) -> bytes:
    return (TEXT + "\n" + "".join(signature_lines)).encode()


def tamper(sig_line: str) -> str:
    # Go's test: insert "ABCD" into the base64, which keeps it valid base64 but breaks the signature.
    return sig_line[:60] + "ABCD" + sig_line[60:]


class TestKeys:
    """Key ids and key strings (C2SP signed-note, Go's NewVerifier / NewSigner / GenerateKey)."""

    def test_go_verifier_key(self) -> None:
        assert peter.name == "PeterNeumann"
        assert peter.key_id == 0xC74F20A3
        assert peter.key_string == PETER_VKEY

    def test_key_id_is_the_spec_formula(self) -> None:
        # key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4]
        digest = hashlib.sha256(b"PeterNeumann\n\x01" + peter.public_key).digest()
        assert int.from_bytes(digest[:4], "big") == 0xC74F20A3
        assert compute_key_id("PeterNeumann", b"\x01" + peter.public_key) == 0xC74F20A3

    def test_go_signer_key(self) -> None:
        signer = parse_signer_key(PETER_SKEY)
        assert signer.key_id == 0xC74F20A3
        assert signer.key_string == PETER_SKEY
        assert signer.verifier == peter
        assert "seed" not in repr(signer)

    def test_generated_keys_round_trip(self) -> None:
        signer = generate_signer("example.com/log")
        assert parse_signer_key(signer.key_string) == signer
        assert parse_verifier_key(signer.verifier.key_string) == signer.verifier
        assert signer_from_seed("example.com/log", signer.seed).verifier == signer.verifier
        assert generate_signer("example.com/log").seed != signer.seed

    def test_every_substring_and_mutation_of_a_verifier_key_fails(self) -> None:
        # Go's TestNewVerifier: no proper substring and no single-byte change is a valid key.
        raw = PETER_VKEY.encode()
        for i in range(len(raw) + 1):
            for j in range(i + 1, len(raw) + 1):
                if (i, j) != (0, len(raw)):
                    with pytest.raises(NoteKeyError):
                        parse_verifier_key(raw[i:j].decode())
        for i in range(len(raw)):
            mutated = raw[:i] + bytes([raw[i] + 1]) + raw[i + 1 :]
            with pytest.raises(NoteKeyError):
                parse_verifier_key(mutated.decode())

    def test_every_substring_and_mutation_of_a_signer_key_fails(self) -> None:
        raw = PETER_SKEY.encode()
        for i in range(len(raw) + 1):
            for j in range(i + 1, len(raw) + 1):
                if (i, j) != (0, len(raw)):
                    with pytest.raises(NoteKeyError):
                        parse_signer_key(raw[i:j].decode())
        for i in range(len(raw)):
            mutated = raw[:i] + bytes([raw[i] + 1]) + raw[i + 1 :]
            with pytest.raises(NoteKeyError):
                parse_signer_key(mutated.decode())


class TestKeyRejections:
    """Each reason a key string is refused has its own message."""

    def test_wrong_length_key_with_adjusted_id(self) -> None:
        # Go's vector: a 40-byte key whose key id was recomputed to match.
        vkey = "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        with pytest.raises(
            NoteKeyError, match="Ed25519 key in verifier key has wrong length: expected 32 bytes, got 36"
        ):
            parse_verifier_key(vkey)

    def test_unknown_algorithm_with_adjusted_id(self) -> None:
        # Go's vector: algorithm byte 0x65 with a matching key id.
        vkey = "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        with pytest.raises(
            NoteKeyError, match=r"unknown signature algorithm in verifier key: expected 0x01 .*got 0x65"
        ):
            parse_verifier_key(vkey)

    def test_wrong_key_id(self) -> None:
        with pytest.raises(NoteKeyError, match="verifier key id mismatch: expected c74f20a3, got c74f20a4"):
            parse_verifier_key(PETER_VKEY.replace("c74f20a3", "c74f20a4"))

    def test_missing_parts(self) -> None:
        with pytest.raises(NoteKeyError, match="malformed verifier key: expected <name>"):
            parse_verifier_key("PeterNeumann+c74f20a3")

    @pytest.mark.parametrize("name", ["", "Peter Neumann", "Peter\u00a0Neumann", "Peter\x01"])
    def test_invalid_name(self, name: str) -> None:
        with pytest.raises(NoteKeyError, match="invalid key name in verifier key"):
            parse_verifier_key(PETER_VKEY.replace("PeterNeumann", name))

    @pytest.mark.parametrize("key_id", ["c74f20a", "c74f20a30", "c74f20ag", "+c74f20a"])
    def test_malformed_key_id(self, key_id: str) -> None:
        with pytest.raises(NoteKeyError, match="malformed key id in verifier key: expected 8 hex digits"):
            parse_verifier_key(f"PeterNeumann+{key_id}+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")

    @pytest.mark.parametrize("key", ["", "ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T", "ARpc2Qc!"])
    def test_key_not_base64(self, key: str) -> None:
        with pytest.raises(NoteKeyError, match="malformed key in verifier key: not valid base64"):
            parse_verifier_key(f"PeterNeumann+c74f20a3+{key}")

    def test_signer_key_without_prefix(self) -> None:
        with pytest.raises(NoteKeyError, match="malformed signer key: expected PRIVATE\\+KEY\\+"):
            parse_signer_key(PETER_SKEY.replace("PRIVATE+KEY+", "SECRET+KEY+"))

    def test_signer_key_id_mismatch(self) -> None:
        with pytest.raises(
            NoteKeyError, match="signer key id mismatch: expected c74f20a3, got c74f20a4"
        ) as info:
            parse_signer_key(PETER_SKEY.replace("c74f20a3", "c74f20a4"))
        # Key material never appears in the message.
        assert "AYEKFALV" not in str(info.value)

    def test_signer_key_is_not_a_verifier_key(self) -> None:
        # "PRIVATE" is a valid name, so the key id "KEY" is what gives it away.
        with pytest.raises(NoteKeyError, match="malformed key id in verifier key"):
            parse_verifier_key(PETER_SKEY)

    def test_direct_construction_checks(self) -> None:
        with pytest.raises(
            NoteKeyError, match="Ed25519 public key has wrong length: expected 32 bytes, got 31"
        ):
            Verifier("PeterNeumann", bytes(31))
        with pytest.raises(NoteKeyError, match="Ed25519 seed has wrong length: expected 32 bytes, got 33"):
            signer_from_seed("PeterNeumann", bytes(33))
        with pytest.raises(NoteKeyError, match="invalid key name 'a\\+b'"):
            signer_from_seed("a+b", bytes(32))


class TestSign:
    def test_byte_identical_to_go(self) -> None:
        assert sign_note(TEXT, parse_signer_key(PETER_SKEY)) == note(PETER_SIG)

    def test_several_signers_in_order(self) -> None:
        other = generate_signer("witness.example/w1")
        msg = sign_note(TEXT, parse_signer_key(PETER_SKEY), other)
        assert msg.startswith(note(PETER_SIG))
        opened = open_note(msg, [peter, other.verifier])
        assert [s.name for s in opened.signatures] == ["PeterNeumann", "witness.example/w1"]

    def test_text_must_end_with_newline(self) -> None:
        with pytest.raises(MalformedNote, match="text does not end with a newline"):
            sign_note("abc", parse_signer_key(PETER_SKEY))

    def test_text_must_not_contain_controls(self) -> None:
        with pytest.raises(MalformedNote, match="control character U\\+0009 at offset 3"):
            sign_note("abc\tdef\n", parse_signer_key(PETER_SKEY))

    def test_text_must_be_encodable(self) -> None:
        with pytest.raises(MalformedNote, match="text is not valid UTF-8"):
            sign_note("lone \udc80 surrogate\n", parse_signer_key(PETER_SKEY))


class TestOpen:
    """Go's TestOpen, plus one test per rejection reason."""

    def test_one_verified_one_unknown(self) -> None:
        opened = open_note(note(PETER_SIG, ENOCH_SIG), [peter])
        assert opened.text == TEXT
        assert opened.signatures == (PETER,)
        assert opened.unverified_signatures == (ENOCH,)

    def test_both_verified(self) -> None:
        opened = open_note(note(PETER_SIG, ENOCH_SIG), [peter, enoch])
        assert opened.signatures == (PETER, ENOCH)
        assert opened.unverified_signatures == ()

    def test_no_known_signer(self) -> None:
        with pytest.raises(UnverifiedNote, match="note has no verifiable signatures") as info:
            open_note(note(PETER_SIG, ENOCH_SIG), [])
        assert info.value.note.signatures == ()
        assert info.value.note.unverified_signatures == (PETER, ENOCH)
        assert info.value.code == "note_unverified"

    def test_same_name_other_key_id_is_just_unknown(self) -> None:
        # signed-note: unknown keys' signatures are ignored "even if they share a name or ID (but not both)".
        other_peter = generate_signer("PeterNeumann")
        msg = sign_note(TEXT, other_peter)
        with pytest.raises(UnverifiedNote):
            open_note(msg, [peter])
        opened = open_note(msg + PETER_SIG.encode(), [peter])
        assert opened.signatures == (PETER,)
        assert [s.name for s in opened.unverified_signatures] == ["PeterNeumann"]

    def test_duplicated_verifier_is_ambiguous(self) -> None:
        with pytest.raises(NoteKeyError, match="ambiguous key EnochRoot\\+af0cfe78"):
            open_note(note(ENOCH_SIG), [enoch, peter, enoch])

    def test_unused_duplicated_verifier_is_fine(self) -> None:
        assert open_note(note(PETER_SIG), [enoch, peter, enoch]).signatures == (PETER,)

    def test_duplicated_signatures_are_dropped(self) -> None:
        enoch_abcd = Signature("EnochRoot", 0xAF0CFE78, tamper(ENOCH_SIG)[len("— EnochRoot ") : -1])
        msg = note(PETER_SIG, PETER_SIG, ENOCH_SIG, ENOCH_SIG, tamper(ENOCH_SIG))
        opened = open_note(msg, [peter])
        assert opened.signatures == (PETER,)
        assert opened.unverified_signatures == (ENOCH, enoch_abcd)

    def test_invalid_signature_rejects_the_note(self) -> None:
        with pytest.raises(InvalidNoteSignature, match="invalid signature for key PeterNeumann\\+c74f20a3"):
            open_note(note(tamper(PETER_SIG)), [peter])

    def test_second_bad_signature_by_a_known_key_rejects_the_note(self) -> None:
        # Stricter than Go, which skips repeated signatures by one key unchecked; signed-note says a known
        # key's failing signature SHOULD reject the note.
        with pytest.raises(InvalidNoteSignature, match="invalid signature for key PeterNeumann"):
            open_note(note(PETER_SIG, tamper(PETER_SIG)), [peter])

    def test_signature_of_wrong_length_for_ed25519(self) -> None:
        raw = (0xC74F20A3).to_bytes(4, "big") + bytes(10)
        line = f"— PeterNeumann {base64.b64encode(raw).decode()}\n"
        with pytest.raises(InvalidNoteSignature, match="invalid signature for key PeterNeumann\\+c74f20a3"):
            open_note(note(line), [peter])

    def test_signature_over_other_text(self) -> None:
        msg = ("Some other text.\n\n" + PETER_SIG).encode()
        with pytest.raises(InvalidNoteSignature):
            open_note(msg, [peter])

    def test_sixteen_signatures_are_accepted(self) -> None:
        # signed-note: verifiers MUST accept at least 16 signatures.
        signers = [generate_signer(f"w{i}.example") for i in range(16)]
        msg = sign_note(TEXT, *signers)
        assert len(open_note(msg, [s.verifier for s in signers]).signatures) == 16

    def test_too_many_signatures(self) -> None:
        with pytest.raises(MalformedNote, match="too many signatures: limit 100, got 101"):
            open_note(note(*[PETER_SIG] * 101), [peter])
        with pytest.raises(MalformedNote, match="too many signatures: limit 2, got 3"):
            open_note(note(PETER_SIG, ENOCH_SIG, PETER_SIG), [peter], max_signatures=2)

    def test_too_large(self) -> None:
        msg = note(PETER_SIG)
        with pytest.raises(MalformedNote, match=f"note too large: limit 100 bytes, got {len(msg)}"):
            open_note(msg, [peter], max_size=100)

    def test_invalid_utf8(self) -> None:
        with pytest.raises(MalformedNote, match="malformed note: invalid UTF-8 at offset 0"):
            open_note(b"\xff" + note(PETER_SIG), [peter])

    def test_control_character(self) -> None:
        with pytest.raises(MalformedNote, match="malformed note: control character U\\+0001 at offset 0"):
            open_note(b"\x01" + note(PETER_SIG), [peter])

    def test_carriage_return_is_a_control_character(self) -> None:
        with pytest.raises(MalformedNote, match="control character U\\+000D"):
            open_note(note(PETER_SIG).replace(b"\n", b"\r\n", 1), [peter])

    def test_text_only(self) -> None:
        with pytest.raises(MalformedNote, match="no blank line before the signatures"):
            open_note(TEXT.encode(), [peter])

    def test_blank_line_without_signatures(self) -> None:
        with pytest.raises(MalformedNote, match="no signature lines after the blank line"):
            open_note((TEXT + "\n").encode(), [peter])

    def test_last_signature_line_unterminated(self) -> None:
        with pytest.raises(MalformedNote, match="last signature line does not end with a newline"):
            open_note(note(PETER_SIG[:-1]), [peter])

    def test_line_without_em_dash(self) -> None:
        with pytest.raises(
            MalformedNote, match="signature line 2 does not start with an em dash and a space"
        ):
            open_note(note(PETER_SIG, "Unexpected line.\n"), [peter])

    def test_invalid_key_name(self) -> None:
        with pytest.raises(MalformedNote, match="invalid key name in signature line 1"):
            open_note(note(f"— Peter+Neumann {PETER_B64}\n"), [peter])

    def test_bad_base64(self) -> None:
        # Go's vector: "— Bad Name <sig>" splits at the first space, leaving "Name <sig>" as the base64.
        with pytest.raises(MalformedNote, match="signature line 1 is not valid base64"):
            open_note(note(f"— Bad Name {PETER_B64}\n"), [peter])

    def test_empty_signature(self) -> None:
        with pytest.raises(MalformedNote, match="signature line 1 is not valid base64"):
            open_note(note("— PeterNeumann \n"), [peter])

    def test_signature_shorter_than_key_id_and_one_byte(self) -> None:
        with pytest.raises(MalformedNote, match="signature line 1 is too short: 4 bytes"):
            open_note(note("— PeterNeumann x08gow==\n"), [peter])

    def test_text_may_contain_blank_lines(self) -> None:
        text = "first\n\nthird\n"
        signer = generate_signer("blank.example")
        assert open_note(sign_note(text, signer), [signer.verifier]).text == text

    def test_errors_are_client_errors(self) -> None:
        with pytest.raises(MalformedNote) as info:
            open_note(b"", [peter])
        assert info.value.code == "note_malformed"
