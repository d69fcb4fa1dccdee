"""Owner notices: warn the people whose videos a batch will archive, let them keep some, then run it.

A batch with a notice period (BatchNotice, made by a policy) is held once approved:
instead of being queued, a job sends each affected owner one e-mail listing their
entries, the date, what archiving means, and a signed link to a page where they can
keep entries without signing in. The link's token sits after "#", which browsers never send:
the page posts it (static/js/keep.js), so it stays out of web server logs. It works once, until
the notice period ends, and at most ARCHIVE_KEEP_LINK_MAX_DAYS. Kept entries get the tag
archive_exempt in Kaltura and leave the batch. When the period ends the scheduler previews the batch again on live
state (so anything exempted meanwhile drops out) and queues it.

States of a held batch: Batch APPROVED with notice.runs_after None (notices not sent) →
runs_after set (notices going out; the keep links work until then) → released_at set
(queued; Batch RUNNING). Each owner's notice is claimed (pending → sending) before the
e-mail goes, so a rerun never sends a second one.
"""

from __future__ import annotations

import logging
import smtplib
from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from archive_app import audit
from archive_app.archive import batches
from archive_app.lib.kaltura import Kaltura, KalturaError
from archive_app.lib.storage import ArchiveStore, StorageError
from archive_app.models import AuditEvent, Batch, BatchItem, BatchNotice, Entry, OwnerNotice
from archive_app.scheduling.exemptions import entry_exempt

log = logging.getLogger(__name__)

KEEP_SALT = "archive_app.scheduling.notices.keep"
# A claim older than this means the sending process died mid-send: the e-mail may or may not have gone.
STALE_SENDING = timedelta(minutes=15)
KEPT_REASON = "kept by its owner (tag archive_exempt)"
UNFINISHED_NOTICES = [OwnerNotice.Status.PENDING, OwnerNotice.Status.SENDING]


class NoticeError(Exception):
    """Some notices could not be sent for now (the mail server refused the connection, say)."""


def owner_username(owner_id: str) -> str:
    return f"owner:{owner_id}"[:150]


# --- holding an approved batch ----------------------------------------------------------


def hold_for_notice(batch: Batch) -> bool:
    """Called at the final approval: True if the batch waits for its notice period instead of running now."""
    notice = BatchNotice.objects.filter(batch=batch, notice_days__gt=0).first()
    if notice is None:
        return False
    audit.record(
        "batch_hold",
        batch=batch,
        dry_run=False,
        details={"notice_days": notice.notice_days},
        message=f"owners are warned {notice.notice_days} days before it runs",
    )
    transaction.on_commit(lambda: enqueue_send_notices(batch.pk))
    return True


def enqueue_send_notices(batch_id: int):
    import django_rq
    from rq import Retry

    from archive_app.jobs import send_notices_job

    return django_rq.get_queue("default").enqueue(
        send_notices_job,
        batch_id,
        retry=Retry(max=3, interval=[60, 300, 1800]),
        job_timeout=3600,
        description=f"batch {batch_id}: owner notices",
    )


def held_batches():
    return BatchNotice.objects.filter(
        notice_days__gt=0, released_at=None, batch__status=Batch.Status.APPROVED
    ).select_related("batch")


# --- sending ------------------------------------------------------------------------------


class KeepLinkExpired(Exception):
    """A genuine keep link past its end: the notice period, or ARCHIVE_KEEP_LINK_MAX_DAYS after it was sent."""


def keep_link_expiry(runs_after: datetime, now: datetime | None = None) -> datetime:
    return min(runs_after, (now or timezone.now()) + timedelta(days=settings.ARCHIVE_KEEP_LINK_MAX_DAYS))


def keep_token(batch_id: int, owner_id: str, expires: datetime) -> str:
    return signing.dumps({"b": batch_id, "o": owner_id, "x": int(expires.timestamp())}, salt=KEEP_SALT, compress=True)


