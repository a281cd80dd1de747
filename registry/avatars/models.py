"""Parsing of the optional avatar model upload: VRM (glTF binary) or a Live2D Cubism zip.

:func:`parse_model` decides the kind from the content (the filename is only echoed in errors: names are
untrusted), checks the file and returns its digest, size and a small JSON-ready ``meta`` dict.

VRM (``kind="vrm"``): the GLB container is checked against glTF 2.0 §4.4 (header, length, JSON chunk
first, optional BIN chunk second), the JSON document is read with ``pygltflib``, buffers and buffer views
must stay inside the file (external URIs are refused: a model must be self-contained, and we never fetch
what an upload points at), and the VRM extension must be present. ``meta`` normalises VRM 0.x
(``extensions.VRM.meta``) and VRM 1.0 (``extensions.VRMC_vrm.meta``, preferred when both exist) to::

    {
      "spec": "vrm0" | "vrm1",
      "spec_version": str,              # VRM.specVersion (default "0.0") or VRMC_vrm.specVersion ("1.x")
      "title": str | None,              # 0.x title, 1.0 name (required)
      "authors": [str, ...],            # 0.x author as a one-item list, 1.0 authors (required, non-empty)
      "version": str | None,            # the model's own version string
      "allowed_users": "only_author" | "only_separately_licensed" | "everyone" | None,
                                        # 0.x allowedUserName, 1.0 avatarPermission
      "commercial_use": "personal_non_profit" | "personal_profit" | "corporation" | None,
                                        # 0.x commercialUssageName Disallow/Allow map to personal_non_profit/
                                        # personal_profit (as UniVRM migrates them); 1.0 commercialUsage
      "license": str | None,            # 0.x licenseName ("CC_BY", "Redistribution_Prohibited", ...);
                                        # 1.0 licenseUrl (required)
      "other_license_url": str | None,  # otherLicenseUrl in both
    }

Enumerated values are matched ignoring case, spaces and underscores (exporters differ); an unknown value,
a wrong type or an over-long string is a malformed model. ``None`` means the file does not say.

Live2D (``kind="live2d"``): a zip holding at least one ``.model3.json`` and one ``.moc3``. Zip bombs are
refused before anything is inflated (entry count and central directory size read from the end record,
declared total size, per-entry compression ratio; ZIP64 is refused) and every entry is then read once so
CRCs and sizes are checked. Names that could escape a folder (``..``, absolute, drive letters, backslashes,
control characters), duplicate names (ignoring case), symlinks, encryption and compression other than
stored/deflate are refused. Each ``.model3.json``'s ``FileReferences`` must name files inside the zip, and
its ``Moc`` must start with the ``MOC3`` magic. ``meta``::

    {
      "model3_json": [path, ...], "moc3": [path, ...],   # every such entry (macOS "__MACOSX/" skipped)
      "models": [{"model3_json", "version", "moc", "moc_version", "textures", "physics", "pose",
                  "display_info", "user_data", "expressions", "motions": {group: [path]}, "sounds"}],
      "entries": int, "uncompressed_size": int,
    }

Paths in ``models`` are resolved to archive paths.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
import struct
import unicodedata
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeGuard

from pygltflib import GLTF2  # type: ignore[import-untyped]  # pygltflib ships no type information

from registry.errors import PayloadTooLarge, Unprocessable, UnsupportedMediaType

__all__ = [
    "MAX_MODEL_BYTES",
    "ModelInfo",
    "ModelKind",
    "parse_model",
]

ModelKind = Literal["vrm", "live2d"]

# The limit for the model part.
MAX_MODEL_BYTES: Final = 50 * 1024 * 1024
# A VRM's glTF JSON is typically well under 1 MB; the cap bounds the JSON parse.
MAX_GLTF_JSON_BYTES: Final = 8 * 1024 * 1024
# Bound on each array handed to pygltflib (buffers, images, textures); a VRM has a few dozen textures.
MAX_GLTF_ITEMS: Final = 512
# Meta strings are shown in the console and stored; no legitimate title or URL is longer.
MAX_META_STRING: Final = 1024
MAX_META_AUTHORS: Final = 64
# Zip-bomb bounds. A Cubism export has tens to a few hundred files (textures, motions, expressions).
MAX_ZIP_ENTRIES: Final = 1000
# Bounds what zipfile parses before we can count entries (each record is >= 46 bytes).
MAX_ZIP_CENTRAL_DIRECTORY: Final = 1024 * 1024
MAX_ZIP_UNCOMPRESSED: Final = 256 * 1024 * 1024
# Deflate tops out near 1032:1; real textures (PNG) barely compress and JSON stays well under 100:1.
MAX_ZIP_RATIO: Final = 100
# Entries this small cannot hurt whatever their ratio (a padded JSON file can exceed 100:1).
ZIP_RATIO_GRACE: Final = 1024 * 1024
MAX_ZIP_NAME_CHARS: Final = 512
MAX_MODEL3_JSON_BYTES: Final = 1024 * 1024
MAX_LIVE2D_MODELS: Final = 16

# glTF 2.0 §4.4 (GLB): 12-byte header, then chunks of (length, type, data).
_GLB_MAGIC: Final = b"glTF"
# The glTF members read through pygltflib (see _to_gltf).
_GLTF_MEMBERS: Final = (
    "asset",
    "buffers",
    "images",
    "textures",
    "extensions",
    "extensionsUsed",
    "extensionsRequired",
)
_GLB_HEADER: Final = struct.Struct("<4sII")
_GLB_CHUNK: Final = struct.Struct("<II")
_CHUNK_JSON: Final = 0x4E4F534A  # "JSON"
_CHUNK_BIN: Final = 0x004E4942  # "BIN\0"

# APPNOTE.TXT 4.3.16 end of central directory record and 4.3.15 ZIP64 locator.
_EOCD: Final = struct.Struct("<4s4H2LH")
_EOCD_SIGNATURE: Final = b"PK\x05\x06"
_ZIP64_LOCATOR_SIGNATURE: Final = b"PK\x06\x07"
_ZIP64_LOCATOR_SIZE: Final = 20
_MAX_ZIP_COMMENT: Final = 0xFFFF
_ZIP_ENCRYPTED_FLAG: Final = 0x1
_UNIX_SYMLINK: Final = 0o120000
_MOC3_MAGIC: Final = b"MOC3"
_MOC3_HEADER_BYTES: Final = 64

# What zipfile raises on a damaged archive (compression other than stored/deflate is refused first).
_ZIP_ERRORS: Final = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    UnicodeDecodeError,
    EOFError,
    OSError,
    ValueError,
    struct.error,
    zlib.error,
)


def _enum_key(raw: str) -> str:
    """How enumerated meta values are compared: exporters differ in case, spaces and underscores."""
    return re.sub(r"[\s_]", "", raw).lower()


_VRM0_ALLOWED_USERS: Final = {
    "onlyauthor": "only_author",
    "explicitlylicensedperson": "only_separately_licensed",
    "everyone": "everyone",
}
_VRM1_ALLOWED_USERS: Final = {
    "onlyauthor": "only_author",
    "onlyseparatelylicensedperson": "only_separately_licensed",
    "everyone": "everyone",
}
_VRM0_COMMERCIAL: Final = {"disallow": "personal_non_profit", "allow": "personal_profit"}
_VRM1_COMMERCIAL: Final = {
    "personalnonprofit": "personal_non_profit",
    "personalprofit": "personal_profit",
    "corporation": "corporation",
}
_VRM0_LICENSES: Final = {
    _enum_key(name): name
    for name in (
        "Redistribution_Prohibited",
        "CC0",
        "CC_BY",
        "CC_BY_NC",
        "CC_BY_SA",
        "CC_BY_NC_SA",
        "CC_BY_ND",
        "CC_BY_NC_ND",
        "Other",
    )
}


@dataclass(frozen=True)
class ModelInfo:
    """A checked model upload; ``meta`` has the shape described in the module docstring."""

    kind: ModelKind
    sha256: bytes  # digest of the uploaded bytes, 32 bytes
    size: int
    meta: dict[str, Any]


class _Invalid(Exception):
    """A malformed model; ``reason`` becomes ``details["reason"]`` of the ``model_invalid`` error."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def parse_model(
    part: str, data: bytes, filename: str | None = None, *, max_bytes: int = MAX_MODEL_BYTES
) -> ModelInfo:
    """Check an uploaded avatar model and return its kind, digest, size and normalised meta.

    The kind comes from the content: a GLB header (``glTF``) is a VRM, a zip header is a Live2D model.

    Args:
        part: the multipart part name, used in error messages and as ``details["part"]``.
        data: the uploaded bytes.
        filename: the part's filename, if any; only echoed in errors.
        max_bytes: largest accepted upload.

    Raises:
        PayloadTooLarge: ``model_too_large``, more than ``max_bytes``.
        UnsupportedMediaType: ``model_unsupported``, neither a GLB nor a zip.
        Unprocessable: ``model_invalid``, a malformed model; ``details["kind"]`` is what it was read as
            and ``details["reason"]`` names the failed check
            (e.g. ``glb_length``, ``not_vrm``, ``vrm_meta``, ``zip_path``, ``zip_ratio``,
            ``live2d_missing_reference``).
    """
    shown = part if filename is None else f"{part} ({filename[:255]})"
    details: dict[str, Any] = {"part": part}
    if filename is not None:
        details["filename"] = filename[:255]
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"model part {shown!r} is too large: expected at most {max_bytes} bytes, got {len(data)}",
            code="model_too_large",
            details={**details, "size": len(data), "limit": max_bytes},
        )
    kind: ModelKind
    if data[:4] == _GLB_MAGIC:
        kind = "vrm"
    elif data[:4] in (b"PK\x03\x04", _EOCD_SIGNATURE):
        kind = "live2d"
    else:
        raise UnsupportedMediaType(
            f"model part {shown!r} is neither a VRM (glTF binary) nor a Live2D zip",
            code="model_unsupported",
            details=details,
        )
    try:
        meta = _parse_vrm(data) if kind == "vrm" else _parse_live2d(data)
    except _Invalid as exc:
        label = "VRM model" if kind == "vrm" else "Live2D model zip"
        raise Unprocessable(
            f"model part {shown!r} is not a valid {label}: {exc.message}",
            code="model_invalid",
            details={**details, "kind": kind, "reason": exc.reason},
        ) from exc
    return ModelInfo(kind=kind, sha256=hashlib.sha256(data).digest(), size=len(data), meta=meta)


