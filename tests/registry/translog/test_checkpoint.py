"""Tests for registry/translog/checkpoint.py: C2SP tlog-checkpoint text, signed and opened as notes.

Vectors: the example body of the C2SP tlog-checkpoint text and Go tlog's FormatTree golden value (a tree of
123456789012 records whose root is the record hash of "hello world").
"""

from __future__ import annotations

import base64

import pytest

from registry.translog.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    CheckpointError,
    format_checkpoint,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from registry.translog.merkle import leaf_hash
from registry.translog.note import InvalidNoteSignature, UnverifiedNote, generate_signer, sign_note

C2SP_TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
GO_TREE_TEXT = "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n"
ROOT = base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")


class TestFormatAndParse:
    def test_c2sp_example(self) -> None:
        checkpoint = parse_checkpoint(C2SP_TEXT)
        assert checkpoint == Checkpoint("example.com/behind-the-sofa", 20852163, ROOT)
        assert format_checkpoint(checkpoint) == C2SP_TEXT

    def test_go_tree_golden(self) -> None:
        # Origins are opaque: "clients MUST NOT assume that the origin is following this format".
        checkpoint = parse_checkpoint(GO_TREE_TEXT)
        assert checkpoint.origin == "go.sum database tree"
        assert checkpoint.size == 123456789012
        assert checkpoint.root_hash == leaf_hash(b"hello world")
        assert format_checkpoint(checkpoint) == GO_TREE_TEXT

    def test_extension_lines_round_trip(self) -> None:
        text = C2SP_TEXT + "— not a signature, just an extension\nx\n"
        checkpoint = parse_checkpoint(text)
        assert checkpoint.extensions == ("— not a signature, just an extension", "x")
        assert format_checkpoint(checkpoint) == text

    def test_empty_tree(self) -> None:
        checkpoint = parse_checkpoint("log.example\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n")
        assert checkpoint.size == 0

    def test_largest_size(self) -> None:
        text = f"log.example\n{MAX_TREE_SIZE}\n{base64.b64encode(ROOT).decode()}\n"
        assert parse_checkpoint(text).size == MAX_TREE_SIZE


class TestParseRejections:
    """Each way a checkpoint body is refused has its own message."""

    def test_no_final_newline(self) -> None:
        with pytest.raises(CheckpointError, match="text does not end with a newline"):
            parse_checkpoint(C2SP_TEXT[:-1])

    def test_too_few_lines(self) -> None:
        with pytest.raises(CheckpointError, match="expected at least 3 lines, got 2"):
            parse_checkpoint("example.com/log\n5\n")

    def test_empty_origin(self) -> None:
        with pytest.raises(CheckpointError, match="malformed checkpoint: empty origin"):
            parse_checkpoint("\n" + C2SP_TEXT.split("\n", 1)[1])

    def test_control_character_in_origin(self) -> None:
        with pytest.raises(CheckpointError, match="control character U\\+0009 in origin"):
            parse_checkpoint("a\tb" + C2SP_TEXT[C2SP_TEXT.index("\n") :])

    @pytest.mark.parametrize("size", ["020852163", "+20852163", "-1", "0x10", " 5", "5 ", "", "٣", "1_000"])
    def test_size_not_canonical_decimal(self, size: str) -> None:
        with pytest.raises(CheckpointError, match="is not a canonical decimal"):
            parse_checkpoint(C2SP_TEXT.replace("20852163", size))

    def test_size_beyond_int64(self) -> None:
        with pytest.raises(
            CheckpointError, match=f"tree size out of range: limit {MAX_TREE_SIZE}, got {2**63}"
        ):
            parse_checkpoint(C2SP_TEXT.replace("20852163", str(2**63)))

    def test_size_with_too_many_digits(self) -> None:
        with pytest.raises(CheckpointError, match="is not a canonical decimal"):
            parse_checkpoint(C2SP_TEXT.replace("20852163", "1" * 20))

    @pytest.mark.parametrize("root", ["CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I", "CsUY!pGG", "Cs UY"])
    def test_root_not_base64(self, root: str) -> None:
        text = C2SP_TEXT.replace("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=", root)
        with pytest.raises(CheckpointError, match="root hash is not valid base64"):
            parse_checkpoint(text)

    def test_root_wrong_length(self) -> None:
        text = C2SP_TEXT.replace("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=", "CsUYapGGPo4dkMgI")
        with pytest.raises(CheckpointError, match="root hash has wrong length: expected 32 bytes, got 12"):
            parse_checkpoint(text)

    def test_root_non_canonical_base64(self) -> None:
        # The last base64 digit of 32 bytes carries 2 unused bits; "J" differs from "I" only there.
        text = C2SP_TEXT.replace("jxq2I=", "jxq2J=")
        assert base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=") == ROOT
        with pytest.raises(CheckpointError, match="root hash is not canonical base64"):
            parse_checkpoint(text)

    def test_empty_extension_line(self) -> None:
        with pytest.raises(CheckpointError, match="empty extension line 1"):
            parse_checkpoint(C2SP_TEXT + "ext\n\n")

    def test_errors_are_client_errors(self) -> None:
        with pytest.raises(CheckpointError) as info:
            parse_checkpoint("")
        assert info.value.code == "checkpoint_invalid"


