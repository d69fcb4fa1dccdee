"""Legal holds (issue 15): an archive admin freezes an entry. While held, every plan (archive, replace, restore)
refuses it with the hold's plain reason (workflow.LiveState.legal_hold), and its copies' S3 versions carry an
Object Lock legal hold where the bucket has Object Lock, so not even the bucket's own credentials delete them.
Placing and releasing are audit events."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from archive_app import audit
from archive_app.lib.storage import ArchiveStore, StorageError
from archive_app.models import ArchiveCopy, AuditEvent, LegalHold

PLACE_ACTION = "legal_hold"
RELEASE_ACTION = "legal_hold_release"


class HoldError(Exception):
    """Bad input to a hold (no reason, already held, not held): nothing changed."""


def _s3_holds(entry_id: str, on: bool, store: ArchiveStore | None) -> list[str]:
    """Set the Object Lock legal hold on every copy's version; what could not be set, in words."""
    notes = []
    copies = list(ArchiveCopy.objects.filter(entry_id=entry_id))
    if not copies:
        return []
    try:
        store = store or ArchiveStore.from_settings()
    except Exception as exc:  # ImproperlyConfigured: the hold in the app still stands
        return [f"S3 not configured: the hold is in the app only ({exc})"]
    for copy in copies:
        try:
            store.set_legal_hold(copy.key, copy.version_id or None, on)
        except StorageError as exc:
            notes.append(f"s3://{copy.bucket}/{copy.key}: no S3 legal hold ({exc.code}); held in the app only")
    return notes


def hold_place(entry_id: str, *, user, reason: str, store: ArchiveStore | None = None) -> LegalHold:
    reason = reason.strip()
    if not reason:
        raise HoldError("Say why the entry is held (a case, a request): the reason is shown wherever it is refused.")
    try:
        with transaction.atomic():
            hold = LegalHold.objects.create(entry_id=entry_id, reason=reason[:500], placed_by=user)
    except IntegrityError:
        raise HoldError(f"{entry_id} is already under legal hold.") from None
    notes = _s3_holds(entry_id, True, store)
    audit.record(
        PLACE_ACTION,
        user=user,
        entry_id=entry_id,
        dry_run=False,
        message=f"legal hold placed: {reason}",
        details={"reason": reason, "s3": notes or "Object Lock legal hold set on every copy"},
    )
    return hold


def hold_release(entry_id: str, *, user, store: ArchiveStore | None = None) -> None:
    hold = LegalHold.objects.filter(entry_id=entry_id).first()
    if hold is None:
        raise HoldError(f"{entry_id} is not under legal hold.")
    notes = _s3_holds(entry_id, False, store)
    hold.delete()
    audit.record(
        RELEASE_ACTION,
        user=user,
        entry_id=entry_id,
        dry_run=False,
        outcome=AuditEvent.Outcome.OK,
        message=f"legal hold released (was: {hold.reason})",
        details={
            "reason": hold.reason,
            "placed_by": hold.placed_by.get_username(),
            "placed_at": hold.placed_at.isoformat(),
            "s3": notes,
        },
    )