# --- VRM --------------------------------------------------------------------------------------------


def _parse_vrm(data: bytes) -> dict[str, Any]:
    json_bytes, bin_length = _split_glb(data)
    document = _decode_json_chunk(json_bytes)
    gltf = _to_gltf(document)
    _check_buffers(gltf, document.get("bufferViews", []), bin_length)
    extensions = gltf.extensions if isinstance(gltf.extensions, dict) else {}
    if "VRMC_vrm" in extensions:
        return _vrm1_meta(extensions["VRMC_vrm"], gltf)
    if "VRM" in extensions:
        return _vrm0_meta(extensions["VRM"], gltf)
    raise _Invalid("not_vrm", "glTF file has no VRM extension (VRMC_vrm or VRM)")


def _split_glb(data: bytes) -> tuple[bytes, int | None]:
    """Return the JSON chunk and the BIN chunk's length (None without one), per glTF 2.0 §4.4."""
    if len(data) < _GLB_HEADER.size + _GLB_CHUNK.size:
        raise _Invalid("glb_header", f"file is {len(data)} bytes, shorter than a GLB header")
    _magic, version, length = _GLB_HEADER.unpack_from(data)
    if version != 2:
        raise _Invalid("glb_version", f"GLB version must be 2, got {version}")
    if length != len(data):
        raise _Invalid("glb_length", f"GLB header declares {length} bytes, got {len(data)}")
    chunks: list[tuple[int, int, int]] = []
    offset = _GLB_HEADER.size
    while offset < length:
        if length - offset < _GLB_CHUNK.size:
            raise _Invalid("glb_chunk", f"truncated chunk header at offset {offset}")
        chunk_length, chunk_type = _GLB_CHUNK.unpack_from(data, offset)
        start = offset + _GLB_CHUNK.size
        if chunk_length > length - start:
            raise _Invalid(
                "glb_chunk",
                f"chunk at offset {offset} declares {chunk_length} bytes, only {length - start} remain",
            )
        chunks.append((chunk_type, start, start + chunk_length))
        offset = start + chunk_length
    if not chunks or chunks[0][0] != _CHUNK_JSON:
        raise _Invalid("glb_chunk", "the first GLB chunk must be JSON")
    # At most one BIN chunk, and only second; chunks of other types are ignored as the spec requires.
    if any(t in (_CHUNK_JSON, _CHUNK_BIN) for t, _, _ in chunks[2:]) or (
        len(chunks) > 1 and chunks[1][0] == _CHUNK_JSON
    ):
        raise _Invalid("glb_chunk", "GLB must have one JSON chunk and at most one BIN chunk, in that order")
    _, json_start, json_end = chunks[0]
    if json_end - json_start > MAX_GLTF_JSON_BYTES:
        raise _Invalid(
            "glb_json_too_large",
            f"JSON chunk is {json_end - json_start} bytes, expected at most {MAX_GLTF_JSON_BYTES}",
        )
    bin_length = chunks[1][2] - chunks[1][1] if len(chunks) > 1 and chunks[1][0] == _CHUNK_BIN else None
    return data[json_start:json_end], bin_length


