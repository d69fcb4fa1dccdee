"""Keeping secrets out of logs, pages and stored text.

Secrets are the configured Kaltura secret, AWS keys, Django's signing key and database
password, and any Kaltura session (KS). `redact` replaces them in a text; the adapters
use it on every error message, the audit log on everything it stores, and
`install_log_redaction` (run at start-up) on every log record as it is made, so no log
handler (ours, RQ's or a test's) ever sees them.
"""

from __future__ import annotations

import logging
import re

from django.conf import settings

# Kaltura quotes the session in some error messages; a v2 KS is base64 of "v2|…".
KS_PATTERN = re.compile(r"djJ8[A-Za-z0-9_\-+/=|]+")
SECRET_SETTINGS = (
    "KALTURA_SECRET",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "SECRET_KEY",
    "EMAIL_HOST_PASSWORD",
    "OIDC_CLIENT_SECRET",
)
# Shorter values would be replaced inside ordinary words; no real secret is this short.
MIN_SECRET_LENGTH = 8
REDACTED = "<secret>"


def known_secrets() -> list[str]:
    values = [getattr(settings, name, "") or "" for name in SECRET_SETTINGS]
    values.append(settings.DATABASES.get("default", {}).get("PASSWORD") or "")
    return [value for value in values if len(value) >= MIN_SECRET_LENGTH]


def redact(text) -> str:
    """The text with any Kaltura session replaced by <ks> and the configured secrets by <secret>."""
    text = KS_PATTERN.sub("<ks>", str(text))
    for secret in known_secrets():
        text = text.replace(secret, REDACTED)
    return text


def install_log_redaction() -> None:
    """Redact every log record when it is made. A handler filter would miss handlers added by
    others; exception text is formatted here, once, redacted, and formatters reuse it."""
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "redacts_secrets", False):
        return

    def redacting_record_factory(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it itself when the record is emitted
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            clean = redact(text)
            if clean != text:
                record.exc_text = clean
        return record

    redacting_record_factory.redacts_secrets = True
    logging.setLogRecordFactory(redacting_record_factory)