def read_keep_token(token: str, now: datetime | None = None) -> tuple[int, str]:
    """(batch id, owner id) from a keep link; signing.BadSignature if forged or altered, KeepLinkExpired
    once past the end it carries or older than ARCHIVE_KEEP_LINK_MAX_DAYS (the setting as it is now)."""
    try:
        value = signing.loads(token, salt=KEEP_SALT, max_age=timedelta(days=settings.ARCHIVE_KEEP_LINK_MAX_DAYS))
    except signing.SignatureExpired:
        raise KeepLinkExpired from None
    if not isinstance(value, dict) or not isinstance(value.get("b"), int) or not isinstance(value.get("o"), str):
        raise signing.BadSignature("unexpected content")
    if not isinstance(value.get("x"), int):
        raise signing.BadSignature("no expiry")
    if (now or timezone.now()).timestamp() >= value["x"]:
        raise KeepLinkExpired
    return value["b"], value["o"]


def keep_url(batch_id: int, owner_id: str, expires: datetime) -> str:
    """The page, with the token after "#": never sent to the server, so never in its access log."""
    return f"{settings.ARCHIVE_SITE_URL}{reverse('keep_entries')}#{keep_token(batch_id, owner_id, expires)}"


def _group_by_owner(batch: Batch, kaltura: Kaltura) -> None:
    """Make one OwnerNotice per owner of the entries the batch will act on (owners read live)."""
    entry_ids = list(
        batch.items.filter(status=BatchItem.Status.PENDING, skip_reason="").values_list("entry_id", flat=True)
    )
    live = kaltura.entries_by_ids(entry_ids) if entry_ids else {}
    by_owner: dict[str, list[str]] = defaultdict(list)
    for entry_id in entry_ids:
        if entry_id in live:  # gone from Kaltura: the run will skip it anyway
            by_owner[live[entry_id].owner_id].append(entry_id)
    OwnerNotice.objects.bulk_create(
        [OwnerNotice(batch=batch, owner_id=owner, entry_ids=ids) for owner, ids in by_owner.items()],
        ignore_conflicts=True,
    )


def notice_message(notice: OwnerNotice, runs_after: datetime, email: str) -> EmailMessage:
    batch = notice.batch
    names = dict(Entry.objects.filter(id__in=notice.entry_ids).values_list("id", "name"))
    expires = keep_link_expiry(runs_after)
    context = {
        "owner_id": notice.owner_id,
        "entries": [{"id": entry_id, "name": names.get(entry_id, "")} for entry_id in notice.entry_ids],
        "runs_after": runs_after,
        "replace": batch.action != Batch.Action.ARCHIVE,
        "keep_url": keep_url(batch.pk, notice.owner_id, expires),
        "keep_until": expires,
    }
    count = len(notice.entry_ids)
    subject = (
        f"{count} of your Kaltura video{'s' if count != 1 else ''} will be archived on "
        f"{timezone.localtime(runs_after):%d %B %Y}"
    )
    body = render_to_string("archive_app/email/owner_notice.txt", context)
    return EmailMessage(subject=subject, body=body, to=[email])


def _finish_notice(notice: OwnerNotice, status: str, *, email: str = "", error: str = "") -> None:
    notice.status, notice.email, notice.error = status, email[:320], error[:1000]
    notice.sent_at = timezone.now() if status == OwnerNotice.Status.SENT else None
    notice.save(update_fields=["status", "email", "error", "sent_at"])
    outcome = AuditEvent.Outcome.OK if status == OwnerNotice.Status.SENT else AuditEvent.Outcome.FAILED
    audit.record(
        "owner_notice",
        batch=notice.batch,
        dry_run=False,
        outcome=outcome,
        message=error or f"sent to {email}",
        details={"owner": notice.owner_id, "email": email, "status": status, "entries": notice.entry_ids},
    )