def _decode_json_chunk(json_bytes: bytes) -> dict[str, Any]:
    """Decode the JSON chunk (UTF-8, strict JSON: no NaN/Infinity) and check the top-level ``asset``."""
    try:
        # The spec pads with spaces; some exporters pad with NULs, which carry no content either.
        text = json_bytes.rstrip(b" \x00").decode("utf-8")
        document = json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _Invalid("gltf_json", f"JSON chunk is not valid UTF-8 JSON ({type(exc).__name__})") from exc
    if not isinstance(document, dict):
        raise _Invalid("gltf_json", "JSON chunk is not an object")
    # Checked on the raw document: pygltflib fills a missing asset in with defaults.
    asset = document.get("asset")
    version = asset.get("version") if isinstance(asset, dict) else None
    if not isinstance(version, str) or not version.startswith("2."):
        raise _Invalid("gltf_asset", f"asset.version must be glTF 2.x, got {version!r}")
    return document


def _to_gltf(document: dict[str, Any]) -> GLTF2:
    """Read the members we check into pygltflib's typed model.

    pygltflib decodes through dataclasses_json at roughly 100 µs per object, and a VRM has thousands of
    accessors, buffer views and mesh primitives; only :data:`_GLTF_MEMBERS` are handed to it, and their
    arrays are bounded. Buffer views are checked on the parsed JSON instead (:func:`_check_buffers`).
    """
    members = {key: document[key] for key in _GLTF_MEMBERS if key in document}
    for key, value in members.items():
        if isinstance(value, list) and len(value) > MAX_GLTF_ITEMS:
            raise _Invalid("gltf_structure", f"{key} has {len(value)} items, limit {MAX_GLTF_ITEMS}")
    try:
        return GLTF2.gltf_from_json(json.dumps(members))
    except (AttributeError, TypeError, ValueError, KeyError, RecursionError) as exc:
        # pygltflib maps JSON onto dataclasses and fails with these on wrongly typed members.
        raise _Invalid("gltf_structure", f"glTF document does not fit the schema ({exc})") from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_buffers(gltf: GLTF2, views: object, bin_length: int | None) -> None:
    """Buffers and buffer views must lie inside the file; external URIs are refused."""
    lengths: list[int] = []
    for i, buffer in enumerate(gltf.buffers):
        length = buffer.byteLength
        if not isinstance(length, int) or length < 0:
            raise _Invalid("gltf_structure", f"buffers[{i}].byteLength must be a non-negative integer")
        if buffer.uri is None:
            # glTF 2.0 §4.4.3.3: only the first buffer may refer to the BIN chunk.
            if i != 0 or bin_length is None or length > bin_length:
                raise _Invalid("gltf_structure", f"buffers[{i}] does not fit the GLB binary chunk")
        else:
            _check_embedded_uri(buffer.uri, f"buffers[{i}]")
        lengths.append(length)
    if not isinstance(views, list):
        raise _Invalid("gltf_structure", "bufferViews must be an array")
    for i, view in enumerate(views):
        if not _view_fits(view, lengths):
            raise _Invalid("gltf_structure", f"bufferViews[{i}] is not inside a buffer")
    for i, image in enumerate(gltf.images):
        if image.uri is not None:
            _check_embedded_uri(image.uri, f"images[{i}]")
        view = image.bufferView
        if view is not None and not _is_index(view, len(views)):
            raise _Invalid("gltf_structure", f"images[{i}].bufferView is not a buffer view")


