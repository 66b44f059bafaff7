"""The layered filesystem: an image's layer records stacked into the view a container gets.

`merge` stacks the records of an image's layers, bottom first, into a `Filesystem`: the final
view (`present`) and the history (`ever`, `versions`, `history`), where a file that a later
layer deleted or replaced is still listed, as it is still in every copy of the image. Paths
resolve through symlinks as the kernel's do (at most 40 links, `PATH_MAX`), within the image
root. `os_release` tells the base distribution from what the layers kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from bot.images.layers.tar import (
    PATH_MAX,
    Entry,
    EntryType,
    LayerError,
    LayerRecord,
    normalise_path,
    parent_path,
)

_MAX_SYMLINK_HOPS = 40
_INDEX_OVERHEAD = 100  # one `present` slot: dict entry and hash


@dataclass(frozen=True)
class Removal:
    """How a version of a path left the final view: a whiteout or an opaque directory (or
    replacing a directory it was in) `deleted` it; a later entry at the same path `replaced` it."""

    layer: int
    how: Literal["deleted", "replaced"]


@dataclass(frozen=True)
class Version:
    """One appearance of a path in one layer, and what became of it."""

    path: str
    layer: int
    entry: Entry
    removed: Removal | None

    @property
    def present(self) -> bool:
        return self.removed is None


class Filesystem:
    """The image as its layers stack up. Layer indexes are 0-based, bottom first.

    Only the final view (`present`) and the few versions that left it (`removals`) are held
    beside the layer records themselves: every version of every path is read back from the
    records, so a layer of many small files costs its entries once, not once per index.
    """

    def __init__(
        self,
        present: dict[str, Entry],
        layers: Sequence[LayerRecord] = (),
        removals: dict[tuple[int, int], Removal] | None = None,
    ) -> None:
        self.present = present
        self.layers = tuple(layers)
        self.removals = removals or {}
        """(layer, position in that layer's entries) -> how that version left the final view."""

    @property
    def layer_count(self) -> int:
        return len(self.layers)

    @property
    def limits(self) -> tuple[str, ...]:
        """Every cap the layers' reading hit (see `LayerRecord.limits`), each said once."""
        return tuple(dict.fromkeys(limit for layer in self.layers for limit in layer.limits))

    @property
    def held(self) -> int:
        """About the memory this view holds: its layers' records and the final-view index."""
        return sum(layer.held for layer in self.layers) + _INDEX_OVERHEAD * len(self.present)

    def versions(self) -> Iterator[Version]:
        """Every version of every path that was ever in the image, bottom layer first."""
        for index, layer in enumerate(self.layers):
            for position, entry in enumerate(layer.entries):
                yield Version(entry.path, index, entry, self.removals.get((index, position)))

    @cached_property
    def ever(self) -> dict[str, list[tuple[int, Entry]]]:
        """Path -> every (layer, entry) it had, bottom first; built on first use."""
        out: dict[str, list[tuple[int, Entry]]] = {}
        for version in self.versions():
            out.setdefault(version.path, []).append((version.layer, version.entry))
        return out

    def history(self, path: str) -> list[Version]:
        """Every version of `path`, bottom layer first, with what became of it."""
        path = normalise_path(path)
        return [v for v in self.versions() if v.path == path]

    def resolve(self, path: str) -> str:
        """`path` with symlinks in the final view followed (within the image root).

        As the kernel does: at most 40 links followed, and a path that grows past `PATH_MAX`
        is refused (`LayerError`). The path walked so far is kept with the length of each of
        its prefixes, so each step costs at most `PATH_MAX` and a lookup at most
        `(links + 1) * PATH_MAX` steps, whatever the link targets hold.
        """
        todo = list(reversed(path.split("/")))
        here, ends = "", [0]  # ends[i]: len(here) after the first i parts
        hops = 0
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if len(ends) > 1:
                    ends.pop()
                    here = here[: ends[-1]]
                continue
            candidate = f"{here}/{part}" if here else part
            if len(candidate) > PATH_MAX:
                raise LayerError(f"path longer than {PATH_MAX} bytes resolving {path[:64]!r}")
            entry = self.present.get(candidate)
            if entry is not None and entry.type is EntryType.SYMLINK:
                hops += 1
                if hops > _MAX_SYMLINK_HOPS:
                    raise LayerError(f"too many levels of symbolic links at {path[:64]!r}")
                if entry.linkname.startswith("/"):
                    here, ends = "", [0]
                todo.extend(reversed(entry.linkname.split("/")))
                continue
            here = candidate
            ends.append(len(here))
        return here

    def lookup(self, path: str) -> Entry | None:
        """The final-view entry at `path`, through symlinks and hardlinks."""
        try:
            entry = self.present.get(self.resolve(path))
            if entry is not None and entry.type is EntryType.HARDLINK:
                entry = self.present.get(self.resolve(entry.linkname))
        except LayerError:
            return None
        return entry

    def read(self, path: str) -> bytes | None:
        """The final content of the file at `path`, if it exists and was kept."""
        entry = self.lookup(path)
        if entry is None or entry.type is not EntryType.FILE:
            return None
        return entry.content


def merge(layers: Sequence[LayerRecord]) -> Filesystem:
    """Stack layers bottom first. A layer's whiteouts act on the layers below it only."""
    present: dict[str, tuple[Entry, int, int]] = {}  # path -> (entry, layer, position)
    children: dict[str, set[str]] | None = None  # built on the first removal: most need none
    removals: dict[tuple[int, int], Removal] = {}

    def tree() -> dict[str, set[str]]:
        nonlocal children
        if children is None:
            children = {}
            for p in present:
                children.setdefault(parent_path(p), set()).add(p)
        return children

    def remove(path: str, removal: Removal, keep_self: bool = False) -> None:
        """Take `path` (unless keep_self) and everything under it out of the final view."""
        below = Removal(removal.layer, "deleted")
        kids = tree()
        stack = [path]
        while stack:
            p = stack.pop()
            if not (keep_self and p == path):
                held = present.pop(p, None)
                if held is not None:
                    removals[(held[1], held[2])] = removal if p == path else below
                    if p:
                        kids.get(parent_path(p), set()).discard(p)
            stack.extend(kids.pop(p, ()))

    for index, layer in enumerate(layers):
        for whiteout in layer.whiteouts:
            remove(whiteout.path, Removal(index, "deleted"), keep_self=whiteout.opaque)
        for position, entry in enumerate(layer.entries):
            held = present.get(entry.path)
            if held is not None:
                both_dirs = held[0].type is EntryType.DIR and entry.type is EntryType.DIR
                if not both_dirs:
                    remove(entry.path, Removal(index, "replaced"))
            present[entry.path] = (entry, index, position)
            if children is not None:
                children.setdefault(parent_path(entry.path), set()).add(entry.path)
    return Filesystem(
        present={path: held[0] for path, held in present.items()},
        layers=layers,
        removals=removals,
    )


# --- os-release --------------------------------------------------------------------------------

_OS_RELEASE_LINE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)")
_DQ_ESCAPE = re.compile(r"\\([\\$\"`])")
_REDHAT_RELEASE = re.compile(r"^(?P<name>.*?) release (?P<version>[0-9][0-9.]*)")


