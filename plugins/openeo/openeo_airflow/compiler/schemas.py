"""Checking argument values against openEO parameter schemas (before anything runs).

openEO process specs describe parameters with JSON Schema plus ``subtype`` (``datacube``,
``bounding-box``, ``process-graph``, ``date-time``...). Validation needs two questions answered:

- ``literal_matches(value, schema)``: may this JSON value be passed? The JSON Schema keywords
  openEO specs use are checked (``type``, ``enum``, ``const``, ``minimum``/``maximum`` and their
  exclusive forms, ``minItems``/``maxItems``, ``items``, ``pattern``, ``required``,
  ``properties``, ``anyOf``/``oneOf``/``allOf``); a data cube can never be written as a literal.
- ``schemas_compatible(produced, accepted)``: may the result of another node (its process's
  ``returns`` schema) or a parameter be passed? Yes unless the types cannot meet (a number where
  a data cube is expected, a cube where a bounding box is expected...). Schemas without a type
  accept and produce anything.

Both err on the side of accepting: a false alarm would reject a valid process graph.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

CUBE_SUBTYPES = frozenset({"datacube", "raster-cube", "vector-cube"})
JSON_TYPES = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: (
        isinstance(v, int | float)
        and not isinstance(v, bool)
        and (isinstance(v, int) or (math.isfinite(v) and float(v).is_integer()))
    ),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def alternatives(schema: Any) -> Iterator[dict[str, Any]]:
    """The alternatives a schema allows (a list of schemas, ``anyOf``/``oneOf``, or itself)."""
    if isinstance(schema, list):
        for item in schema:
            yield from alternatives(item)
    elif isinstance(schema, dict):
        branches = schema.get("anyOf") or schema.get("oneOf")
        if isinstance(branches, list):
            base = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
            for branch in branches:
                for alternative in alternatives(branch):
                    yield {**base, **alternative}
        else:
            yield schema
    else:
        yield {}


def types_of(schema: dict[str, Any]) -> set[str] | None:
    """The JSON types an alternative allows (``None``: any)."""
    kind = schema.get("type")
    if kind is None:
        return None
    return {kind} if isinstance(kind, str) else set(kind)


def _matches_type(value: Any, kinds: set[str] | None) -> bool:
    return kinds is None or any(JSON_TYPES.get(k, lambda v: True)(value) for k in kinds)


def _number_ok(value: Any, schema: dict[str, Any]) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        return True
    checks = (
        ("minimum", lambda b: value >= b),
        ("maximum", lambda b: value <= b),
        ("exclusiveMinimum", lambda b: value > b),
        ("exclusiveMaximum", lambda b: value < b),
    )
    return all(not isinstance(schema.get(k), int | float) or ok(schema[k]) for k, ok in checks)


def _array_ok(value: Any, schema: dict[str, Any]) -> bool:
    if not isinstance(value, list):
        return True
    if isinstance(schema.get("minItems"), int) and len(value) < schema["minItems"]:
        return False
    if isinstance(schema.get("maxItems"), int) and len(value) > schema["maxItems"]:
        return False
    items = schema.get("items")
    if isinstance(items, dict | list) and items:
        return all(literal_matches(item, items) for item in value if not is_reference(item))
    return True


def _object_ok(value: Any, schema: dict[str, Any]) -> bool:
    if not isinstance(value, dict):
        return True
    required = schema.get("required")
    if isinstance(required, list) and any(name not in value for name in required):
        return False
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for name, sub in properties.items():
            known = name in value and not is_reference(value[name])
            if known and not literal_matches(value[name], sub):
                return False
    return True


def _alternative_matches(value: Any, schema: dict[str, Any]) -> bool:
    if schema.get("subtype") in CUBE_SUBTYPES or schema.get("subtype") == "process-graph":
        return False  # written in JSON, a value is never a data cube or a process
    kinds = types_of(schema)
    if value is None and kinds is not None and "number" in kinds:
        return True  # no-data: a number may be null (some specs forget to say so)
    if not _matches_type(value, kinds):
        return False
    if "const" in schema and value != schema["const"]:
        return False
    if isinstance(schema.get("enum"), list) and value not in schema["enum"]:
        return False
    pattern = schema.get("pattern")
    if isinstance(value, str) and isinstance(pattern, str) and re.search(pattern, value) is None:
        return False
    parts = schema.get("allOf")
    if isinstance(parts, list) and not all(literal_matches(value, part) for part in parts):
        return False
    return _number_ok(value, schema) and _array_ok(value, schema) and _object_ok(value, schema)


def literal_matches(value: Any, schema: Any) -> bool:
    """Whether the JSON ``value`` is allowed by ``schema`` (any alternative)."""
    return any(_alternative_matches(value, alt) for alt in alternatives(schema))


def is_reference(value: Any) -> bool:
    """A value computed at run time: ``from_node``, ``from_parameter`` or a process graph."""
    return isinstance(value, dict) and bool(
        {"from_node", "from_parameter", "process_graph"} & set(value)
    )


def contains_reference(value: Any) -> bool:
    if is_reference(value):
        return True
    if isinstance(value, list):
        return any(contains_reference(v) for v in value)
    if isinstance(value, dict):
        return any(contains_reference(v) for v in value.values())
    return False


def _compatible(produced: dict[str, Any], accepted: dict[str, Any]) -> bool:
    made, wanted = types_of(produced), types_of(accepted)
    if made is not None and wanted is not None:
        numeric = {"number", "integer"}
        if not (made & wanted or (made & numeric and wanted & numeric)):
            return False
    made_sub, wanted_sub = produced.get("subtype"), accepted.get("subtype")
    made_cube, wanted_cube = made_sub in CUBE_SUBTYPES, wanted_sub in CUBE_SUBTYPES
    if made_cube and wanted_sub is not None and not wanted_cube:
        return False  # a cube where e.g. a bounding box or GeoJSON is expected
    if wanted_cube and made_sub is not None and not made_cube:
        return False
    return not (
        made_cube and wanted_cube and {made_sub, wanted_sub} == set(CUBE_SUBTYPES - {"datacube"})
    )


def schemas_compatible(produced: Any, accepted: Any) -> bool:
    """Whether a value described by ``produced`` may be passed where ``accepted`` applies."""
    return any(_compatible(p, a) for p in alternatives(produced) for a in alternatives(accepted))


def accepts_process_graph(schema: Any) -> dict[str, Any] | None:
    """The ``process-graph`` alternative of a parameter schema (with the callback's
    ``parameters``), or ``None`` if the parameter does not take a process."""
    for alternative in alternatives(schema):
        if alternative.get("subtype") == "process-graph":
            return alternative
        extra = alternative.get("additionalProperties")
        if isinstance(extra, dict) and extra.get("subtype") == "process-graph":
            return extra
    return None


def describe(schema: Any) -> str:
    """A short human description of what a schema accepts, for messages."""
    names = []
    for alternative in alternatives(schema):
        subtype, kinds = alternative.get("subtype"), types_of(alternative)
        if subtype:
            names.append(str(subtype))
        elif kinds:
            names.extend(sorted(kinds))
        else:
            return "any value"
    unique = list(dict.fromkeys(names))
    return " or ".join(unique) if unique else "any value"