def _view_fits(view: object, buffer_lengths: list[int]) -> bool:
    """A buffer view (glTF 2.0 §3.6.2.2) names an existing buffer and a non-empty range inside it."""
    if not isinstance(view, dict):
        return False
    index, offset, size = view.get("buffer"), view.get("byteOffset", 0), view.get("byteLength")
    if not (
        _is_index(index, len(buffer_lengths)) and _is_index(offset, 1 << 53) and _is_index(size, 1 << 53)
    ):
        return False
    return bool(size >= 1 and offset + size <= buffer_lengths[index])


def _check_embedded_uri(uri: object, where: str) -> None:
    if not isinstance(uri, str) or not uri.startswith("data:"):
        raise _Invalid(
            "gltf_external_uri", f"{where} refers to an external file; the model must be self-contained"
        )


def _vrm0_meta(extension: object, gltf: GLTF2) -> dict[str, Any]:
    """Normalise VRM 0.x ``extensions.VRM.meta`` (vrm-specification 0.0, ``vrm.meta.schema.json``)."""
    vrm = _object(extension, "extensions.VRM")
    meta = _object(vrm.get("meta"), "extensions.VRM.meta")
    where = "VRM.meta"
    texture = meta.get("texture")
    # UniVRM writes -1 for "no thumbnail".
    if texture is not None and texture != -1 and not _is_index(texture, len(gltf.textures)):
        raise _Invalid("vrm_meta", f"{where}.texture is not a texture index")
    author = _string(meta, "author", where)
    return {
        "spec": "vrm0",
        "spec_version": _string(vrm, "specVersion", "VRM") or "0.0",
        "title": _string(meta, "title", where),
        "authors": [] if author is None else [author],
        "version": _string(meta, "version", where),
        "allowed_users": _enum(meta, "allowedUserName", where, _VRM0_ALLOWED_USERS),
        "commercial_use": _enum(meta, "commercialUssageName", where, _VRM0_COMMERCIAL),
        "license": _enum(meta, "licenseName", where, _VRM0_LICENSES),
        "other_license_url": _string(meta, "otherLicenseUrl", where),
    }


