"""Deterministic OCI image layouts written in pure Python.

Tests push these with skopeo and then compare the digests the registry (and its notifications)
report with the ones returned here, so every byte must be stable from run to run: fixed mtimes
and owners in the tar, gzip mtime 0, and sorted compact JSON everywhere.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_OCI_LAYER_FOREIGN = "application/vnd.oci.image.layer.nondistributable.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"

#: Every tar entry and the config "created" use this instant (2024-01-01T00:00:00Z).
FIXED_EPOCH = 1_704_067_200
FIXED_CREATED = "2024-01-01T00:00:00Z"

DEFAULT_FILES: Mapping[str, bytes] = {
    "etc/os-release": (
        b'NAME="Alpine Linux"\n'
        b"ID=alpine\n"
        b"VERSION_ID=3.19.1\n"
        b'PRETTY_NAME="Alpine Linux v3.19"\n'
        b'HOME_URL="https://alpinelinux.org/"\n'
        b'BUG_REPORT_URL="https://gitlab.alpinelinux.org/alpine/aports/-/issues"\n'
    ),
    "etc/alpine-release": b"3.19.1\n",
}

#: A base that is supported on 2026-12-01 (Alpine 3.22 reaches end of life in 2027).
SUPPORTED_FILES: dict[str, bytes] = {
    "etc/os-release": b'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.22.1\n',
    "etc/alpine-release": b"3.22.1\n",
}

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ImageSpec:
    """What one single-platform image contains; equal specs give equal digests."""

    files: Mapping[str, bytes] = field(default_factory=lambda: dict(DEFAULT_FILES))
    user: str = ""
    env: Sequence[str] = (DEFAULT_PATH_ENV,)
    entrypoint: Sequence[str] | None = None
    cmd: Sequence[str] | None = ("/bin/sh",)
    labels: Mapping[str, str] = field(default_factory=dict)
    architecture: str = "amd64"
    os: str = "linux"
    variant: str | None = None
    extra_layers: Sequence[Mapping[str, bytes]] = ()
    #: Layer blobs made by hand (gzip, or plain tar), stacked after the others: hostile tars
    #: that `build_layer_tar` would never write.
    raw_layers: Sequence[bytes] = ()
    #: Foreign (non-distributable) layers listed in the manifest, stacked last, whose blobs
    #: are never stored: their bytes, so the descriptor names a real digest.
    foreign_layers: Sequence[bytes] = ()
    #: The config's "created" (RFC 3339); the default keeps digests stable across runs.
    created: str = FIXED_CREATED


def canonical_json(obj: Any) -> bytes:
    """Sorted, compact JSON, so the same object always hashes to the same digest."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    """The OCI digest string ("sha256:<hex>") of data."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _clean_path(path: str) -> str:
    """Normalise a layer path to a relative POSIX path; refuse anything escaping the root."""
    p = PurePosixPath(path.lstrip("/"))
    parts = [part for part in p.parts if part not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"bad path inside a layer: {path!r}")
    return "/".join(parts)


def _file_mode(path: str, content: bytes) -> int:
    """Scripts and anything in a bin directory are executable, the rest is 0644."""
    parts = path.split("/")
    if content.startswith(b"#!") or any(part in ("bin", "sbin") for part in parts[:-1]):
        return 0o755
    return 0o644


