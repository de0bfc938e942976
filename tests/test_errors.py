"""Our openEO error classes use the codes and HTTP statuses of the official error list."""

import json
from pathlib import Path

import pytest

from openeo_airflow.core.errors import CUSTOM_CODES, OpenEOError, all_error_classes

ERRORS = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "schemas"
    / "openeo-api-1.2.0-errors.json"
)


@pytest.mark.skipif(not ERRORS.exists(), reason=f"openEO error list not found at {ERRORS}")
@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_error_code_and_status_match_the_spec(cls: type[OpenEOError]) -> None:
    spec = json.loads(ERRORS.read_text())
    if cls.code in CUSTOM_CODES:
        assert cls.code not in spec
        assert 400 <= cls.status < 500
        return
    assert cls.code in spec, f"{cls.code} is not an openEO error code"
    assert cls.status == spec[cls.code]["http"]
    assert cls.__name__ == cls.code


def test_message_is_formatted_from_parameters() -> None:
    from openeo_airflow.core.errors import CollectionNotFound

    error = CollectionNotFound(identifier="S9")
    assert error.message == "Collection 'S9' does not exist."
    assert error.to_dict()["code"] == "CollectionNotFound"
    assert error.to_dict()["id"]
