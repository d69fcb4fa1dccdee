"""Batches: create from a selection, preview (the dry run), approve, enqueue, and execute one item.

An item runs through the runner (archive_app/archive/runner.py): claimed with its token together with the entry's
lock, so no other batch item or restore works on the entry meanwhile; every write fenced by the token; named
steps that each read live state first, so a rerun after a crash at any line converges.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from archive_app import audit, queue
from archive_app.archive import runner
from archive_app.archive.sidecar import write_sidecar
from archive_app.archive.workflow import (
    Plan,
    PlanSettings,
    plan_for,
    read_live_states,
    replace_refusal,
    sizes_agree,
    with_progress,
)
from archive_app.lib import bulk
from archive_app.lib.kaltura import Kaltura, KalturaError
from archive_app.lib.redaction import redact
from archive_app.lib.storage import ArchiveStore, HashingReader, StorageError
from archive_app.models import (
    TAG_ARCHIVED,
    TAG_REPLACED,
    ArchiveCopy,
    ArchiveState,
    AuditEvent,
    Batch,
    BatchItem,
    BatchNotice,
    Entry,
    EntryLock,
    MediaType,
)

log = logging.getLogger(__name__)


class BatchError(Exception):
    """A request about a batch that cannot be honoured (too large, wrong state, not allowed)."""


# --- creating, previewing, approving ----------------------------------------------------


def batch_create(
    *,
    user,
    action: str,
    entry_ids: list[str],
    filter_query: str = "",
    preview: bool = False,
    kaltura: Kaltura | None = None,
    store: ArchiveStore | None = None,
) -> Batch:
    """A draft batch of these entries. With `preview`, every entry's plan is computed from live Kaltura and
    S3 state first (as batch_preview does) and each item is inserted once, with its plan and its audit event.
    """
    entry_ids = list(dict.fromkeys(entry_ids))
    if not entry_ids:
        raise BatchError("the selection is empty")
    limit = settings.ARCHIVE_MAX_BATCH_SIZE
    if len(entry_ids) > limit:
        raise BatchError(
            f"the selection has {len(entry_ids):,} entries; a batch may have at most {limit:,} "
            "(narrow the filter, or raise ARCHIVE_MAX_BATCH_SIZE)"
        )
    # Read live state before the transaction: Kaltura and S3 may take seconds, and nothing needs the rows yet.
    plans = _plan_entries(action, entry_ids, kaltura, store) if preview else {}
    with transaction.atomic():
        batch = Batch.objects.create(action=action, created_by=user, filter_query=filter_query[:4000])
        items: list[dict[str, Any]] = [{"batch_id": batch.pk, "entry_id": entry_id} for entry_id in entry_ids]
        if plans:
            for item in items:
                item.update(_plan_fields(plans[item["entry_id"]]))
        bulk.create(BatchItem, items)
        audit.record(
            "batch_create", user=user, batch=batch, dry_run=True, details={"entries": len(entry_ids), "action": action}
        )
        bulk.create(AuditEvent, preview_events(batch, batch.action, plans.values(), user))
    return batch


@dataclass
class PreviewTotals:
    entries: int = 0
    to_process: int = 0
    skipped: int = 0
    bytes_to_copy: int = 0
    bytes_freed: int = 0
    skips_by_reason: dict[str, int] = field(default_factory=dict)


def _plan_entries(
    action: str, entry_ids: list[str], kaltura: Kaltura | None, store: ArchiveStore | None, progress=None
) -> dict[str, Plan]:
    """Each entry's plan from live Kaltura and S3 state, read in bulk (the dry run); `progress`: what retried
    items had asked of Kaltura, by entry id."""
    kaltura = kaltura or Kaltura.from_settings()
    store = store or ArchiveStore.from_settings()
    states = read_live_states(entry_ids, kaltura, store)
    for entry_id, done in (progress or {}).items():
        states[entry_id] = with_progress(states[entry_id], done)
    plan_settings = PlanSettings.from_settings(timezone.now())
    plans = {entry_id: plan_for(action, states[entry_id], plan_settings) for entry_id in entry_ids}
    return {
        entry_id: dataclasses.replace(plan, identity=states[entry_id].identity()) if plan.skipped else plan
        for entry_id, plan in plans.items()
    }


def _plan_fields(plan: Plan) -> dict:
    return {
        "planned_steps": plan.step_names,
        "skip_reason": plan.skip_reason,
        "bytes_to_copy": plan.bytes_to_copy,
        "bytes_freed": plan.bytes_freed,
    }


def preview_events(batch: Batch | None, action: str, plans: Iterable[Plan], user) -> list[dict]:
    """The preview's audit events, one per entry, as rows for bulk.create (written as audit.record writes)."""
    return [
        audit.event_row(
            f"preview_{action}",
            user=user,
            entry_id=plan.entry_id,
            batch=batch,
            dry_run=True,
            outcome=AuditEvent.Outcome.SKIPPED if plan.skipped else AuditEvent.Outcome.OK,
            message=plan.summary(),
            details={"steps": plan.step_names, "skip_reason": plan.skip_reason, **plan.identity},
        )
        for plan in plans
    ]