def build_layer_tar(files: Mapping[str, bytes]) -> bytes:
    """An uncompressed, byte-stable tar of files, with parent directories added.

    A name like "a/.wh.b" is written as an ordinary (usually empty) file: that is how the OCI
    layer spec spells a whiteout, so no special handling is needed.
    """
    cleaned: dict[str, bytes] = {}
    for raw, content in files.items():
        path = _clean_path(raw)
        if path in cleaned:
            raise ValueError(f"duplicate path in a layer: {raw!r}")
        cleaned[path] = bytes(content)
    dirs: set[str] = set()
    for path in cleaned:
        parent = PurePosixPath(path).parent
        while str(parent) != ".":
            dirs.add(str(parent))
            parent = parent.parent
    clash = dirs & cleaned.keys()
    if clash:
        raise ValueError(f"paths used both as file and directory: {sorted(clash)}")

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(dirs | cleaned.keys()):
            info = tarfile.TarInfo(name)
            info.mtime = FIXED_EPOCH
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if name in dirs:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                data = cleaned[name]
                info.size = len(data)
                info.mode = _file_mode(name, data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class _Layout:
    """Blob store and index.json of one layout directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        layout_file = root / "oci-layout"
        if not layout_file.exists():
            _atomic_write(layout_file, canonical_json({"imageLayoutVersion": "1.0.0"}))

    def put(self, data: bytes, media_type: str) -> dict[str, Any]:
        """Store a blob (once) and return its descriptor."""
        digest = sha256_digest(data)
        path = self.blobs / digest.removeprefix("sha256:")
        if not path.exists():
            _atomic_write(path, data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def put_image(self, spec: ImageSpec) -> dict[str, Any]:
        """Store layers, config and manifest of spec; return the manifest descriptor."""
        layers: list[dict[str, Any]] = []
        diff_ids: list[str] = []
        history: list[dict[str, Any]] = []
        for n, files in enumerate([spec.files, *spec.extra_layers]):
            tar = build_layer_tar(files)
            diff_ids.append(sha256_digest(tar))
            layers.append(
                self.put(gzip.compress(tar, compresslevel=6, mtime=0), MEDIA_OCI_LAYER_GZIP)
            )
            history.append(
                {"created": FIXED_CREATED, "created_by": f"tests/support/oci.py layer {n}"}
            )
        for blob in spec.raw_layers:
            gzipped = blob.startswith(b"\x1f\x8b")
            diff_ids.append(sha256_digest(gzip.decompress(blob) if gzipped else blob))
            layers.append(self.put(blob, MEDIA_OCI_LAYER_GZIP if gzipped else MEDIA_OCI_LAYER))
            history.append({"created": FIXED_CREATED, "created_by": "hand-made layer"})
        for blob in spec.foreign_layers:
            diff_ids.append(sha256_digest(blob))
            layers.append(
                {
                    "mediaType": MEDIA_OCI_LAYER_FOREIGN,
                    "digest": sha256_digest(blob),
                    "size": len(blob),
                    "urls": ["https://foreign.invalid/layer.tar"],
                }
            )
            history.append({"created": FIXED_CREATED, "created_by": "foreign layer"})

        run_config: dict[str, Any] = {"Env": list(spec.env)}
        if spec.user:
            run_config["User"] = spec.user
        if spec.entrypoint is not None:
            run_config["Entrypoint"] = list(spec.entrypoint)
        if spec.cmd is not None:
            run_config["Cmd"] = list(spec.cmd)
        if spec.labels:
            run_config["Labels"] = dict(spec.labels)
        config: dict[str, Any] = {
            "architecture": spec.architecture,
            "os": spec.os,
            "created": spec.created,
            "config": run_config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }
        if spec.variant:
            config["variant"] = spec.variant
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": self.put(canonical_json(config), MEDIA_OCI_CONFIG),
            "layers": layers,
        }
        desc = self.put(canonical_json(manifest), MEDIA_OCI_MANIFEST)
        desc["platform"] = _platform(spec)
        return desc

    def tag(self, entries: Mapping[str, dict[str, Any]]) -> None:
        """Point each tag at its descriptor in index.json, keeping every other entry."""
        index_path = self.root / "index.json"
        manifests: list[dict[str, Any]] = []
        if index_path.exists():
            manifests = json.loads(index_path.read_bytes()).get("manifests", [])
        manifests = [m for m in manifests if m.get("annotations", {}).get(REF_NAME) not in entries]
        for tag, desc in entries.items():
            manifests.append({**desc, "annotations": {REF_NAME: tag}})
        index = {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": manifests}
        _atomic_write(index_path, canonical_json(index))


def _platform(spec: ImageSpec) -> dict[str, str]:
    platform = {"architecture": spec.architecture, "os": spec.os}
    if spec.variant:
        platform["variant"] = spec.variant
    return platform


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file and rename, so a crashed run never leaves half a blob."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_layout(root: Path, images: Mapping[str, ImageSpec]) -> dict[str, str]:
    """Write an OCI image layout at root with one tagged manifest per entry (tag -> spec).

    Existing layouts are extended (index.json entries merge; a re-used tag is replaced).
    Returns tag -> manifest digest.
    """
    layout = _Layout(Path(root))
    descs = {tag: layout.put_image(spec) for tag, spec in images.items()}
    layout.tag(descs)
    return {tag: desc["digest"] for tag, desc in descs.items()}


def write_index_layout(
    root: Path, tag: str, platforms: Sequence[ImageSpec]
) -> tuple[str, list[str]]:
    """Add (or create) a layout entry tag that is an OCI image index over one manifest per spec.

    Returns (index digest, child manifest digests in the order of platforms).
    """
    if not platforms:
        raise ValueError("an image index needs at least one platform")
    layout = _Layout(Path(root))
    children = [layout.put_image(spec) for spec in platforms]
    index = {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": children}
    desc = layout.put(canonical_json(index), MEDIA_OCI_INDEX)
    layout.tag({tag: desc})
    return desc["digest"], [c["digest"] for c in children]
