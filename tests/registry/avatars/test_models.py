"""Tests for registry/avatars/models.py: VRM (GLB) and Live2D zip model uploads."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import random
import struct
import zipfile
from typing import Any

import pytest
from pygltflib import (  # type: ignore[import-untyped]  # pygltflib ships no type information
    GLTF2,
    Asset,
    Buffer,
    BufferView,
    Image,
    Node,
    Scene,
    Texture,
)

from registry.avatars import models
from registry.avatars.models import MAX_MODEL_BYTES, ModelInfo, parse_model
from registry.errors import PayloadTooLarge, RegistryError, Unprocessable, UnsupportedMediaType

VRM0_EXTENSION: dict[str, Any] = {
    "exporterVersion": "UniVRM-0.99.0",
    "specVersion": "0.0",
    "meta": {
        "title": "Aiko",
        "version": "2.1",
        "author": "Ren Tanaka",
        "contactInformation": "",
        "reference": "",
        "texture": 0,
        "allowedUserName": "ExplicitlyLicensedPerson",
        "violentUssageName": "Disallow",
        "sexualUssageName": "Disallow",
        "commercialUssageName": "Allow",
        "otherPermissionUrl": "",
        "licenseName": "CC_BY_NC",
        "otherLicenseUrl": "",
    },
    "humanoid": {"humanBones": [{"bone": "hips", "node": 0}]},
}

VRM1_EXTENSION: dict[str, Any] = {
    "specVersion": "1.0",
    "meta": {
        "name": "Aiko",
        "version": "3.0",
        "authors": ["Ren Tanaka", "Studio K"],
        "licenseUrl": "https://vrm.dev/licenses/1.0/",
        "thumbnailImage": 0,
        "avatarPermission": "onlyAuthor",
        "commercialUsage": "corporation",
        "allowExcessivelyViolentUsage": False,
        "creditNotation": "required",
        "modification": "prohibited",
        "otherLicenseUrl": "https://example.test/terms",
    },
    "humanoid": {"humanBones": {"hips": {"node": 0}}},
}


def vrm_glb(extensions: dict[str, Any]) -> bytes:
    """A minimal GLB built with pygltflib: one node, one embedded PNG image and texture, the extension."""
    blob = b"\x89PNG\r\n\x1a\n" + bytes(24)  # the image bytes only need to exist for the buffer view
    gltf = GLTF2(
        asset=Asset(version="2.0", generator="tests"),
        scene=0,
        scenes=[Scene(nodes=[0])],
        nodes=[Node(name="hips")],
        buffers=[Buffer(byteLength=len(blob))],
        bufferViews=[BufferView(buffer=0, byteOffset=0, byteLength=len(blob))],
        images=[Image(bufferView=0, mimeType="image/png")],
        textures=[Texture(source=0)],
        extensionsUsed=sorted(extensions),
        extensions=copy.deepcopy(extensions),
    )
    gltf.set_binary_blob(blob)
    return b"".join(gltf.save_to_bytes())


def raw_glb(document: Any, binary: bytes | None = None, *, version: int = 2) -> bytes:
    """A GLB assembled by hand (glTF 2.0 §4.4), for containers pygltflib would not write."""
    text = document if isinstance(document, bytes) else json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text
    if binary is not None:
        body += struct.pack("<II", len(binary), 0x004E4942) + binary
    return struct.pack("<4sII", b"glTF", version, 12 + len(body)) + body


def model_error(data: bytes, filename: str | None = None, **kwargs: Any) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        parse_model("model", data, filename, **kwargs)
    return info.value


def invalid_reason(data: bytes, kind: str) -> str:
    exc = model_error(data)
    assert type(exc) is Unprocessable
    assert exc.code == "model_invalid"
    assert exc.details["part"] == "model"
    assert exc.details["kind"] == kind
    assert "'model'" in exc.message
    return str(exc.details["reason"])


# --- VRM ---------------------------------------------------------------------------------------------


def test_vrm0_meta_is_normalised() -> None:
    data = vrm_glb({"VRM": VRM0_EXTENSION})
    info = parse_model("model", data, "aiko.vrm")
    assert info == ModelInfo(
        kind="vrm",
        sha256=hashlib.sha256(data).digest(),
        size=len(data),
        meta={
            "spec": "vrm0",
            "spec_version": "0.0",
            "title": "Aiko",
            "authors": ["Ren Tanaka"],
            "version": "2.1",
            "allowed_users": "only_separately_licensed",
            "commercial_use": "personal_profit",
            "license": "CC_BY_NC",
            "other_license_url": None,
        },
    )
    json.dumps(info.meta)  # stored as jsonb: must serialise as is


def test_vrm1_meta_is_normalised() -> None:
    data = vrm_glb({"VRMC_vrm": VRM1_EXTENSION})
    info = parse_model("model", data)
    assert info.kind == "vrm"
    assert info.size == len(data)
    assert info.meta == {
        "spec": "vrm1",
        "spec_version": "1.0",
        "title": "Aiko",
        "authors": ["Ren Tanaka", "Studio K"],
        "version": "3.0",
        "allowed_users": "only_author",
        "commercial_use": "corporation",
        "license": "https://vrm.dev/licenses/1.0/",
        "other_license_url": "https://example.test/terms",
    }


def test_vrm1_is_preferred_when_both_extensions_exist() -> None:
    info = parse_model("model", vrm_glb({"VRM": VRM0_EXTENSION, "VRMC_vrm": VRM1_EXTENSION}))
    assert info.meta["spec"] == "vrm1"


def test_vrm0_disallow_maps_to_personal_non_profit_and_blanks_to_none() -> None:
    extension = copy.deepcopy(VRM0_EXTENSION)
    extension["meta"].update(commercialUssageName="Disallow", allowedUserName="", author="", texture=-1)
    del extension["specVersion"]
    meta = parse_model("model", vrm_glb({"VRM": extension})).meta
    assert meta["commercial_use"] == "personal_non_profit"
    assert meta["allowed_users"] is None
    assert meta["authors"] == []
    assert meta["spec_version"] == "0.0"


@pytest.mark.parametrize("spelling", ["OnlyAuthor", "Only Author", "onlyauthor", "ONLY_AUTHOR"])
def test_vrm0_enum_spellings_from_different_exporters_are_accepted(spelling: str) -> None:
    extension = copy.deepcopy(VRM0_EXTENSION)
    extension["meta"]["allowedUserName"] = spelling
    assert parse_model("model", vrm_glb({"VRM": extension})).meta["allowed_users"] == "only_author"


@pytest.mark.parametrize(
    ("extension_name", "change"),
    [
        ("VRM", {"allowedUserName": "Friends"}),
        ("VRM", {"licenseName": "GPL"}),
        ("VRM", {"title": 42}),
        ("VRM", {"title": "x" * 1025}),
        ("VRM", {"texture": 7}),
        ("VRMC_vrm", {"commercialUsage": "free"}),
        ("VRMC_vrm", {"authors": []}),
        ("VRMC_vrm", {"authors": ["ok", 3]}),
        ("VRMC_vrm", {"authors": ["  "]}),
        ("VRMC_vrm", {"name": None}),
        ("VRMC_vrm", {"licenseUrl": None}),
        ("VRMC_vrm", {"thumbnailImage": 3}),
        ("VRMC_vrm", {"thumbnailImage": True}),
    ],
)
def test_malformed_vrm_meta_is_invalid(extension_name: str, change: dict[str, Any]) -> None:
    extension = copy.deepcopy(VRM0_EXTENSION if extension_name == "VRM" else VRM1_EXTENSION)
    for key, value in change.items():
        if value is None:
            del extension["meta"][key]
        else:
            extension["meta"][key] = value
    assert invalid_reason(vrm_glb({extension_name: extension}), "vrm") == "vrm_meta"


@pytest.mark.parametrize("spec_version", ["0.0", None, 1])
def test_vrm1_needs_a_1x_spec_version(spec_version: Any) -> None:
    extension = copy.deepcopy(VRM1_EXTENSION)
    extension["specVersion"] = spec_version
    assert invalid_reason(vrm_glb({"VRMC_vrm": extension}), "vrm") == "vrm_meta"


@pytest.mark.parametrize("extension", [{"VRM": "meta"}, {"VRM": {"humanoid": {}}}, {"VRMC_vrm": []}])
def test_vrm_extension_without_meta_object_is_invalid(extension: dict[str, Any]) -> None:
    assert invalid_reason(vrm_glb(extension), "vrm") == "vrm_meta"


def test_glb_without_vrm_extension_is_invalid() -> None:
    data = vrm_glb({"KHR_materials_unlit": {}})
    assert invalid_reason(data, "vrm") == "not_vrm"


GOOD_DOCUMENT = {"asset": {"version": "2.0"}, "extensions": {"VRM": {"meta": {"title": "t"}}}}
EIGHT_BYTES = {**GOOD_DOCUMENT, "buffers": [{"byteLength": 8}]}


def test_hand_built_glb_is_accepted() -> None:
    # The baseline for the container cases below: the same builder with nothing wrong.
    assert parse_model("model", raw_glb(GOOD_DOCUMENT)).meta["title"] == "t"
    padded = raw_glb(json.dumps(GOOD_DOCUMENT).encode() + b"\x00" * 3)
    assert parse_model("model", padded).meta["title"] == "t"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"glTF\x02\x00\x00\x00", "glb_header"),
        (raw_glb(GOOD_DOCUMENT, version=1), "glb_version"),
        (raw_glb(GOOD_DOCUMENT)[:-4], "glb_length"),
        (raw_glb(GOOD_DOCUMENT) + b"\x00" * 4, "glb_length"),
        (raw_glb(GOOD_DOCUMENT, b"\x00" * 8)[:-4], "glb_length"),
        (raw_glb(b"[]"), "gltf_json"),
        (raw_glb(b"{not json"), "gltf_json"),
        (raw_glb(b'{"asset": {"version": "2.0"}, "x": NaN}'), "gltf_json"),
        (raw_glb(b'{"asset": {"version": "2.0"}, "title": "\xff\xfe"}'), "gltf_json"),
        (raw_glb(b"[" * 100_000 + b"]" * 100_000), "gltf_json"),
        (raw_glb({"extensions": GOOD_DOCUMENT["extensions"]}), "gltf_asset"),
        (raw_glb({**GOOD_DOCUMENT, "asset": {"version": "1.0"}}), "gltf_asset"),
        (raw_glb({**GOOD_DOCUMENT, "buffers": "x"}), "gltf_structure"),
        (raw_glb({**GOOD_DOCUMENT, "buffers": [{"byteLength": "x"}]}), "gltf_structure"),
        (raw_glb({**GOOD_DOCUMENT, "buffers": [{"byteLength": 16}]}, b"\x00" * 8), "gltf_structure"),
        (raw_glb({**GOOD_DOCUMENT, "buffers": [{"byteLength": 4}]}), "gltf_structure"),
        (raw_glb({**GOOD_DOCUMENT, "images": [{"uri": "x"}] * 513}), "gltf_structure"),
        (
            raw_glb(
                {
                    **GOOD_DOCUMENT,
                    "buffers": [{"byteLength": 8}],
                    "bufferViews": [{"buffer": 0, "byteLength": 9}],
                },
                b"\x00" * 8,
            ),
            "gltf_structure",
        ),
        (
            raw_glb(
                {
                    **GOOD_DOCUMENT,
                    "buffers": [{"byteLength": 8}],
                    "bufferViews": [{"buffer": 1, "byteLength": 4}],
                },
                b"\x00" * 8,
            ),
            "gltf_structure",
        ),
        (raw_glb({**GOOD_DOCUMENT, "images": [{"bufferView": 0}]}), "gltf_structure"),
        (
            raw_glb({**GOOD_DOCUMENT, "buffers": [{"uri": "https://evil.test/x.bin", "byteLength": 4}]}),
            "gltf_external_uri",
        ),
        (raw_glb({**GOOD_DOCUMENT, "images": [{"uri": "../../etc/passwd"}]}), "gltf_external_uri"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_corrupt_glb_is_invalid(data: bytes, reason: str) -> None:
    assert invalid_reason(data, "vrm") == reason


def test_glb_chunks_out_of_order_or_overflowing_are_invalid() -> None:
    text = json.dumps(GOOD_DOCUMENT).encode() + b"  "
    json_chunk = struct.pack("<II", len(text), 0x4E4F534A) + text
    bin_chunk = struct.pack("<II", 4, 0x004E4942) + b"\x00" * 4

    def container(body: bytes) -> bytes:
        return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body

    assert invalid_reason(container(bin_chunk + json_chunk), "vrm") == "glb_chunk"
    assert invalid_reason(container(json_chunk + json_chunk), "vrm") == "glb_chunk"
    assert invalid_reason(container(json_chunk + bin_chunk + bin_chunk), "vrm") == "glb_chunk"
    overflowing = struct.pack("<II", len(text) + 100, 0x4E4F534A) + text
    assert invalid_reason(container(overflowing), "vrm") == "glb_chunk"
    assert invalid_reason(container(json_chunk + b"\x01\x00"), "vrm") == "glb_chunk"
    # A chunk of an unknown type after BIN is ignored, as glTF 2.0 §4.4.3.1 requires.
    extra = struct.pack("<II", 4, 0x12345678) + b"abcd"
    assert parse_model("model", container(json_chunk + bin_chunk + extra)).kind == "vrm"


def test_oversized_gltf_json_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "MAX_GLTF_JSON_BYTES", 64)
    assert invalid_reason(raw_glb({**GOOD_DOCUMENT, "pad": "x" * 100}), "vrm") == "glb_json_too_large"


def test_many_buffer_views_stay_cheap() -> None:
    # Thousands of buffer views are normal in a VRM; they are checked without pygltflib's slow decoding.
    document = {
        **GOOD_DOCUMENT,
        "buffers": [{"byteLength": 64}],
        "bufferViews": [{"buffer": 0, "byteOffset": i % 60, "byteLength": 4} for i in range(20_000)],
    }
    assert parse_model("model", raw_glb(document, b"\x00" * 64)).meta["title"] == "t"


# --- size and type -----------------------------------------------------------------------------------


def test_too_large_model_is_refused() -> None:
    exc = model_error(b"glTF" + bytes(MAX_MODEL_BYTES), "big.vrm")
    assert type(exc) is PayloadTooLarge
    assert exc.code == "model_too_large"
    assert exc.details == {
        "part": "model",
        "filename": "big.vrm",
        "size": MAX_MODEL_BYTES + 4,
        "limit": MAX_MODEL_BYTES,
    }


def test_limit_can_be_lowered_per_call() -> None:
    data = vrm_glb({"VRM": VRM0_EXTENSION})
    assert type(model_error(data, max_bytes=len(data) - 1)) is PayloadTooLarge
    assert parse_model("model", data, max_bytes=len(data)).kind == "vrm"


@pytest.mark.parametrize(
    "data",
    [b"", b"hello", b"\x89PNG\r\n\x1a\n" + bytes(16), b"\x1f\x8b\x08\x00", b'{"asset": {"version": "2.0"}}'],
)
def test_neither_glb_nor_zip_is_unsupported(data: bytes) -> None:
    exc = model_error(data, "avatar.vrm")
    assert type(exc) is UnsupportedMediaType
    assert exc.code == "model_unsupported"
    assert exc.details == {"part": "model", "filename": "avatar.vrm"}
    assert "avatar.vrm" in exc.message


def test_kind_comes_from_content_not_filename() -> None:
    assert parse_model("model", live2d_zip(), "looks_like.vrm").kind == "live2d"
    assert parse_model("model", vrm_glb({"VRM": VRM0_EXTENSION}), "looks_like.zip").kind == "vrm"


# --- Live2D ------------------------------------------------------------------------------------------

MOC3 = b"MOC3" + bytes([5]) + bytes(123)  # magic, format version 5 (Cubism 5.0), rest of the header

MODEL3: dict[str, Any] = {
    "Version": 3,
    "FileReferences": {
        "Moc": "hiyori.moc3",
        "Textures": ["hiyori.2048/texture_00.png", "hiyori.2048/texture_01.png"],
        "Physics": "hiyori.physics3.json",
        "Pose": "hiyori.pose3.json",
        "DisplayInfo": "hiyori.cdi3.json",
        "Expressions": [{"Name": "smile", "File": "expressions/smile.exp3.json"}],
        "Motions": {
            "Idle": [{"File": "motions/idle_01.motion3.json", "Sound": "sounds/hello.wav"}],
            "TapBody": [{"File": "motions/tap.motion3.json"}],
        },
    },
    "Groups": [{"Target": "Parameter", "Name": "EyeBlink", "Ids": ["ParamEyeLOpen"]}],
}


def live2d_files(model3: Any = MODEL3) -> dict[str, bytes]:
    body = model3 if isinstance(model3, bytes) else json.dumps(model3).encode()
    return {
        "hiyori/hiyori.model3.json": body,
        "hiyori/hiyori.moc3": MOC3,
        "hiyori/hiyori.2048/texture_00.png": b"\x89PNG\r\n\x1a\n" + bytes(64),
        "hiyori/hiyori.2048/texture_01.png": b"\x89PNG\r\n\x1a\n" + bytes(64),
        "hiyori/hiyori.physics3.json": b'{"Version": 3}',
        "hiyori/hiyori.pose3.json": b'{"Type": "Live2D Pose"}',
        "hiyori/hiyori.cdi3.json": b'{"Version": 3}',
        "hiyori/expressions/smile.exp3.json": b'{"Type": "Live2D Expression"}',
        "hiyori/motions/idle_01.motion3.json": b'{"Version": 3, "Curves": []}',
        "hiyori/motions/tap.motion3.json": b'{"Version": 3, "Curves": []}',
        "hiyori/sounds/hello.wav": b"RIFF\x24\x00\x00\x00WAVE",
    }


def live2d_zip(
    files: dict[str, bytes] | None = None, *, method: int = zipfile.ZIP_DEFLATED, dirs: bool = True
) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as archive:
        if dirs:
            archive.writestr("hiyori/", b"")
        for name, body in (live2d_files() if files is None else files).items():
            archive.writestr(name, body)
    return out.getvalue()


def zip_with(entries: list[tuple[zipfile.ZipInfo, bytes]], base: dict[str, bytes] | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, body in (live2d_files() if base is None else base).items():
            archive.writestr(name, body)
        for info, body in entries:
            archive.writestr(info, body)
    return out.getvalue()


def test_live2d_zip_is_listed_and_resolved() -> None:
    data = live2d_zip()
    info = parse_model("model", data, "hiyori.zip")
    assert info.kind == "live2d"
    assert info.sha256 == hashlib.sha256(data).digest()
    assert info.size == len(data)
    assert info.meta == {
        "model3_json": ["hiyori/hiyori.model3.json"],
        "moc3": ["hiyori/hiyori.moc3"],
        "models": [
            {
                "model3_json": "hiyori/hiyori.model3.json",
                "version": 3,
                "moc": "hiyori/hiyori.moc3",
                "moc_version": 5,
                "textures": ["hiyori/hiyori.2048/texture_00.png", "hiyori/hiyori.2048/texture_01.png"],
                "physics": "hiyori/hiyori.physics3.json",
                "pose": "hiyori/hiyori.pose3.json",
                "display_info": "hiyori/hiyori.cdi3.json",
                "user_data": None,
                "expressions": ["hiyori/expressions/smile.exp3.json"],
                "motions": {
                    "Idle": ["hiyori/motions/idle_01.motion3.json"],
                    "TapBody": ["hiyori/motions/tap.motion3.json"],
                },
                "sounds": ["hiyori/sounds/hello.wav"],
            }
        ],
        "entries": len(live2d_files()) + 1,
        "uncompressed_size": sum(len(b) for b in live2d_files().values()),
    }
    json.dumps(info.meta)


def test_stored_zip_and_utf8_bom_and_macos_junk_are_fine() -> None:
    files = live2d_files(b"\xef\xbb\xbf" + json.dumps(MODEL3).encode())
    files["__MACOSX/hiyori/._hiyori.model3.json"] = b"\x00\x05\x16\x07 AppleDouble"
    files["hiyori/._hiyori.moc3"] = b"\x00\x05\x16\x07"
    meta = parse_model("model", live2d_zip(files, method=zipfile.ZIP_STORED, dirs=False)).meta
    assert meta["model3_json"] == ["hiyori/hiyori.model3.json"]
    assert meta["moc3"] == ["hiyori/hiyori.moc3"]


def test_two_models_in_one_zip_are_both_listed() -> None:
    files = live2d_files()
    second = {"Version": 3, "FileReferences": {"Moc": "../hiyori/hiyori.moc3", "Textures": []}}
    files["other/other.model3.json"] = json.dumps(second).encode()
    meta = parse_model("model", live2d_zip(files)).meta
    assert meta["model3_json"] == ["hiyori/hiyori.model3.json", "other/other.model3.json"]
    assert [m["moc"] for m in meta["models"]] == ["hiyori/hiyori.moc3", "hiyori/hiyori.moc3"]


def without(name: str) -> dict[str, bytes]:
    files = live2d_files()
    del files[name]
    return files


def with_references(**changes: Any) -> dict[str, bytes]:
    model3 = copy.deepcopy(MODEL3)
    for key, value in changes.items():
        if value is None:
            del model3["FileReferences"][key]
        else:
            model3["FileReferences"][key] = value
    return live2d_files(model3)


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        (without("hiyori/hiyori.model3.json"), "live2d_no_model3"),
        ({"readme.txt": b"hi"}, "live2d_no_model3"),
        ({"a.model3.json": json.dumps(MODEL3).encode()}, "live2d_no_moc3"),
        (without("hiyori/hiyori.2048/texture_01.png"), "live2d_missing_reference"),
        (without("hiyori/sounds/hello.wav"), "live2d_missing_reference"),
        (without("hiyori/expressions/smile.exp3.json"), "live2d_missing_reference"),
        (with_references(Physics="missing.physics3.json"), "live2d_missing_reference"),
        (with_references(Moc="../../../etc/passwd"), "zip_path"),
        (with_references(Textures=["../../outside.png"]), "zip_path"),
        (with_references(Moc=None), "live2d_model3"),
        (with_references(Moc="hiyori.physics3.json"), "live2d_model3"),
        (with_references(Moc="C:\\models\\hiyori.moc3"), "live2d_model3"),
        (with_references(Moc="/abs/hiyori.moc3"), "live2d_model3"),
        (with_references(Textures="hiyori.2048/texture_00.png"), "live2d_model3"),
        (with_references(Textures=[3]), "live2d_model3"),
        (with_references(Motions=[]), "live2d_model3"),
        (with_references(Motions={"Idle": [{"Sound": "sounds/hello.wav"}]}), "live2d_model3"),
        (with_references(Expressions=["smile"]), "live2d_model3"),
        (live2d_files(b"{not json"), "live2d_model3"),
        (live2d_files(b"\xff\xfe{}"), "live2d_model3"),
        (live2d_files({"Version": 3}), "live2d_model3"),
        (live2d_files({"Version": "3", "FileReferences": {}}), "live2d_model3"),
        (live2d_files([1, 2]), "live2d_model3"),
        ({**live2d_files(), "hiyori/hiyori.moc3": b"NOT A MOC" + bytes(100)}, "live2d_moc3"),
        ({**live2d_files(), "hiyori/hiyori.moc3": b"MOC3\x05"}, "live2d_moc3"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_malformed_live2d_model_is_invalid(files: dict[str, bytes], reason: str) -> None:
    assert invalid_reason(live2d_zip(files), "live2d") == reason


def test_too_many_model3_files_are_invalid() -> None:
    files = live2d_files()
    for i in range(models.MAX_LIVE2D_MODELS):
        files[f"copies/c{i}.model3.json"] = json.dumps(
            {"Version": 3, "FileReferences": {"Moc": "../hiyori/hiyori.moc3"}}
        ).encode()
    assert invalid_reason(live2d_zip(files), "live2d") == "live2d_too_many_models"


def test_oversized_model3_json_is_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "MAX_MODEL3_JSON_BYTES", 100)
    assert invalid_reason(live2d_zip(), "live2d") == "live2d_model3"


# --- zip safety --------------------------------------------------------------------------------------


def named(name: str, *, attr: int = 0, method: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = attr
    info.compress_type = method
    return info


@pytest.mark.parametrize(
    "name",
    [
        "../evil.txt",
        "hiyori/../../evil.txt",
        "/etc/cron.d/evil",
        "C:/Windows/evil.dll",
        "c:evil.dll",
        "hiyori\\..\\evil.txt",
        "hiyori//double.txt",
        "hiyori/./dot.txt",
        "bell\x07.txt",
        "x" * 600,
    ],
)
def test_dangerous_entry_names_are_refused(name: str) -> None:
    data = zip_with([(named(name), b"payload")])
    assert invalid_reason(data, "live2d") == "zip_path"


def test_symlink_entry_is_refused() -> None:
    data = zip_with([(named("hiyori/link.png", attr=0o120777 << 16), b"/etc/passwd")])
    assert invalid_reason(data, "live2d") == "zip_path"


def test_names_differing_only_by_case_are_duplicates() -> None:
    data = zip_with([(named("HIYORI/HIYORI.MOC3"), MOC3)])
    assert invalid_reason(data, "live2d") == "zip_duplicate_name"


def set_flag_bits(data: bytes, name: str, flags: int) -> bytes:
    """Set general-purpose flag bits of one entry in its local header and central directory record."""
    out = bytearray(data)
    encoded = name.encode()
    for signature, name_at, flags_at in ((b"PK\x03\x04", 30, 6), (b"PK\x01\x02", 46, 8)):
        start = out.index(signature)
        while out[start + name_at : start + name_at + len(encoded)] != encoded:
            start = out.index(signature, start + 1)
        (value,) = struct.unpack_from("<H", out, start + flags_at)
        struct.pack_into("<H", out, start + flags_at, value | flags)
    return bytes(out)


def test_encrypted_entry_is_refused() -> None:
    # zipfile cannot write encrypted entries, so the flag is set in the bytes afterwards.
    data = set_flag_bits(zip_with([(named("hiyori/secret.bin"), b"\x00" * 12)]), "hiyori/secret.bin", 0x1)
    assert invalid_reason(data, "live2d") == "zip_encrypted"


def test_unusual_compression_is_refused() -> None:
    data = zip_with([(named("hiyori/notes.txt", method=zipfile.ZIP_BZIP2), b"notes " * 100)])
    assert invalid_reason(data, "live2d") == "zip_compression"


def test_zip_bomb_entry_is_refused_by_ratio() -> None:
    # 20 MB of zeros deflates to ~20 KB: about 1000:1.
    data = zip_with([(named("hiyori/bomb.bin"), bytes(20 * 1024 * 1024))])
    assert len(data) < 100_000
    assert invalid_reason(data, "live2d") == "zip_ratio"


def test_small_highly_compressible_entries_are_fine() -> None:
    # Under the grace size the ratio does not matter (a padded JSON file can exceed 100:1).
    data = zip_with([(named("hiyori/padding.json"), b" " * 500_000)])
    assert parse_model("model", data).kind == "live2d"


def test_declared_total_over_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "MAX_ZIP_UNCOMPRESSED", 1000)
    files = live2d_files()
    files["hiyori/big.bin"] = bytes(range(256)) * 4
    assert invalid_reason(live2d_zip(files), "live2d") == "zip_too_large"


def test_too_many_entries_are_refused_before_parsing() -> None:
    files = live2d_files()
    for i in range(models.MAX_ZIP_ENTRIES):
        files[f"hiyori/motions/m{i}.motion3.json"] = b"{}"
    assert invalid_reason(live2d_zip(files), "live2d") == "zip_too_many_entries"


def test_oversized_central_directory_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "MAX_ZIP_CENTRAL_DIRECTORY", 200)
    assert invalid_reason(live2d_zip(), "live2d") == "zip_too_many_entries"


def test_zip64_is_refused() -> None:
    data = live2d_zip()
    end = data.rindex(b"PK\x05\x06")
    forged = data[:end] + b"PK\x06\x07" + bytes(16) + data[end:]
    assert invalid_reason(forged, "live2d") == "zip64"


def test_damaged_entry_fails_its_crc() -> None:
    files = live2d_files()
    marker = b"UNIQUE-TEXTURE-BYTES" * 4
    files["hiyori/hiyori.2048/texture_00.png"] = marker
    data = bytearray(live2d_zip(files, method=zipfile.ZIP_STORED))
    at = data.index(marker)
    data[at] ^= 0xFF
    assert invalid_reason(bytes(data), "live2d") == "zip_corrupt"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"PK\x03\x04" + bytes(40), "zip_corrupt"),
        (live2d_zip()[:-30], "zip_corrupt"),
        (live2d_zip()[: len(live2d_zip()) // 2], "zip_corrupt"),
        (b"PK\x05\x06" + bytes(18), "live2d_no_model3"),
    ],
    ids=["no-end-record", "cut-end-record", "half", "empty-zip"],
)
def test_truncated_or_empty_zip_is_invalid(data: bytes, reason: str) -> None:
    assert invalid_reason(data, "live2d") == reason


def test_central_directory_pointing_past_the_data_is_corrupt() -> None:
    data = bytearray(live2d_zip())
    end = data.rindex(b"PK\x05\x06")
    struct.pack_into("<L", data, end + 16, len(data) + 1000)  # central directory offset
    assert invalid_reason(bytes(data), "live2d") == "zip_corrupt"


@pytest.mark.parametrize("kind", ["vrm0", "vrm1", "live2d"])
def test_mutated_models_never_escape_as_other_exceptions(kind: str) -> None:
    """Random truncations, bit flips and splices: always a ModelInfo or one of our 4xx errors."""
    rng = random.Random(f"mutate-{kind}")
    if kind == "live2d":
        original = live2d_zip(method=zipfile.ZIP_DEFLATED)
    else:
        original = vrm_glb({"VRM": VRM0_EXTENSION} if kind == "vrm0" else {"VRMC_vrm": VRM1_EXTENSION})
    outcomes: set[str] = set()
    for _ in range(200):
        data = bytearray(original)
        action = rng.choice(("truncate", "flip", "splice"))
        if action == "truncate":
            data = data[: rng.randrange(len(data))]
        elif action == "flip":
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        else:
            at = rng.randrange(len(data))
            data[at:at] = rng.randbytes(rng.randint(1, 16))
        try:
            info = parse_model("model", bytes(data))
        except (Unprocessable, UnsupportedMediaType) as exc:
            assert exc.details["part"] == "model"
            outcomes.add(str(exc.details.get("reason", exc.code)))
        else:
            assert info.kind == ("live2d" if kind == "live2d" else "vrm")
            json.dumps(info.meta)
            outcomes.add("ok")
    assert len(outcomes - {"ok"}) >= 3  # the damage was real and caught by several distinct checks