def batch_preview(batch: Batch, *, user, kaltura: Kaltura | None = None, store: ArchiveStore | None = None) -> dict:
    """Compute every pending item's plan from live Kaltura and S3 state, store it, and audit it as a dry run."""
    items = list(batch.items.filter(status=BatchItem.Status.PENDING))
    progress = {item.entry_id: item.progress for item in items if item.progress}
    plans = _plan_entries(batch.action, [item.entry_id for item in items], kaltura, store, progress)
    for item in items:
        for name, value in _plan_fields(plans[item.entry_id]).items():
            setattr(item, name, value)
    with transaction.atomic():
        # Pending items have started nothing and nothing refers to them: writing them anew is one
        # insert, where bulk_update would be a CASE per row and field (seconds for thousands).
        BatchItem.objects.filter(id__in=[item.id for item in items], status=BatchItem.Status.PENDING).delete()
        for item in items:
            item.pk = None
        BatchItem.objects.bulk_create(items, batch_size=500)
        bulk.create(AuditEvent, preview_events(batch, batch.action, plans.values(), user))
    return plans


def preview_totals(batch: Batch) -> PreviewTotals:
    totals = PreviewTotals()
    rows = batch.items.values("skip_reason").annotate(
        n=Count("id"), to_copy=Sum("bytes_to_copy"), freed=Sum("bytes_freed")
    )
    for row in rows:
        totals.entries += row["n"]
        if row["skip_reason"]:
            totals.skipped += row["n"]
            totals.skips_by_reason[row["skip_reason"]] = row["n"]
        else:
            totals.to_process += row["n"]
            totals.bytes_to_copy += row["to_copy"] or 0
            totals.bytes_freed += row["freed"] or 0
    return totals


def batch_approve(batch: Batch, *, user) -> Batch:
    """Approve (or second-approve) a previewed batch; the last approval enqueues it after commit."""
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=batch.pk)
        if batch.status != Batch.Status.DRAFT:
            raise BatchError(f"batch {batch.pk} is {batch.get_status_display()}, not awaiting approval")
        if batch.approved_by_id is None:
            batch.approved_by, batch.approved_at = user, timezone.now()
            needs_second = settings.ARCHIVE_REQUIRE_SECOND_APPROVAL
        else:
            if batch.approved_by_id == user.pk:
                raise BatchError("a second librarian must give the second approval")
            batch.second_approved_by = user
            needs_second = False
        if not needs_second:
            batch.status = Batch.Status.APPROVED
        batch.save()
        audit.record("batch_approve", user=user, batch=batch, dry_run=False, details={"final": not needs_second})
        # A batch with a notice period waits for it; the scheduler queues it afterwards.
        if not needs_second and not hold_for_notice(batch):
            batch_enqueue(batch)
    return batch


def hold_for_notice(batch: Batch) -> bool:
    """Called at the final approval: True if the batch waits for its notice period instead of running now.

    The rest of a held batch's life (the owners' notices, the keep links, the release) is in notices.py.
    """
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
    queue.send_notices(batch.pk)
    return True


def batch_enqueue(batch: Batch, items=None) -> int:
    """Queue the batch's runnable items; the jobs start only once this transaction commits."""
    items = list(items if items is not None else batch.items.filter(status=BatchItem.Status.PENDING))
    runnable = []
    for item in items:
        if item.skip_reason and item.status == BatchItem.Status.PENDING:
            item.status, item.finished_at = BatchItem.Status.SKIPPED, timezone.now()
            item.message = item.skip_reason
        else:
            item.status, item.job_id, item.message = BatchItem.Status.QUEUED, uuid.uuid4().hex, ""
            runnable.append(item)
    BatchItem.objects.bulk_update(items, ["status", "finished_at", "message", "job_id"], 500)
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.RUNNING)

    queue.batch_items(runnable)
    if not runnable:
        refresh_batch_status(batch.pk)
    return len(runnable)


