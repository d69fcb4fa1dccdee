"""Writing audit events: one per preview and per executed step, real or dry run."""

from __future__ import annotations

from typing import Any

from archive_app.models import AuditEvent
from archive_app.redaction import redact

SYSTEM_USERNAME = "system"


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    if isinstance(value, str):
        return redact(value)  # never stored: Kaltura sessions and the configured secrets
    return value


def record(
    action: str,
    *,
    user=None,
    username: str | None = None,
    entry_id: str = "",
    batch=None,
    dry_run: bool,
    outcome: str = AuditEvent.Outcome.OK,
    message: str = "",
    details: dict | None = None,
) -> AuditEvent:
    if username is None:
        username = user.get_username() if user is not None else SYSTEM_USERNAME
    return AuditEvent.objects.create(
        user=user,
        username=username,
        action=action,
        entry_id=entry_id,
        batch=batch,
        dry_run=dry_run,
        outcome=outcome,
        message=_scrub(message)[:1000],
        details=_scrub(details or {}),
    )


def record_many(events: list[dict], *, dry_run: bool, username: str = SYSTEM_USERNAME) -> int:
    """Many events of one run at once (the fixity audit writes one per copy): each dict has `action` and any of
    entry_id, outcome, message, details; scrubbed as `record` does."""
    AuditEvent.objects.bulk_create(
        [
            AuditEvent(
                username=username,
                action=event["action"],
                entry_id=event.get("entry_id", ""),
                dry_run=dry_run,
                outcome=event.get("outcome", AuditEvent.Outcome.OK),
                message=_scrub(event.get("message", ""))[:1000],
                details=_scrub(event.get("details") or {}),
            )
            for event in events
        ],
        batch_size=1000,
    )
    return len(events)