def _vrm1_meta(extension: object, gltf: GLTF2) -> dict[str, Any]:
    """Normalise VRM 1.0 ``extensions.VRMC_vrm.meta`` (VRMC_vrm-1.0, ``VRMC_vrm.meta.schema.json``)."""
    vrm = _object(extension, "extensions.VRMC_vrm")
    spec_version = _string(vrm, "specVersion", "VRMC_vrm")
    if spec_version is None or not spec_version.startswith("1."):
        raise _Invalid("vrm_meta", f"VRMC_vrm.specVersion must be 1.x, got {spec_version!r}")
    meta = _object(vrm.get("meta"), "extensions.VRMC_vrm.meta")
    where = "VRMC_vrm.meta"
    thumbnail = meta.get("thumbnailImage")
    if thumbnail is not None and not _is_index(thumbnail, len(gltf.images)):
        raise _Invalid("vrm_meta", f"{where}.thumbnailImage is not an image index")
    authors = meta.get("authors")
    if not isinstance(authors, list) or not authors or len(authors) > MAX_META_AUTHORS:
        raise _Invalid("vrm_meta", f"{where}.authors must list 1 to {MAX_META_AUTHORS} names")
    return {
        "spec": "vrm1",
        "spec_version": spec_version,
        "title": _required(_string(meta, "name", where), f"{where}.name"),
        "authors": [
            _required(_string_value(a, f"{where}.authors[{i}]"), f"{where}.authors[{i}]")
            for i, a in enumerate(authors)
        ],
        "version": _string(meta, "version", where),
        "allowed_users": _enum(meta, "avatarPermission", where, _VRM1_ALLOWED_USERS),
        "commercial_use": _enum(meta, "commercialUsage", where, _VRM1_COMMERCIAL),
        "license": _required(_string(meta, "licenseUrl", where), f"{where}.licenseUrl"),
        "other_license_url": _string(meta, "otherLicenseUrl", where),
    }


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid("vrm_meta", f"{where} must be an object")
    return value