def batch_cancel(batch: Batch, *, user) -> int:
    """Cancel the items that have not started, and those waiting for Kaltura; running ones finish their entry.

    A waiting item's job finds its claim gone when it comes back (Superseded) and stops; a replacement it had
    already sent may still finish in Kaltura, behind the verified copy that was required before sending it.
    """
    with transaction.atomic():
        cancelled = batch.items.filter(status__in=[BatchItem.Status.PENDING, BatchItem.Status.QUEUED]).update(
            status=BatchItem.Status.CANCELLED, finished_at=timezone.now(), message="cancelled"
        )
        waiting = list(batch.items.filter(status=BatchItem.Status.WAITING).values_list("id", flat=True))
        cancelled += BatchItem.objects.filter(id__in=waiting, status=BatchItem.Status.WAITING).update(
            status=BatchItem.Status.CANCELLED,
            finished_at=timezone.now(),
            job_id="",
            message="cancelled while waiting for Kaltura; a replacement already sent may still finish there",
        )
        EntryLock.objects.filter(holder__in=[runner.holder(ITEMS, pk) for pk in waiting]).delete()
        # APPROVED and not running: held for its owners' notice period.
        if batch.status in (Batch.Status.DRAFT, Batch.Status.APPROVED):
            Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.CANCELLED)
        audit.record("batch_cancel", user=user, batch=batch, dry_run=False, details={"items": cancelled})
    refresh_batch_status(batch.pk)
    return cancelled


def batch_retry_failed(batch: Batch, *, user, kaltura: Kaltura | None = None, store: ArchiveStore | None = None) -> int:
    """Queue the failed (and errored) items again, after a fresh preview: their state has moved on since.

    Only items that have ended are touched (a conditional update on their status): an item that a job or an
    RQ retry is running is RUNNING or WAITING, never FAILED, so a retry can never reset it under the job.
    """
    release_stale_items(batch)
    failed_ids = list(batch.items.filter(status__in=BatchItem.RETRYABLE).values_list("id", flat=True))
    if not failed_ids:
        return 0
    for item in BatchItem.objects.filter(id__in=failed_ids, status__in=BatchItem.RETRYABLE):
        # What Kaltura was asked stays known: a replacement it finished after the item gave up is then
        # recognised as ours (and finished), never taken for new content.
        kept = {key: item.progress[key] for key in ("replace_requested", "replaced_from") if key in item.progress}
        BatchItem.objects.filter(pk=item.pk, status__in=BatchItem.RETRYABLE).update(
            status=BatchItem.Status.PENDING, skip_reason="", progress=kept, job_id=""
        )
    batch_preview(batch, user=user, kaltura=kaltura, store=store)
    with transaction.atomic():
        audit.record("batch_retry", user=user, batch=batch, dry_run=False, details={"items": len(failed_ids)})
        return batch_enqueue(batch)


def release_stale_items(batch: Batch) -> int:
    """Fail items whose worker died: running past their job's time limit, or waiting far too long.

    A killed job normally comes back through RQ's retry with the same claim token; once
    its retries are spent nothing else would release the claim, and the entry would be
    blocked for every other batch.
    """
    now = timezone.now()
    stale = [
        item.id
        for item in batch.items.filter(status__in=BatchItem.ACTIVE).only("bytes_to_copy", "heartbeat_at", "status")
        if item.heartbeat_at is None
        or item.heartbeat_at < now - timedelta(seconds=queue.job_timeout_seconds(item.bytes_to_copy) * 4 + 600)
    ]
    if stale:
        with transaction.atomic():
            BatchItem.objects.filter(id__in=stale, status__in=BatchItem.ACTIVE).update(
                status=BatchItem.Status.FAILED,
                message="the worker stopped without finishing (killed or crashed); retry to continue",
                finished_at=now,
            )
            EntryLock.objects.filter(holder__in=[runner.holder(ITEMS, pk) for pk in stale]).delete()
    return len(stale)


