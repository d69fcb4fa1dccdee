"""Writing audit events: one per preview and per executed step, real or dry run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from archive_app.lib.redaction import redact
from archive_app.models import AuditEvent

SYSTEM_USERNAME = "system"
IP_RETENTION_ACTION = "audit_blank_addresses"
# Details every event recorded in this context carries (who ran a command, from where).
_context_details: ContextVar[dict | None] = ContextVar("audit_context_details", default=None)


@contextmanager
def details_for_every_event(**details) -> Iterator[None]:
    """Add these details to every event recorded inside the block (a command's OS user and host)."""
    token = _context_details.set({**context_details(), **details})
    try:
        yield
    finally:
        _context_details.reset(token)


def context_details() -> dict:
    return dict(_context_details.get() or {})


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    if isinstance(value, str):
        return redact(value)  # never stored: Kaltura sessions and the configured secrets
    return value


def event_row(
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
) -> dict:
    """An event's row {field attname: value}, as every event is written: secrets redacted, the context's details
    (a command's OS user and host) added. One place for `record` and for bulk inserts (bulk.create)."""
    if username is None:
        username = user.get_username() if user is not None else SYSTEM_USERNAME
    return {
        "user_id": user.pk if user is not None else None,
        "username": username,
        "action": action,
        "entry_id": entry_id,
        "batch_id": batch.pk if batch is not None else None,
        "dry_run": dry_run,
        "outcome": outcome,
        "message": _scrub(message)[:1000],
        "details": _scrub({**context_details(), **(details or {})}),
    }


def record(action: str, *, user=None, batch=None, **fields) -> AuditEvent:
    """Write one event (the arguments of event_row)."""
    row = event_row(action, user=user, batch=batch, **fields)
    return AuditEvent.objects.create(**{**row, "user": user, "batch": batch})


def blank_old_addresses(*, now: datetime | None = None) -> dict:
    """Blank the IP addresses of events older than ARCHIVE_AUDIT_IP_RETENTION_DAYS, in place.

    Each run records how far it went ("before"); the next reads only the events between that and
    its own limit, so the log is read once, not every day. One transaction: a run cut short
    leaves nothing half done, and the rerun does it all again.
    """
    now = now or timezone.now()
    before = now - timedelta(days=settings.ARCHIVE_AUDIT_IP_RETENTION_DAYS)
    last_run = AuditEvent.objects.filter(action=IP_RETENTION_ACTION, dry_run=False).order_by("-id").first()
    since = parse_datetime(last_run.details.get("before", "")) if last_run else None
    events = AuditEvent.objects.filter(created_at__lt=before).order_by("id")
    if since is not None:
        events = events.filter(created_at__gte=since)
    with transaction.atomic():
        blanked = sum(event.blank_addresses() for event in events.only("id", "message", "details").iterator(2000))
        details = {"before": before.isoformat(), "since": since.isoformat() if since else None, "events": blanked}
        record(
            IP_RETENTION_ACTION,
            dry_run=False,
            details=details,
            message=f"IP addresses removed from {blanked} events older than "
            f"{settings.ARCHIVE_AUDIT_IP_RETENTION_DAYS} days",
        )
    return details


def record_many(events: list[dict], *, dry_run: bool, username: str = SYSTEM_USERNAME) -> int:
    """Many events of one run at once (the fixity audit writes one per copy): each dict has `action` and any of
    entry_id, outcome, message, details; each row built by event_row, as `record` builds one."""
    rows = [event_row(event.pop("action"), username=username, dry_run=dry_run, **event) for event in map(dict, events)]
    AuditEvent.objects.bulk_create([AuditEvent(**row) for row in rows], batch_size=1000)
    return len(rows)
