"""openEO API errors: one class per error code of the openEO API 1.2 error list.

Domain code raises these; only the API layer turns them into HTTP responses, using
each class's ``status``. ``tests/test_errors.py`` checks codes and statuses against
the official error list.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar


class OpenEOError(Exception):
    """Base class: ``code`` and ``status`` as in the openEO error list."""

    code: ClassVar[str] = "Internal"
    status: ClassVar[int] = 500
    template: ClassVar[str] = "Server error: {message}"

    def __init__(self, message: str | None = None, **params: Any) -> None:
        self.params = params
        self.message = message or self._format(params)
        self.id = uuid.uuid4().hex
        super().__init__(self.message)

    def _format(self, params: dict[str, Any]) -> str:
        try:
            return self.template.format(**params)
        except (KeyError, IndexError):
            return self.template

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "code": self.code, "message": self.message, "links": []}


class Internal(OpenEOError):
    pass


class NotFound(OpenEOError):
    code = "NotFound"
    status = 404
    template = "Resource not found."


class FeatureUnsupported(OpenEOError):
    code = "FeatureUnsupported"
    status = 501
    template = "Feature not supported."


class InfrastructureBusy(OpenEOError):
    code = "InfrastructureBusy"
    status = 503
    template = "Service is not available at the moment due to overloading."


class NoDataForUpdate(OpenEOError):
    code = "NoDataForUpdate"
    status = 400
    template = "No data specified to be updated."


class PropertyNotEditable(OpenEOError):
    code = "PropertyNotEditable"
    status = 400
    template = "The specified property '{property}' is read-only."


class CollectionNotFound(OpenEOError):
    code = "CollectionNotFound"
    status = 404
    template = "Collection '{identifier}' does not exist."


class StorageFailure(OpenEOError):
    code = "StorageFailure"
    status = 500
    template = "Unable to store files due to a server error."


class FileNotFound(OpenEOError):
    code = "FileNotFound"
    status = 404
    template = "File '{file}' does not exist."


class ContentTypeInvalid(OpenEOError):
    code = "ContentTypeInvalid"
    status = 400
    template = "The media type is not supported. Allowed: {types}"


class ProcessGraphNotFound(OpenEOError):
    code = "ProcessGraphNotFound"
    status = 404
    template = "User-defined process '{identifier}' does not exist."


class PredefinedProcessExists(OpenEOError):
    code = "PredefinedProcessExists"
    status = 400
    template = "A predefined process with the given identifier exists."


class ProcessInvalid(OpenEOError):
    code = "ProcessInvalid"
    status = 400
    template = "Invalid process specified."


class ProcessGraphMissing(OpenEOError):
    code = "ProcessGraphMissing"
    status = 400
    template = "Invalid process specified. It doesn't contain a process graph."


class ProcessGraphInvalid(OpenEOError):
    code = "ProcessGraphInvalid"
    status = 400
    template = "Invalid process graph specified."


class ProcessParameterUnsupported(OpenEOError):
    code = "ProcessParameterUnsupported"
    status = 400
    template = "Process '{process}' does not support parameter '{parameter}'."


class ProcessParameterRequired(OpenEOError):
    code = "ProcessParameterRequired"
    status = 400
    template = "Process '{process}' parameter '{parameter}' is required."


class JobNotFound(OpenEOError):
    code = "JobNotFound"
    status = 404
    template = "The batch job '{identifier}' does not exist."


class JobLocked(OpenEOError):
    code = "JobLocked"
    status = 400
    template = "Batch job is locked due to a queued or running batch computation."


class JobNotFinished(OpenEOError):
    code = "JobNotFinished"
    status = 400
    template = "Batch job has not finished computing the results yet. Please try again later."


class JobNotStarted(OpenEOError):
    code = "JobNotStarted"
    status = 400
    template = "Batch job must be started first."


class AuthenticationRequired(OpenEOError):
    code = "AuthenticationRequired"
    status = 401
    template = "Unauthorized."


class AuthenticationSchemeInvalid(OpenEOError):
    code = "AuthenticationSchemeInvalid"
    status = 403
    template = "Authentication method not supported."


class TokenInvalid(OpenEOError):
    code = "TokenInvalid"
    status = 403
    template = "Authorization token has expired or is invalid. Please authenticate again."


class CredentialsInvalid(OpenEOError):
    code = "CredentialsInvalid"
    status = 403
    template = "Credentials are not correct."


class ProcessGraphComplexity(OpenEOError):
    code = "ProcessGraphComplexity"
    status = 400
    template = (
        "The process is too complex for synchronous processing. Please use a batch job instead."
    )


class ProcessUnsupported(OpenEOError):
    code = "ProcessUnsupported"
    status = 400
    template = "Process with identifier '{process}' is not available in namespace '{namespace}'."


class ProcessParameterInvalid(OpenEOError):
    code = "ProcessParameterInvalid"
    status = 400
    template = (
        "The value passed for parameter '{parameter}' in process '{process}' is invalid: {reason}"
    )


class PermissionsInsufficient(OpenEOError):
    code = "PermissionsInsufficient"
    status = 403
    template = "Forbidden. The permissions of the authenticated account do not allow the request."


def all_error_classes() -> list[type[OpenEOError]]:
    """Every concrete error class defined here (for the spec conformance test)."""
    return [
        c
        for c in globals().values()
        if isinstance(c, type) and issubclass(c, OpenEOError) and c is not OpenEOError
    ]


class RequestInvalid(OpenEOError):
    """Our own code (the error list has no generic one) for a body that is not valid JSON."""

    code = "RequestInvalid"
    status = 400
    template = "The request body is invalid: {reason}"


class ResultAssetNotFound(OpenEOError):
    """Our own code: an unknown result file or an expired or forged download link."""

    code = "ResultAssetNotFound"
    status = 404
    template = "The result file '{file}' does not exist or its link is invalid."


class NoDataAvailable(OpenEOError):
    """Our own code: the request selects no data at all (nothing to return)."""

    code = "NoDataAvailable"
    status = 400
    template = "No data was found for the requested extent and period."


CUSTOM_CODES = {RequestInvalid.code, ResultAssetNotFound.code, NoDataAvailable.code}