def send_notices(batch_id: int, *, kaltura: Kaltura | None = None, now: datetime | None = None) -> dict:
    """Send every owner of a held batch their one notice. Safe to rerun: sent notices are never sent again."""
    now = now or timezone.now()
    notice = BatchNotice.objects.select_related("batch").get(pk=batch_id)
    batch = notice.batch
    if batch.status != Batch.Status.APPROVED or notice.released_at is not None or notice.notice_days == 0:
        return {"skipped": f"batch {batch_id} is not waiting for its notice period"}
    kaltura = kaltura or Kaltura.from_settings()
    # The date is set when the notices go out, so owners have the whole period; while nobody has been
    # told it yet (the mail server was down, say) it moves with each attempt.
    told = batch.owner_notices.filter(
        status__in=[OwnerNotice.Status.SENT, OwnerNotice.Status.SENDING, OwnerNotice.Status.UNCONFIRMED]
    )
    if notice.runs_after is None or not told.exists():
        BatchNotice.objects.filter(pk=batch_id, released_at=None).update(
            runs_after=now + timedelta(days=notice.notice_days)
        )
    notice.refresh_from_db()
    if not batch.owner_notices.exists():
        _group_by_owner(batch, kaltura)
    OwnerNotice.objects.filter(
        batch=batch, status=OwnerNotice.Status.SENDING, claimed_at__lt=now - STALE_SENDING
    ).update(status=OwnerNotice.Status.UNCONFIRMED, error="sending was interrupted; the e-mail may not have gone")

    counts: dict[str, int] = defaultdict(int)
    retry_later = []
    for owner_notice in batch.owner_notices.filter(status=OwnerNotice.Status.PENDING):
        claimed = OwnerNotice.objects.filter(pk=owner_notice.pk, status=OwnerNotice.Status.PENDING).update(
            status=OwnerNotice.Status.SENDING, claimed_at=timezone.now()
        )
        if claimed != 1:
            continue  # another worker has it
        owner_notice.batch = batch
        status, email, error = _send_one(owner_notice, notice.runs_after, kaltura)
        if status == OwnerNotice.Status.PENDING:
            OwnerNotice.objects.filter(pk=owner_notice.pk).update(status=status, error=error[:1000], claimed_at=None)
            retry_later.append(f"{owner_notice.owner_id}: {error}")
        else:
            _finish_notice(owner_notice, status, email=email, error=error)
        counts[status] += 1
    if retry_later:
        raise NoticeError(f"{len(retry_later)} notices not sent yet ({retry_later[0]}); retrying later")
    if not batch.owner_notices.filter(status__in=UNFINISHED_NOTICES).exists():
        BatchNotice.objects.filter(pk=batch_id, notices_sent_at=None).update(notices_sent_at=timezone.now())
    return dict(counts)


def _send_one(owner_notice: OwnerNotice, runs_after: datetime, kaltura: Kaltura) -> tuple[str, str, str]:
    """(status, address, error) for one owner; PENDING means try again later."""
    if not owner_notice.owner_id:
        return OwnerNotice.Status.MISSING, "", "these entries have no owner in Kaltura"
    try:
        email = kaltura.user_email(owner_notice.owner_id)
    except KalturaError as exc:
        if exc.code == "INVALID_USER_ID":
            return OwnerNotice.Status.MISSING, "", f"no Kaltura user {owner_notice.owner_id}"
        if exc.transient:
            return OwnerNotice.Status.PENDING, "", f"Kaltura: {exc}"
        return OwnerNotice.Status.MISSING, "", f"cannot read the Kaltura user: {exc}"
    if not email:
        return OwnerNotice.Status.MISSING, "", "the Kaltura user has no e-mail address"
    try:
        validate_email(email)
    except ValidationError:
        return OwnerNotice.Status.MISSING, email, f"not an e-mail address: {email}"
    try:
        notice_message(owner_notice, runs_after, email).send()
    except smtplib.SMTPRecipientsRefused as exc:
        return OwnerNotice.Status.REFUSED, email, f"the mail server refused the address: {exc.recipients}"
    except (smtplib.SMTPException, OSError) as exc:
        return OwnerNotice.Status.PENDING, email, f"mail server: {type(exc).__name__}: {exc}"
    return OwnerNotice.Status.SENT, email, ""


# --- keeping entries ----------------------------------------------------------------------


class KeepRefused(Exception):
    """The link no longer allows keeping (used already, the batch ran, was cancelled, or the period ended)."""


