"""Line numbers of values inside a JSON text, for error messages that point into a file."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from json.decoder import scanstring  # type: ignore[attr-defined]

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def line_of(text: str, path: Sequence[str | int]) -> int:
    """The line of the value at ``path`` (dict keys and list indexes), or of its nearest parent found."""
    pos = _skip_whitespace(text, 0)
    for step in path:
        child = _find_child(text, pos, step)
        if child is None:
            break
        pos = child
    return text.count("\n", 0, pos) + 1


def _skip_whitespace(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    return match.end() if match else pos


def _skip_value(text: str, pos: int) -> int:
    _, end = _DECODER.raw_decode(text, pos)
    return _skip_whitespace(text, end)


def _find_child(text: str, pos: int, step: str | int) -> int | None:
    """Position of ``step`` inside the object or array at ``pos`` (for a key: where the key starts)."""
    try:
        if isinstance(step, str) and text[pos] == "{":
            pos = _skip_whitespace(text, pos + 1)
            while text[pos] == '"':
                key_start = pos
                key, pos = scanstring(text, pos + 1)
                pos = _skip_whitespace(text, pos)
                pos = _skip_whitespace(text, pos + 1)  # the ':'
                if key == step:
                    return key_start if text[pos] not in "{[" else pos
                pos = _skip_value(text, pos)
                if text[pos] == ",":
                    pos = _skip_whitespace(text, pos + 1)
        elif isinstance(step, int) and text[pos] == "[":
            pos = _skip_whitespace(text, pos + 1)
            for _ in range(step):
                pos = _skip_value(text, pos)
                if text[pos] != ",":
                    return None
                pos = _skip_whitespace(text, pos + 1)
            return pos if text[pos] != "]" else None
    except (IndexError, ValueError):
        return None
    return None
