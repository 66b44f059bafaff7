"""Every place in a JSON document, and a copy with one of them replaced: for mutating real
payloads one value at a time in the fuzz tests."""

from __future__ import annotations

from typing import Any


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of `node` itself and of everything inside it (object keys, list indexes)."""
    found = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            found += paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += paths(child, (*prefix, index))
    return found


def replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of `node` with the value at `path` replaced; `node` itself is left as it was."""
    if not path:
        return value
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = replace(node[path[0]], path[1:], value)
    return copy