def keep_window_open(notice: BatchNotice, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return (
        notice.batch.status == Batch.Status.APPROVED
        and notice.released_at is None
        and notice.runs_after is not None
        and now < notice.runs_after
    )


def keep_entries(owner_notice: OwnerNotice, entry_ids: list[str], *, kaltura: Kaltura | None = None) -> list[str]:
    """Exempt these of the owner's entries and take them out of the batch; returns the ids kept.

    Only entries listed in this owner's notice, still owned by them in Kaltura, and still
    waiting in a batch whose notice period has not ended. The link is spent once it has kept
    something (OwnerNotice.keep_used_at); asking for nothing, or for nothing keepable, leaves it usable.
    """
    wanted = [entry_id for entry_id in dict.fromkeys(entry_ids) if entry_id in set(owner_notice.entry_ids)]
    if not wanted:
        return []
    kaltura = kaltura or Kaltura.from_settings()
    live = kaltura.entries_by_ids(wanted)
    owner = owner_notice.owner_id
    kept = []
    with transaction.atomic():
        # Locked, so the scheduler cannot queue the batch between this check and the change.
        notice = BatchNotice.objects.select_for_update().select_related("batch").get(pk=owner_notice.batch_id)
        if not keep_window_open(notice):
            raise KeepRefused("the notice period has ended")
        if OwnerNotice.objects.filter(pk=owner_notice.pk).exclude(keep_used_at=None).exists():
            raise KeepRefused("this link has been used already")
        for entry_id in wanted:
            if entry_id not in live or live[entry_id].owner_id != owner:
                continue
            item = BatchItem.objects.filter(
                batch_id=notice.pk, entry_id=entry_id, status=BatchItem.Status.PENDING
            ).first()
            if item is None:
                continue
            entry_exempt(
                entry_id,
                kaltura=kaltura,
                username=owner_username(owner),
                batch=notice.batch,
                reason="kept by its owner from the notice",
            )
            item.status, item.skip_reason, item.message = BatchItem.Status.SKIPPED, KEPT_REASON, KEPT_REASON
            item.finished_at = timezone.now()
            item.save(update_fields=["status", "skip_reason", "message", "finished_at"])
            audit.record(
                "owner_keep",
                username=owner_username(owner),
                entry_id=entry_id,
                batch=notice.batch,
                dry_run=False,
                outcome=AuditEvent.Outcome.SKIPPED,
                message=KEPT_REASON,
            )
            kept.append(entry_id)
        if kept:
            OwnerNotice.objects.filter(pk=owner_notice.pk).update(keep_used_at=timezone.now())
    return kept


# --- releasing when the period ends -------------------------------------------------------


def due_for_release(now: datetime | None = None):
    now = now or timezone.now()
    return held_batches().filter(runs_after__lte=now, notices_sent_at__isnull=False)


def release_due_batches(
    *,
    now: datetime | None = None,
    execute: bool = False,
    kaltura: Kaltura | None = None,
    store: ArchiveStore | None = None,
) -> list[dict]:
    """Queue held batches whose notice period has ended, after a fresh preview on live state."""
    now = now or timezone.now()
    results = []
    for notice in due_for_release(now):
        batch = notice.batch
        result = {"batch": batch.pk, "runs_after": notice.runs_after.isoformat()}
        if not execute:
            audit.record("batch_release", batch=batch, dry_run=True, details=result)
            results.append(result)
            continue
        kaltura = kaltura or Kaltura.from_settings()
        store = store or ArchiveStore.from_settings()
        try:
            # Live state decides: entries exempted, played or changed during the notice drop out here.
            batches.batch_preview(batch, user=None, kaltura=kaltura, store=store)
        except (KalturaError, StorageError) as exc:
            result["error"] = f"the preview could not read the live state: {exc}; trying again next time"
            results.append(result)
            continue
        with transaction.atomic():
            locked = BatchNotice.objects.select_for_update().get(pk=notice.pk)
            if locked.released_at is not None or Batch.objects.get(pk=batch.pk).status != Batch.Status.APPROVED:
                continue
            locked.released_at = now
            locked.save(update_fields=["released_at"])
            result["queued"] = batches.batch_enqueue(batch)
            audit.record("batch_release", batch=batch, dry_run=False, details=result)
        results.append(result)
    return results


def resend_unfinished(*, execute: bool = False) -> list[int]:
    """Held batches whose notices have not all gone out (a worker died, the mail server was down)."""
    batch_ids = list(held_batches().filter(notices_sent_at=None).values_list("pk", flat=True))
    if execute:
        for batch_id in batch_ids:
            enqueue_send_notices(batch_id)
    return batch_ids