def _is_index(value: object, count: int) -> TypeGuard[int]:
    """True for an integer (not a bool) in ``range(count)``."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < count


def _string(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    return _string_value(obj.get(key), f"{where}.{key}")


def _string_value(value: object, where: str) -> str | None:
    """A meta string; missing or blank is None (exporters write "" for unset fields)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Invalid("vrm_meta", f"{where} must be a string, got {type(value).__name__}")
    if len(value) > MAX_META_STRING:
        raise _Invalid("vrm_meta", f"{where} is {len(value)} characters, limit {MAX_META_STRING}")
    return value if value.strip() else None


def _required(value: str | None, where: str) -> str:
    if value is None:
        raise _Invalid("vrm_meta", f"{where} is required")
    return value


def _enum(obj: Mapping[str, Any], key: str, where: str, table: Mapping[str, str]) -> str | None:
    raw = _string(obj, key, where)
    if raw is None:
        return None
    value = table.get(_enum_key(raw))
    if value is None:
        raise _Invalid("vrm_meta", f"{where}.{key} has an unknown value {raw!r}")
    return value


# --- Live2D -----------------------------------------------------------------------------------------


def _parse_live2d(data: bytes) -> dict[str, Any]:
    _check_end_record(data)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            total = _check_entries(infos)
            files = {info.filename: info for info in infos if not info.is_dir()}
            for info in files.values():
                _read_through(archive, info)
            model3 = sorted(n for n in files if n.lower().endswith(".model3.json") and not _is_junk(n))
            moc3 = sorted(n for n in files if n.lower().endswith(".moc3") and not _is_junk(n))
            if not model3:
                raise _Invalid("live2d_no_model3", "zip holds no .model3.json")
            if not moc3:
                raise _Invalid("live2d_no_moc3", "zip holds no .moc3")
            if len(model3) > MAX_LIVE2D_MODELS:
                raise _Invalid(
                    "live2d_too_many_models",
                    f"zip holds {len(model3)} .model3.json files, limit {MAX_LIVE2D_MODELS}",
                )
            models = [_read_model3(archive, files, path) for path in model3]
    except _ZIP_ERRORS as exc:
        raise _Invalid("zip_corrupt", f"zip archive is damaged ({type(exc).__name__}: {exc})") from exc
    return {
        "model3_json": model3,
        "moc3": moc3,
        "models": models,
        "entries": len(infos),
        "uncompressed_size": total,
    }


