"""Text processes: ``text_begins``, ``text_ends``, ``text_contains`` and ``text_concat``.

``null`` in -> ``null`` out; ``case_sensitive: false`` compares Unicode case-folded text (so
``Ä`` matches ``ä``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from openeo_airflow.core.errors import ProcessParameterInvalid

from .registry import process


def _text(process_id: str, name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ProcessParameterInvalid(
            process=process_id, parameter=name, reason=f"expected a text, got {value!r}"
        )
    return value


def _match(
    process_id: str, data: Any, pattern: Any, case_sensitive: Any, test: Callable[[str, str], bool]
) -> bool | None:
    if data is None:
        return None
    text, wanted = _text(process_id, "data", data), _text(process_id, "pattern", pattern)
    if not case_sensitive:
        text, wanted = text.casefold(), wanted.casefold()
    return test(text, wanted)


@process("text_begins")
def text_begins(data: Any, pattern: Any, case_sensitive: Any = True) -> bool | None:
    return _match("text_begins", data, pattern, case_sensitive, str.startswith)


@process("text_ends")
def text_ends(data: Any, pattern: Any, case_sensitive: Any = True) -> bool | None:
    return _match("text_ends", data, pattern, case_sensitive, str.endswith)


@process("text_contains")
def text_contains(data: Any, pattern: Any, case_sensitive: Any = True) -> bool | None:
    return _match("text_contains", data, pattern, case_sensitive, lambda t, p: p in t)


def as_text(value: Any) -> str:
    """The text form of a string, number, boolean or ``null`` (JSON notation but for strings)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value)


@process("text_concat")
def text_concat(data: Any, separator: Any = "") -> str:
    if not isinstance(data, list):
        raise ProcessParameterInvalid(
            process="text_concat", parameter="data", reason=f"expected an array, got {data!r}"
        )
    return as_text(separator).join(as_text(v) for v in data)


TEXT_FIND_SPEC: dict[str, Any] = {
    "id": "text_find",
    "summary": "Find a text in another text",
    "description": "Returns the position (0-based, in characters) of the first occurrence of "
    "`pattern` in `data`, or `null` if `data` does not contain it. `case_sensitive: false` "
    "compares the texts case-insensitively. No-data (`null`) in `data` gives `null`. "
    "(Experimental openEO 2.0 process; this description is ours, the spec package we load "
    "does not ship one.)",
    "categories": ["texts", "comparison"],
    "experimental": True,
    "parameters": [
        {
            "name": "data",
            "description": "Text to search in.",
            "schema": {"type": ["string", "null"]},
        },
        {"name": "pattern", "description": "Text to find.", "schema": {"type": "string"}},
        {
            "name": "case_sensitive",
            "description": "Case-sensitive comparison.",
            "schema": {"type": "boolean"},
            "default": True,
            "optional": True,
        },
    ],
    "returns": {
        "description": "The position of the first match, or `null`.",
        "schema": {"type": ["integer", "null"], "minimum": 0},
    },
}


@process("text_find", spec=TEXT_FIND_SPEC)
def text_find(data: Any, pattern: Any, case_sensitive: Any = True) -> int | None:
    if data is None:
        return None
    text, wanted = _text("text_find", "data", data), _text("text_find", "pattern", pattern)
    if not case_sensitive:
        text, wanted = text.casefold(), wanted.casefold()
    position = text.find(wanted)
    return position if position >= 0 else None
