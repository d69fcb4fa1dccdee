"""Personal data in stored text: e-mail addresses and IP addresses (audit events hold both).

Archive admins see them; everyone else (librarians) sees them masked, in pages and exports alike.
IP addresses are kept only ARCHIVE_AUDIT_IP_RETENTION_DAYS (audit.blank_old_addresses).
Found by their shape wherever they are (a detail, a message, a user name), so a new event that
quotes one is covered without a list of field names to keep up to date.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

SEES_PERSONAL_DATA = "archive_app.manage_archive"  # the Archive admins' permission

EMAIL_RE = re.compile(
    r"(?P<local>[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+)@(?P<domain>[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+)"
)
# Candidates only: each is checked by the ipaddress module, so "14:02:28" or "1.2.3" stay as they are.
IP_CANDIDATE_RE = re.compile(
    r"(?<![\w.:])(?:\d{1,3}(?:\.\d{1,3}){3}|(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}))"
    r"(?![\w:]|\.\d)"
)


def sees_personal_data(user) -> bool:
    return user.has_perm(SEES_PERSONAL_DATA)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _mask_ip(match: re.Match) -> str:
    address = _ip(match.group(0))
    if address is None:
        return match.group(0)
    if address.version == 4:
        return ".".join(match.group(0).split(".")[:2] + ["*", "*"])
    return ":".join(group.lstrip("0") or "0" for group in address.exploded.split(":")[:2]) + ":*"


def _mask_email(match: re.Match) -> str:
    return f"{match.group('local')[0]}***@{match.group('domain')}"


def _walk(value: Any, change) -> Any:
    if isinstance(value, dict):
        return {key: _walk(item, change) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(item, change) for item in value]
    if isinstance(value, str):
        return change(value)
    return value


def _mask_text(text: str) -> str:
    if "@" in text:
        text = EMAIL_RE.sub(_mask_email, text)
    if "." in text or ":" in text:  # every IP address has one; most texts have neither (a page is 100 rows)
        text = IP_CANDIDATE_RE.sub(_mask_ip, text)
    return text


def masked(value: Any) -> Any:
    """The value (text, or a JSON-like structure) with e-mail addresses as j***@example.edu and IP
    addresses as 192.0.*.* (IPv6: its first two groups)."""
    return _walk(value, _mask_text)


def masked_for(user, value: Any) -> Any:
    return value if sees_personal_data(user) else masked(value)


def without_ips(value: Any) -> Any:
    """The value with every IP address removed (blanked in place: the text around it stays)."""
    return _walk(value, lambda text: IP_CANDIDATE_RE.sub(lambda m: "" if _ip(m.group(0)) else m.group(0), text))