def _check_end_record(data: bytes) -> None:
    """Bound the central directory before zipfile parses it (APPNOTE 4.3.16, found as zipfile does)."""
    tail = len(data) - _EOCD.size
    if tail >= 0 and data[tail : tail + 4] == _EOCD_SIGNATURE and data[-2:] == b"\x00\x00":
        position = tail
    else:
        position = data.rfind(_EOCD_SIGNATURE, max(0, len(data) - _EOCD.size - _MAX_ZIP_COMMENT))
    if position < 0 or len(data) - position < _EOCD.size:
        raise _Invalid("zip_corrupt", "zip has no end of central directory record")
    _sig, _disk, _cd_disk, _disk_entries, entries, cd_size, _cd_offset, _comment = _EOCD.unpack_from(
        data, position
    )
    locator = position - _ZIP64_LOCATOR_SIZE
    if (
        entries == 0xFFFF
        or cd_size == 0xFFFFFFFF
        or (locator >= 0 and data[locator : locator + 4] == _ZIP64_LOCATOR_SIGNATURE)
    ):
        raise _Invalid(
            "zip64", "ZIP64 archives are not accepted (a model within the size limit never needs one)"
        )
    if entries > MAX_ZIP_ENTRIES or cd_size > MAX_ZIP_CENTRAL_DIRECTORY:
        raise _Invalid(
            "zip_too_many_entries",
            f"zip declares {entries} entries in {cd_size} bytes, limit {MAX_ZIP_ENTRIES} entries "
            f"in {MAX_ZIP_CENTRAL_DIRECTORY} bytes",
        )


def _check_entries(infos: list[zipfile.ZipInfo]) -> int:
    """Check every entry's name, flags and declared sizes; return the declared uncompressed total."""
    if len(infos) > MAX_ZIP_ENTRIES:
        raise _Invalid("zip_too_many_entries", f"zip has {len(infos)} entries, limit {MAX_ZIP_ENTRIES}")
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.orig_filename
        _check_name(name)
        # Names that differ only by case or Unicode normalisation collide on common filesystems.
        key = unicodedata.normalize("NFC", name).casefold()
        if key in seen:
            raise _Invalid("zip_duplicate_name", f"zip has the entry {name!r} twice")
        seen.add(key)
        if info.flag_bits & _ZIP_ENCRYPTED_FLAG:
            raise _Invalid("zip_encrypted", f"zip entry {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _Invalid(
                "zip_compression", f"zip entry {name!r} uses compression method {info.compress_type}"
            )
        if (info.external_attr >> 16) & 0o170000 == _UNIX_SYMLINK:
            raise _Invalid("zip_path", f"zip entry {name!r} is a symbolic link")
        if info.file_size > ZIP_RATIO_GRACE and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
            raise _Invalid(
                "zip_ratio",
                f"zip entry {name!r} inflates {info.compress_size} bytes to {info.file_size}, "
                f"more than {MAX_ZIP_RATIO}:1",
            )
        total += info.file_size
        if total > MAX_ZIP_UNCOMPRESSED:
            raise _Invalid("zip_too_large", f"zip inflates to more than {MAX_ZIP_UNCOMPRESSED} bytes")
    return total


_DRIVE: Final = re.compile(r"^[A-Za-z]:")


def _check_name(name: str) -> None:
    """Refuse names that could escape an extraction folder or mean different things on different systems."""
    if not name or len(name) > MAX_ZIP_NAME_CHARS:
        raise _Invalid("zip_path", f"zip entry name has {len(name)} characters")
    if any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise _Invalid("zip_path", f"zip entry name {name!r} has control characters")
    if "\\" in name or name.startswith("/") or _DRIVE.match(name):
        raise _Invalid("zip_path", f"zip entry name {name!r} is absolute or uses backslashes")
    parts = name.rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise _Invalid("zip_path", f"zip entry name {name!r} escapes or is not normalised")


def _is_junk(name: str) -> bool:
    """macOS Finder adds "__MACOSX/" resource forks and "._" AppleDouble files; they are not models."""
    return name.startswith("__MACOSX/") or posixpath.basename(name).startswith("._")