def parse_os_release(text: str) -> dict[str, str]:
    """`KEY=value` lines; values unquoted, 'single-' or "double-quoted"; `#` comments."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _OS_RELEASE_LINE.fullmatch(line.rstrip())
        if not m:
            continue
        key, value = m.group(1), m.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = _DQ_ESCAPE.sub(r"\1", value[1:-1])
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].strip().strip("\"'")
        out[key] = value
    return out


def os_release(fs: Filesystem) -> dict[str, str] | None:
    """The base OS as os-release keys (`ID`, `VERSION_ID`, …), or None when it cannot be told.

    Reads `etc/os-release`, then `usr/lib/os-release`; without either, `etc/alpine-release`,
    `etc/debian_version` and `etc/redhat-release` / `etc/centos-release` give `ID` and, where
    they hold one, `VERSION_ID`.
    """
    for path in ("etc/os-release", "usr/lib/os-release"):
        data = fs.read(path)
        if data is not None:
            parsed = parse_os_release(data.decode("utf-8", "replace"))
            if parsed.get("ID"):
                return parsed
    alpine = _first_line(fs.read("etc/alpine-release"))
    if alpine:
        return {"ID": "alpine", "NAME": "Alpine Linux", "VERSION_ID": alpine}
    debian = _first_line(fs.read("etc/debian_version"))
    if debian:
        out = {"ID": "debian", "NAME": "Debian GNU/Linux"}
        if debian[:1].isdigit():
            out["VERSION_ID"] = debian
        return out
    for path in ("etc/centos-release", "etc/redhat-release"):
        m = _REDHAT_RELEASE.match(_first_line(fs.read(path)))
        if m:
            name = m["name"]
            distro = "centos" if name.lower().startswith("centos") else "rhel"
            return {"ID": distro, "NAME": name, "VERSION_ID": m["version"]}
    return None


def _first_line(data: bytes | None) -> str:
    if not data:
        return ""
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return lines[0].strip() if lines else ""