def fail_unclaimed_item(item_id: int, token: str, error: str) -> bool:
    """The item's job failed for good before it claimed the item: FAILED with the error (audited), so the batch
    ends and a retry may queue it again. An item its job did claim is the runner's (or release_stale_items')."""
    message = redact(f"the job failed before it started: {error}; retry to run it again")[:4000]
    ended = BatchItem.objects.filter(pk=item_id, job_id=token, status=BatchItem.Status.QUEUED).update(
        status=BatchItem.Status.FAILED, message=message, finished_at=timezone.now()
    )
    if ended:
        item = ITEMS.load(item_id)
        audit.record(
            ITEMS.audit_action(item, "failed"),
            user=ITEMS.user(item),
            entry_id=item.entry_id,
            batch=item.batch,
            dry_run=False,
            outcome=AuditEvent.Outcome.FAILED,
            message=message,
        )
        refresh_batch_status(item.batch_id)
    return bool(ended)


def refresh_batch_status(batch_id: int) -> None:
    unfinished = BatchItem.objects.filter(
        batch_id=batch_id,
        status__in=[BatchItem.Status.PENDING, BatchItem.Status.QUEUED, *BatchItem.ACTIVE],
    )
    if not unfinished.exists():
        Batch.objects.filter(pk=batch_id, status__in=[Batch.Status.APPROVED, Batch.Status.RUNNING]).update(
            status=Batch.Status.DONE, finished_at=timezone.now()
        )


# --- executing one item (through the runner) -------------------------------------------------


# scratch: what read_kaltura read for a copy besides the entry: its description, (flavor id, download URL).
DESCRIPTION, DOWNLOAD_URL = "description", "download_url"
# progress: seconds from media.updateContent until a check saw the placeholder swapped in (expected_wait).
CONVERTED_IN = "replacement_seen_after_seconds"
CONVERSIONS_SEEN = 20