def _read_through(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Inflate one entry fully: zipfile stops at the declared size and checks the CRC at the end."""
    with archive.open(info) as stream:
        while stream.read(1 << 16):
            pass


def _read_model3(archive: zipfile.ZipFile, files: Mapping[str, zipfile.ZipInfo], path: str) -> dict[str, Any]:
    """Parse one ``.model3.json`` (Cubism 3+ model settings) and resolve its ``FileReferences``."""
    info = files[path]
    if info.file_size > MAX_MODEL3_JSON_BYTES:
        raise _Invalid("live2d_model3", f"{path} is {info.file_size} bytes, limit {MAX_MODEL3_JSON_BYTES}")
    try:
        # Cubism Editor writes UTF-8, some tools with a byte-order mark.
        document = json.loads(archive.read(info).decode("utf-8-sig"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _Invalid("live2d_model3", f"{path} is not valid UTF-8 JSON") from exc
    if not isinstance(document, dict):
        raise _Invalid("live2d_model3", f"{path} is not a JSON object")
    version = document.get("Version")
    references = document.get("FileReferences")
    if not _is_index(version, 1 << 16) or not isinstance(references, dict):
        raise _Invalid("live2d_model3", f"{path} needs an integer Version and a FileReferences object")

    resolve = _Resolver(path, files)
    moc = resolve.one(references, "Moc", required=True)
    assert moc is not None  # required=True never returns None
    if not moc.lower().endswith(".moc3"):
        raise _Invalid("live2d_model3", f"{path} FileReferences.Moc is not a .moc3 file: {moc!r}")
    with archive.open(files[moc]) as stream:
        header = stream.read(_MOC3_HEADER_BYTES)
    if len(header) < _MOC3_HEADER_BYTES or header[:4] != _MOC3_MAGIC:
        raise _Invalid("live2d_moc3", f"{moc} does not start with a MOC3 header")

    motions: dict[str, list[str]] = {}
    sounds: list[str] = []
    groups = references.get("Motions", {})
    if not isinstance(groups, dict):
        raise _Invalid("live2d_model3", f"{path} FileReferences.Motions is not an object")
    for group, entries in groups.items():
        items = resolve.items(entries, f"Motions.{group}")
        motions[group] = [resolve.path(item.get("File"), f"Motions.{group}.File") for item in items]
        sounds += [resolve.path(s, f"Motions.{group}.Sound") for item in items if (s := item.get("Sound"))]
    expressions = resolve.items(references.get("Expressions", []), "Expressions")
    textures = references.get("Textures", [])
    if not isinstance(textures, list):
        raise _Invalid("live2d_model3", f"{path} FileReferences.Textures is not a list")
    return {
        "model3_json": path,
        "version": version,
        "moc": moc,
        "moc_version": header[4],
        "textures": [resolve.path(t, f"Textures[{i}]") for i, t in enumerate(textures)],
        "physics": resolve.one(references, "Physics"),
        "pose": resolve.one(references, "Pose"),
        "display_info": resolve.one(references, "DisplayInfo"),
        "user_data": resolve.one(references, "UserData"),
        "expressions": [resolve.path(e.get("File"), "Expressions.File") for e in expressions],
        "motions": motions,
        "sounds": sounds,
    }


class _Resolver:
    """Resolves a model3.json's references (relative to its folder) to entries of the zip."""

    def __init__(self, model3: str, files: Mapping[str, zipfile.ZipInfo]) -> None:
        self.model3 = model3  # the .model3.json being read, for messages
        self.folder = posixpath.dirname(model3)  # references are relative to it
        self.files = files  # archive path -> entry, directories excluded

    def one(self, references: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
        value = references.get(key)
        if value is None and not required:
            return None
        return self.path(value, key)

    def items(self, value: object, where: str) -> list[Mapping[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise _Invalid("live2d_model3", f"{self.model3} FileReferences.{where} is not a list of objects")
        return value

    def path(self, value: object, where: str) -> str:
        if not isinstance(value, str) or not value or "\\" in value or value.startswith("/"):
            raise _Invalid(
                "live2d_model3", f"{self.model3} FileReferences.{where} is not a relative path: {value!r}"
            )
        resolved = posixpath.normpath(posixpath.join(self.folder, value))
        if resolved == ".." or resolved.startswith("../"):
            raise _Invalid("zip_path", f"{self.model3} FileReferences.{where} leaves the zip: {value!r}")
        if resolved not in self.files:
            raise _Invalid(
                "live2d_missing_reference",
                f"{self.model3} FileReferences.{where} names {resolved!r}, which is not in the zip",
            )
        return resolved
