"""Kaltura API errors, with the codes and message templates of kaltura/server.

Templates are copied from api_v3/lib/KalturaErrors.php and alpha/.../APIErrors.php so that code matching on
`KalturaException.code` (and people reading `message`) see what the real service sends.
"""

from __future__ import annotations

# code -> (argument names, message template with @NAME@ placeholders)
TEMPLATES: dict[str, tuple[tuple[str, ...], str]] = {
    "MISSING_KS": ((), "Missing KS, session not established"),
    "INVALID_KS": (("KSID", "ERR_CODE", "ERR_DESC"), 'Invalid KS "@KSID@", Error "@ERR_CODE@,@ERR_DESC@"'),
    "START_SESSION_ERROR": (("PID",), "Error while starting session for partner [@PID@]"),
    "SERVICE_NOT_SPECIFIED": ((), "Service name was not specified, please specify one"),
    "ACTION_NOT_SPECIFIED": ((), "Action name was not specified, please specify one"),
    "SERVICE_DOES_NOT_EXISTS": (("SRV_NAME",), 'Service "@SRV_NAME@" does not exists'),
    "ACTION_BLOCKED": (
        ("ACTION_NAME", "SERVICE_NAME"),
        'Action "@ACTION_NAME@" in service "@SERVICE_NAME@" is blocked',
    ),
    "ACTION_DOES_NOT_EXISTS": (
        ("ACTION_NAME", "SERVICE_NAME"),
        'Action "@ACTION_NAME@" does not exists for service "@SERVICE_NAME@"',
    ),
    "MISSING_MANDATORY_PARAMETER": (("PARAM_NAME",), 'Missing parameter "@PARAM_NAME@"'),
    "INVALID_OBJECT_TYPE": (("INVALID_OBJ_TYPE",), 'Invalid object type "@INVALID_OBJ_TYPE@"'),
    "INTERNAL_SERVER_ERROR": ((), "Internal server error occurred"),
    "ENTRY_ID_NOT_FOUND": (("ENTRY_ID",), 'Entry id "@ENTRY_ID@" not found'),
    "ENTRY_ALREADY_WITH_CONTENT": ((), "Entry already associated with content"),
    "ENTRY_REPLACEMENT_ALREADY_EXISTS": ((), "Entry already in replacement"),
    "RESOURCE_TYPE_NOT_SUPPORTED": (("RES_TYPE",), 'Resource type "@RES_TYPE@" not supported'),
    "FLAVOR_ASSET_ID_NOT_FOUND": (("ID",), 'Flavor asset id "@ID@" not found'),
    "FLAVOR_ASSET_IS_NOT_READY": ((), "The flavor asset is not ready"),
    "ORIGINAL_FLAVOR_ASSET_IS_MISSING": ((), "The original flavor asset is missing"),
    "CAPTION_ASSET_ID_NOT_FOUND": (("ID",), 'Caption asset id "@ID@" not found'),
    "CAPTION_ASSET_IS_NOT_READY": ((), "Caption asset is not ready"),
    "INVALID_USER_ID": ((), "Invalid user id"),
    "UPLOAD_TOKEN_NOT_FOUND": ((), "Upload token not found"),
    "UPLOAD_TOKEN_INVALID_STATUS_FOR_UPLOAD": (
        (),
        "Upload token is in an invalid status for uploading a file, maybe the file was already uploaded",
    ),
    "UPLOAD_TOKEN_INVALID_STATUS_FOR_ADD_ENTRY": (
        (),
        "Upload token is in an invalid status for adding entry, maybe the a file was not uploaded or the token "
        "was used",
    ),
    "UPLOAD_TOKEN_CANNOT_RESUME": ((), "Cannot resume the upload, original file was not found"),
    "UPLOAD_TOKEN_CANNOT_MATCH_EXPECTED_SIZE": ((), "Failed to match expected file size"),
    "QUERY_EXCEEDED_MAX_MATCHES_ALLOWED": ((), "Unable to generate list. max matches value was reached"),
    "MUST_FILTER_ON_ENTRY_OR_CATEGORY": ((), "Must filter on entry id or category"),
}


class KalturaError(Exception):
    """An API error as the service reports it: HTTP 200 with an <error> in the result."""

    def __init__(self, code: str, *values: object, message: str | None = None) -> None:
        names, template = TEMPLATES.get(code, ((), f"Simulated error {code}"))
        self.code = code
        self.args_map = {name: str(values[i]) if i < len(values) else "N/A" for i, name in enumerate(names)}
        if message is None:
            message = template
            for name, value in self.args_map.items():
                message = message.replace(f"@{name}@", value)
        self.message = message
        super().__init__(f"{code}: {message}")