class ItemOperation(runner.Operation):
    """A batch item: archive and/or replace one entry, as its batch's action says."""

    model = BatchItem
    lock_prefix = "item"
    message_field = "message"
    done_status = BatchItem.Status.DONE
    skipped_status = BatchItem.Status.SKIPPED
    failed_status = BatchItem.Status.FAILED
    errored_status = BatchItem.Status.ERRORED
    waiting_status = BatchItem.Status.WAITING
    quick_steps = frozenset({"wait_replacement", "thumbnail"})
    s3_done_once_replacing = True

    def claimable(self):
        return BatchItem.objects.filter(status__in=[BatchItem.Status.QUEUED, *BatchItem.ACTIVE]).exclude(
            batch__status=Batch.Status.CANCELLED
        )

    def claim_changes(self, now) -> dict:
        return {
            "status": BatchItem.Status.RUNNING,
            "heartbeat_at": now,
            "started_at": Coalesce(F("started_at"), now),
            "attempts": F("attempts") + 1,
        }

    def load(self, pk: int) -> BatchItem:
        return BatchItem.objects.select_related("batch", "batch__approved_by").get(pk=pk)

    def user(self, row):
        return row.batch.approved_by

    def batch(self, row):
        return row.batch

    def audit_action(self, row, action: str) -> str:
        return f"{row.batch.action}_{action}"

    def plan(self, run: runner.Run) -> runner.Outcome:
        item = run.row
        plan = plan_for(item.batch.action, run.state, PlanSettings.from_settings(timezone.now()))
        run.scratch["planned"] = plan.step_names
        if plan.skipped:
            return runner.Outcome(skip_reason=plan.skip_reason)
        approved = set(item.planned_steps)
        if "copy" in approved:
            # A crash after the upload but before recording it: the rerun adopts that object, which is less
            # than was approved.
            approved.add("adopt")
        if item.planned_steps and not set(plan.step_names) <= approved:
            raise runner.Refused(
                f"the entry changed since the preview: planned {', '.join(item.planned_steps)}; "
                f"now {', '.join(plan.step_names)}. Preview it again."
            )
        return runner.Outcome(steps=plan.steps, summary=plan.summary())

    def reschedule(self, row, delay) -> None:
        queue.batch_item(row, delay=delay)

    def read_kaltura(self, run: runner.Run) -> tuple | None:
        """An item waiting for Kaltura to swap in the placeholder: one request (entry and flavors) tells whether
        the replacement is still pending; if so it waits again, without reading S3 or the rest. When it is no
        longer pending, that answer is the Kaltura part of the job's full read of live state.

        An item about to copy the original reads, in the same one request, what the copy and its sidecar need
        from Kaltura besides: the description (co-editors, custom metadata, captions) and the download URL of
        the original the mirror knows (step copy uses it only if that is the live original)."""
        progress = run.progress
        if progress.get("replace_requested") and "waiting_since_replacement" in progress:
            if "placeholder" in progress:
                return None
            try:
                entry, flavors = run.kaltura.entry_and_flavors(run.entry_id)
            except KalturaError as exc:
                if exc.code == "ENTRY_ID_NOT_FOUND":
                    return None  # the full read says so, and the plan stops
                raise
            if entry.replacing_entry_id and entry.replacement_status != runner.REPLACEMENT_FAILED:
                run.note_live(entry, flavors)
                runner.wait_or_give_up(run, "Kaltura is still converting the replacement", what="replacement")
            return entry, flavors
        planned = set(run.row.planned_steps)
        if not planned & {"copy", "adopt"} or progress.get("done_verify") or progress.get("replace_requested"):
            return None
        original_id = Entry.objects.filter(id=run.entry_id).values_list("original_flavor_id", flat=True).first()
        if not original_id:
            return None
        try:
            entry, flavors, description, url = run.kaltura.read_for_copy(run.entry_id, original_id)
        except KalturaError as exc:
            if exc.code == "ENTRY_ID_NOT_FOUND":
                return None
            raise
        run.scratch[DESCRIPTION], run.scratch[DOWNLOAD_URL] = description, (original_id, url)
        return entry, flavors

    def expected_wait(self, run: runner.Run, what: str) -> timedelta | None:
        """A little more than the median time Kaltura took to swap in the placeholder for this batch's latest
        items: one placeholder converts in about the same time as the next (ARCHIVE_WAIT_FIRST_CHECK_SECONDS
        until one has)."""
        if what != "replacement":
            return None
        seen = sorted(
            seconds
            for seconds in BatchItem.objects.filter(batch_id=run.row.batch_id, progress__has_key=CONVERTED_IN)
            .exclude(pk=run.row.pk)
            .order_by("-heartbeat_at")
            .values_list(f"progress__{CONVERTED_IN}", flat=True)[:CONVERSIONS_SEEN]
            if isinstance(seconds, int | float)
        )
        # A tenth more and a second (Kaltura stamps whole seconds): at exactly the median, half the checks
        # would come a moment early and cost a second check.
        return timedelta(seconds=seen[len(seen) // 2] * 1.1 + 1) if seen else None

    def ended(self, run, status) -> None:
        refresh_batch_status(run.row.batch_id)


ITEMS = ItemOperation()


def claim_item(item_id: int, token: str) -> BatchItem | None:
    """Take the item for this job (or its retry, same token) and the entry's lock; None if not ours. An entry
    another operation holds fails the item with a reason."""
    item, held_by = runner.claim(ITEMS, item_id, token)
    if held_by:
        runner.refuse_claim(ITEMS, item_id, token, held_by)
    return item


def execute_item(item_id: int, token: str, *, kaltura: Kaltura | None = None, store: ArchiveStore | None = None):
    """Run one item's plan against live state. Returns the item, or None if it was not ours to run."""
    return runner.execute(ITEMS, item_id, token, kaltura=kaltura, store=store)


# --- the steps --------------------------------------------------------------------------


def _target_key(run: runner.Run) -> str:
    """The entry id's key for an entry's first copy; once taken (by any copy), a key named by the content."""
    original = run.state.original
    # With no copy recorded, the job's read of live state was of the entry id's key (the upload is conditional
    # anyway: it never writes over an object that appeared meanwhile).
    free = run.state.s3 is None if run.state.copy is None else run.store.head(run.entry_id) is None
    if free:
        return run.store.key_for(run.entry_id)
    return run.store.key_for_content(run.entry_id, original.id, original.version)


def _stream_original_to_s3(run: runner.Run) -> dict:
    """Download Kaltura's original and stream it to a new S3 object (never over an existing one)."""
    original = run.state.original
    key = _target_key(run)
    flavor_id, url = run.scratch.pop(DOWNLOAD_URL, ("", ""))
    if flavor_id != original.id or not url:
        url = run.kaltura.flavor_download_url(original.id)
    # urllib3 raises on a body shorter than its Content-Length, so a truncated download fails the upload.
    try:
        with run.kaltura.open_download(url) as response:
            response.raise_for_status()
            archived = run.store.upload_stream(
                run.entry_id,
                response.raw,
                key=key,
                flavor_id=original.id,
                flavor_version=original.version,
                expected_size=original.size_in_bytes or None,
                size_ok=lambda size: sizes_agree(size, original),
            )
    except StorageError as exc:
        if exc.code != "PreconditionFailed":
            raise
        # The key is taken: our own upload of this content before a crash, or something else (left untouched).
        return _adopt_object(run, key) or _refuse_taken_key(run, key)
    run.scratch["uploaded"] = archived
    run.save(bytes_copied=archived.size)
    return {
        "s3_key": archived.key,
        "version_id": archived.version_id,
        "bytes": archived.size,
        "sha256": archived.sha256,
        "class": archived.storage_class,
        "flavor_version": original.version,
    }


def _refuse_taken_key(run: runner.Run, key: str):
    raise runner.Refused(
        f"s3://{run.store.bucket}/{key} already holds an object that is not this content; it was left untouched",
        run.state.identity(),
    )


def _adopt_object(run: runner.Run, key: str) -> dict | None:
    """Record the object at `key` if it carries our SHA-256 of exactly the live original's content; else None."""
    original = run.state.original
    s3 = run.store.head(run.entry_id, key=key)
    if (
        s3 is None
        or not s3.sha256
        or not sizes_agree(s3.size, original)
        or (s3.metadata.get("flavor-id"), s3.metadata.get("flavor-version")) != (original.id, original.version)
    ):
        return None
    _record_copy(
        run,
        key=key,
        size=s3.size,
        sha256=s3.sha256,
        crc32=s3.crc32 or "",
        version_id=s3.version_id,
        storage_class=s3.storage_class,
        adopted=True,
        source=ArchiveCopy.HashSource.S3_TAG,
    )
    run.scratch["adopted"] = True
    return {"adopted": True, "s3_key": key, "bytes": s3.size, "sha256": s3.sha256}


def step_copy(run: runner.Run) -> dict:
    return _stream_original_to_s3(run)


def step_adopt(run: runner.Run) -> dict:
    """Record the object at the entry id, if it carries our SHA-256 of this content; otherwise copy anew."""
    adopted = _adopt_object(run, run.store.key_for(run.entry_id))
    if adopted:
        return adopted
    details = _stream_original_to_s3(run)
    return {**details, **step_verify(run)}


def step_verify(run: runner.Run) -> dict:
    if run.scratch.get("adopted"):
        sidecar = write_sidecar(run.store, run.kaltura, run.state, run.scratch["copy"], run.scratch.get(DESCRIPTION))
        return {"verified": "adopted", **sidecar}
    # upload_stream has checked that version in S3 itself (S3's CRC32 of what it stored, in its answer to the
    # upload or from a HeadObject, against the stream's): no second read of it.
    archived = run.scratch["uploaded"]
    copy = _record_copy(
        run,
        key=archived.key,
        size=archived.size,
        sha256=archived.sha256,
        crc32=archived.crc32,
        version_id=archived.version_id,
        storage_class=archived.storage_class,
        adopted=False,
        source=ArchiveCopy.HashSource.STREAM,
    )
    return {
        "verified": True,
        "bytes": archived.size,
        "sha256": archived.sha256,
        **write_sidecar(run.store, run.kaltura, run.state, copy, run.scratch.get(DESCRIPTION)),
    }


def _record_copy(
    run: runner.Run,
    *,
    key,
    size,
    sha256,
    crc32,
    version_id,
    storage_class,
    adopted,
    source,
    flavor_id=None,
    flavor_version=None,
    replaced=False,
) -> ArchiveCopy:
    """One record per S3 object (bucket, key, version): a rerun finds the one it made."""
    original = run.state.original
    copy, _ = ArchiveCopy.objects.update_or_create(
        bucket=run.store.bucket,
        key=key,
        version_id=version_id or "",
        defaults={
            "entry_id": run.entry_id,
            "flavor_id": original.id if flavor_id is None else flavor_id,
            "flavor_version": original.version if flavor_version is None else flavor_version,
            "storage_class": storage_class,
            "size_bytes": size,
            "sha256": sha256,
            "sha256_source": source,
            "crc32": crc32 or "",
            "adopted": adopted,
            "verified_at": timezone.now(),
            "replaced_at": timezone.now() if replaced else None,
            "bytes_freed": 0,
        },
    )
    run.scratch["copy"] = copy
    return copy


def step_tag_archived(run: runner.Run) -> dict:
    if "replace_content" in run.scratch.get("planned", ()):
        # Written with media.updateContent, from its read right before (two requests fewer per entry).
        run.scratch[TAG_ARCHIVED_LATER] = True
        return {"tags": f"{TAG_ARCHIVED} is added in the request of media.updateContent (step replace_content)"}
    return runner.write_tags(run, add=(TAG_ARCHIVED,))


# scratch: the archived_to_s3 tag is owed, to be written with the replacement (step_tag_archived).
TAG_ARCHIVED_LATER = "tag_archived_later"


# An old-tool archive behind a placeholder: its hash is computed from S3 itself (Kaltura holds the placeholder).


def step_s3_restore(run: runner.Run) -> dict:
    s3 = run.s3
    answer = run.store.request_restore(
        run.entry_id, key=s3.key, version_id=s3.version_id, tier="Bulk", days=settings.ARCHIVE_RESTORE_DAYS
    )
    return {"answer": answer, "tier": "Bulk", "class": s3.storage_class}


def step_s3_wait(run: runner.Run) -> dict:
    s3 = run.store.head(run.entry_id, key=run.s3.key, version_id=run.s3.version_id)
    if s3 is None:
        raise runner.Refused("the S3 object disappeared while S3 was restoring it")
    if not s3.readable:
        runner.wait_or_give_up(
            run, "S3 is making a readable copy", what="s3 restore", hours=72, delay=timedelta(minutes=15)
        )
    return {"restored_until": s3.restored_until.isoformat() if s3.restored_until else None}


def step_adopt_hash(run: runner.Run) -> dict:
    s3 = run.s3
    body, length = run.store.open_stream(run.entry_id, key=s3.key, version_id=s3.version_id)
    reader = HashingReader(body)
    try:
        while reader.read(8 * 1024 * 1024):
            pass
    finally:
        reader.close()
    if reader.bytes_read != length:
        raise runner.Refused(f"S3 served {reader.bytes_read} bytes of {length}")
    if s3.sha256 and s3.sha256.lower() != reader.sha256:
        raise runner.Refused(f"the S3 object's SHA-256 is {reader.sha256}, its tag says {s3.sha256}")
    _record_copy(
        run,
        key=s3.key,
        size=length,
        sha256=reader.sha256,
        crc32=s3.crc32 or "",
        version_id=s3.version_id,
        storage_class=s3.storage_class,
        adopted=True,
        source=ArchiveCopy.HashSource.S3_READ,
        flavor_id=s3.metadata.get("flavor-id", ""),
        flavor_version="",
        replaced=True,
    )
    Entry.objects.filter(id=run.entry_id).update(archive_state=ArchiveState.PLACEHOLDER)
    return {"adopted": "hash computed from S3", "s3_key": s3.key, "bytes": length, "sha256": reader.sha256}


# Replacing the content with the placeholder.


def _placeholder_path(run: runner.Run):
    audio = run.state.entry.media_type == MediaType.AUDIO
    return settings.PLACEHOLDER_AUDIO if audio else settings.PLACEHOLDER_VIDEO


def _copy_refusal(run: runner.Run, state) -> str:
    """Rule: no content is replaced unless S3 still holds its recorded copy: that exact key and version, with
    the recorded size and SHA-256. `state`: live state read just now (its S3 head is of that key and version)."""
    copy = ArchiveCopy.objects.filter(entry_id=run.entry_id).first()
    if copy is None or not copy.sha256:
        return "no verified archive copy with a SHA-256 is recorded"
    s3 = state.s3
    if s3 is None or (s3.key, s3.version_id or "") != (copy.key, copy.version_id or ""):
        s3 = run.store.head(run.entry_id, key=copy.key, version_id=copy.version_id or None)
    try:
        run.store.check(s3, key=copy.key, size=copy.size_bytes, sha256=copy.sha256, crc32=copy.crc32 or None)
    except StorageError as exc:
        return f"the recorded copy in S3 no longer checks out: {exc}"
    return ""


def step_upload_placeholder(run: runner.Run) -> dict:
    # The copy is checked in S3 by replace_content, right before media.updateContent: the upload alone
    # changes nothing in the entry.
    path = _placeholder_path(run)
    with open(path, "rb") as placeholder:
        token = run.kaltura.upload(placeholder, file_name=path.name, size=path.stat().st_size)
    run.save_progress(placeholder_token=token)
    return {"upload_token": token, "bytes": path.stat().st_size, "placeholder": path.name}


def step_replace_content(run: runner.Run) -> dict:
    plan_settings = PlanSettings.from_settings(timezone.now())
    owed = (TAG_ARCHIVED,) if run.scratch.pop(TAG_ARCHIVED_LATER, False) else ()
    try:
        return runner.send_replacement(
            run,
            run.progress["placeholder_token"],
            still_allowed=lambda state: _copy_refusal(run, state) or replace_refusal(state, plan_settings),
            add_tags=owed,
        )
    except runner.Refused as refused:
        if owed and run.state is not None and run.state.entry is not None and not _copy_refusal(run, run.state):
            # Not replaced, but archived: its copy checks out in S3 (read just now), so it gets the tag.
            refused.details = {**(refused.details or {}), "tags": runner.write_tags(run, add=owed)}
        raise


def step_wait_replacement(run: runner.Run) -> dict:
    size = _placeholder_path(run).stat().st_size
    placeholder = runner.wait_for_swap(run, expected_size=lambda flavor: sizes_agree(size, flavor), what="replacement")
    converted = {}
    if run.progress.get("replace_requested_at"):
        converted[CONVERTED_IN] = _conversion_seconds(run, datetime.fromisoformat(run.progress["replace_requested_at"]))
    run.save_progress(placeholder=asdict(placeholder), **converted)
    return {"placeholder": placeholder.as_dict()}


def _conversion_seconds(run: runner.Run, sent: datetime) -> float:
    """How long Kaltura took to swap in the placeholder: until the time it stamped on the new original (when
    its conversion finished), not until the check that saw it, which is later by up to the wait between checks.
    A Kaltura clock behind ours gives less, never less than 0: checks then come sooner, which costs requests."""
    now = timezone.now()
    flavors = run.scratch.get("live_flavors") or []
    original = next((flavor for flavor in flavors if flavor.is_original), None)
    finished = min(original.updated_at, now) if original is not None and original.updated_at else now
    return round(max(0.0, (finished - sent).total_seconds()), 1)


def step_thumbnail(run: runner.Run) -> dict:
    # plan_replace puts tag_replaced right after: the thumbnail is cut in the same request as that tag write
    # (one request fewer per entry).
    run.scratch["thumbnail"] = True
    return {"thumbnail": "cut with the tags (next step)"}


def _update_thumbnail(run: runner.Run) -> dict:
    # Right after a replacement Kaltura may not be ready to cut a thumbnail: try a few times.
    for attempt in range(3):
        try:
            run.kaltura.update_thumbnail(run.entry_id, 1)
            return {"thumbnail": "updated"}
        except KalturaError as exc:
            if attempt == 2:
                return {"thumbnail": f"not updated: {exc}"}
            time.sleep(2)
    return {}


def step_tag_replaced(run: runner.Run) -> dict:
    thumbnail = run.scratch.pop("thumbnail", False)
    details = runner.write_tags(run, add=(TAG_ARCHIVED, TAG_REPLACED), thumbnail=thumbnail)
    if thumbnail and details["thumbnail"] != "updated":
        details["thumbnail"] = _update_thumbnail(run)["thumbnail"]
    freed = run.row.bytes_freed
    placeholder = run.progress.get("placeholder") or {}
    copy = ArchiveCopy.objects.filter(entry_id=run.entry_id).first()
    ArchiveCopy.objects.filter(pk=copy.pk).update(
        replaced_at=timezone.now(),
        bytes_freed=freed,
        placeholder_flavor_id=placeholder.get("flavor_id", ""),
        placeholder_version=placeholder.get("version", ""),
        placeholder_size=placeholder.get("size"),
    )
    Entry.objects.filter(id=run.entry_id).update(archive_state=ArchiveState.PLACEHOLDER)
    return {**details, "bytes_freed": freed, "placeholder": placeholder}


ITEMS.steps = {
    "copy": step_copy,
    "adopt": step_adopt,
    "verify": step_verify,
    "tag_archived": step_tag_archived,
    "s3_restore": step_s3_restore,
    "s3_wait": step_s3_wait,
    "adopt_hash": step_adopt_hash,
    "upload_placeholder": step_upload_placeholder,
    "replace_content": step_replace_content,
    "wait_replacement": step_wait_replacement,
    "thumbnail": step_thumbnail,
    "tag_replaced": step_tag_replaced,
}
STEPS = ITEMS.steps
