"""Keeping secrets out of logs, pages and stored text.

Secrets are the configured Kaltura secret, AWS keys, Django's signing key and database
password, and any Kaltura session (KS). `redact` replaces them in a text; the adapters
use it on every error message, the audit log on everything it stores, and
`install_log_redaction` (run at start-up) on every log record as it is made, so no log
handler (ours, RQ's or a test's) ever sees them.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
import re

from django.conf import settings


def _hex_signature_classes() -> list[str]:
    """Regex classes of the four characters base64 makes of any three lower-case hex digits."""
    positions: list[set[str]] = [set(), set(), set(), set()]
    for digits in itertools.product(b"0123456789abcdef", repeat=3):
        for position, char in zip(positions, base64.b64encode(bytes(digits)).decode(), strict=True):
            position.add(char)
    return ["[" + re.escape("".join(sorted(chars))) + "]" for chars in positions]


# A base64 character, also as a URL (or twice URL) encodes it, and the alphabet of URL-safe base64.
_B64_CHAR = r"(?:[A-Za-z0-9+/=_\-]|%(?:25)?(?:2[BbFf]|3[Dd]))"
_HEX_GROUP = "".join(_hex_signature_classes())
# A v2 KS is base64 of "v2|partner|…" (so it begins djJ8); it may carry "|" and, URL-encoded, %7C.
_KS_V2 = r"djJ8(?:" + _B64_CHAR + r"|\||%(?:25)?7[Cc])+"
# A v1 KS is base64 of "<sha1 hex of secret+fields>|partner;partner;expiry;type;rand;user;privileges":
# 13 groups of hex digits, then the 40th digit and the "|" (kaltura/server kSessionBase::generateSession).
_KS_V1 = r"(?:" + _HEX_GROUP + r"){13}" + _HEX_GROUP[: _HEX_GROUP.index("]") + 1] + r"[HXn3]" + _B64_CHAR + "+"
KS_PATTERN = re.compile(f"{_KS_V2}|{_KS_V1}")
# Wherever a URL or a request names the session, whatever its format: .../ks/<ks>/..., ?ks=<ks>, "ks": "<ks>".
KS_IN_URL_PATTERN = re.compile(r"(?i)(/ks/|%2Fks%2F|[?&;]ks=|\bks[\"']?\s*[:=]\s*[\"']?)[^/?#&\s\"'<>,;}]+")
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


def _is_v1_session(match: re.Match) -> bool:
    """A v2 prefix, or a v1 head that decodes to 40 hex digits and "|" (not chance letters)."""
    head = match.group(0)
    if head.startswith("djJ8"):
        return True
    try:
        decoded = base64.b64decode(head[:56], validate=True)
    except (binascii.Error, ValueError):
        return False
    return bool(re.fullmatch(rb"[0-9a-f]{40}\|.", decoded, re.DOTALL))


def known_secrets() -> list[str]:
    values = [getattr(settings, name, "") or "" for name in SECRET_SETTINGS]
    values.append(settings.DATABASES.get("default", {}).get("PASSWORD") or "")
    return [value for value in values if len(value) >= MIN_SECRET_LENGTH]


def redact(text) -> str:
    """The text with any Kaltura session replaced by <ks> and the configured secrets by <secret>."""
    text = KS_PATTERN.sub(lambda match: "<ks>" if _is_v1_session(match) else match.group(0), str(text))
    text = KS_IN_URL_PATTERN.sub(lambda match: match.group(1) + "<ks>", text)
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