class TestConstruction:
    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            (("", 1, ROOT, ()), "empty origin"),
            (("a\nb", 1, ROOT, ()), "control character U\\+000A in origin"),
            (("log", -1, ROOT, ()), "tree size out of range"),
            (("log", 2**63, ROOT, ()), "tree size out of range"),
            (("log", 1, ROOT[:31], ()), "root hash has wrong length: expected 32 bytes, got 31"),
            (("log", 1, ROOT, ("",)), "empty extension line 0"),
            (("log", 1, ROOT, ("a\nb",)), "control character U\\+000A in extension line 0"),
        ],
    )
    def test_invalid_fields(self, fields: tuple, message: str) -> None:
        with pytest.raises(CheckpointError, match=message):
            Checkpoint(*fields)


class TestSignedCheckpoints:
    def test_sign_and_open(self) -> None:
        signer = generate_signer("registry.example/log")
        checkpoint = Checkpoint("registry.example/log", 42, ROOT)
        msg = sign_checkpoint(checkpoint, signer)
        assert msg.startswith(
            format_checkpoint(checkpoint).encode() + b"\n\xe2\x80\x94 registry.example/log "
        )
        assert open_checkpoint(msg, signer.verifier) == checkpoint

    def test_witness_cosignatures_are_ignored(self) -> None:
        log, witness = generate_signer("registry.example/log"), generate_signer("witness.example")
        checkpoint = Checkpoint("registry.example/log", 7, ROOT)
        msg = sign_note(format_checkpoint(checkpoint), log, witness)
        assert open_checkpoint(msg, log.verifier) == checkpoint

    def test_signer_must_be_the_origin(self) -> None:
        signer = generate_signer("someone.else")
        with pytest.raises(CheckpointError, match="signer name does not match the checkpoint origin"):
            sign_checkpoint(Checkpoint("registry.example/log", 1, ROOT), signer)

    def test_other_key_is_rejected(self) -> None:
        signer, impostor = generate_signer("registry.example/log"), generate_signer("registry.example/log")
        msg = sign_checkpoint(Checkpoint("registry.example/log", 1, ROOT), impostor)
        with pytest.raises(UnverifiedNote):
            open_checkpoint(msg, signer.verifier)

    def test_altered_size_is_rejected(self) -> None:
        signer = generate_signer("registry.example/log")
        msg = sign_checkpoint(Checkpoint("registry.example/log", 1, ROOT), signer)
        with pytest.raises(InvalidNoteSignature):
            open_checkpoint(msg.replace(b"\n1\n", b"\n2\n", 1), signer.verifier)

    def test_origin_must_match_the_key(self) -> None:
        signer = generate_signer("registry.example/log")
        msg = sign_note(format_checkpoint(Checkpoint("other.example/log", 1, ROOT)), signer)
        with pytest.raises(CheckpointError, match="checkpoint origin does not match the log key"):
            open_checkpoint(msg, signer.verifier)

    def test_signed_body_must_parse(self) -> None:
        signer = generate_signer("registry.example/log")
        msg = sign_note("registry.example/log\n01\n" + base64.b64encode(ROOT).decode() + "\n", signer)
        with pytest.raises(CheckpointError, match="tree size '01' is not a canonical decimal"):
            open_checkpoint(msg, signer.verifier)
