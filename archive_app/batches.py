"""Batches: create from a selection, preview (the dry run), approve, enqueue, and execute one item.

An item is claimed by a conditional update before any work, and a partial unique
index lets only one item per entry be running or waiting at a time, so overlapping
batches or duplicate jobs never work on one entry at once. Every step re-reads live
state first, so a rerun after a crash at any line converges.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from archive_app import audit, bulk, sync
from archive_app.kaltura import Kaltura, KalturaError
from archive_app.models import (
    TAG_ARCHIVED,
    TAG_REPLACED,
    ArchiveCopy,
    ArchiveState,
    AuditEvent,
    Batch,
    BatchItem,
    Entry,
    split_tags,
)
from archive_app.redaction import redact
from archive_app.storage import ArchiveStore, StorageError
from archive_app.workflow import LiveState, Plan, Policy, plan_for, read_live_state, read_live_states, sizes_agree

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
        items = [{"batch_id": batch.pk, "entry_id": entry_id} for entry_id in entry_ids]
        if plans:
            for item in items:
                item.update(_plan_fields(plans[item["entry_id"]]))
        bulk.create(BatchItem, items)
        audit.record(
            "batch_create", user=user, batch=batch, dry_run=True, details={"entries": len(entry_ids), "action": action}
        )
        bulk.create(AuditEvent, _preview_events(batch, plans.values(), user))
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
    action: str, entry_ids: list[str], kaltura: Kaltura | None, store: ArchiveStore | None
) -> dict[str, Plan]:
    """Each entry's plan from live Kaltura and S3 state, read in bulk (the dry run)."""
    kaltura = kaltura or Kaltura.from_settings()
    store = store or ArchiveStore.from_settings()
    states = read_live_states(entry_ids, kaltura, store)
    policy = Policy.from_settings(timezone.now())
    return {entry_id: plan_for(action, states[entry_id], policy) for entry_id in entry_ids}


def _plan_fields(plan: Plan) -> dict:
    return {
        "planned_steps": plan.step_names,
        "skip_reason": plan.skip_reason,
        "bytes_to_copy": plan.bytes_to_copy,
        "bytes_freed": plan.bytes_freed,
    }


def _preview_events(batch: Batch, plans: Iterable[Plan], user) -> list[dict]:
    """The preview's audit events, one per entry, as rows for bulk.create."""
    username = user.get_username() if user else audit.SYSTEM_USERNAME
    return [
        {
            "user_id": user.pk if user else None,
            "username": username,
            "action": f"preview_{batch.action}",
            "entry_id": plan.entry_id,
            "batch_id": batch.pk,
            "dry_run": True,
            "outcome": AuditEvent.Outcome.SKIPPED if plan.skipped else AuditEvent.Outcome.OK,
            "message": plan.summary()[:1000],
            "details": {"steps": plan.step_names, "skip_reason": plan.skip_reason},
        }
        for plan in plans
    ]


def batch_preview(batch: Batch, *, user, kaltura: Kaltura | None = None, store: ArchiveStore | None = None) -> dict:
    """Compute every pending item's plan from live Kaltura and S3 state, store it, and audit it as a dry run."""
    items = list(batch.items.filter(status=BatchItem.Status.PENDING))
    plans = _plan_entries(batch.action, [item.entry_id for item in items], kaltura, store)
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
        bulk.create(AuditEvent, _preview_events(batch, plans.values(), user))
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
        if not needs_second:
            from archive_app.notices import hold_for_notice

            # A batch with a notice period waits for it; the scheduler queues it afterwards.
            if not hold_for_notice(batch):
                batch_enqueue(batch)
    return batch


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

    def enqueue():
        from archive_app.jobs import enqueue_item

        for item in runnable:
            enqueue_item(item)

    transaction.on_commit(enqueue)
    if not runnable:
        refresh_batch_status(batch.pk)
    return len(runnable)


def batch_cancel(batch: Batch, *, user) -> int:
    """Cancel the items that have not started; running ones finish their current entry."""
    with transaction.atomic():
        cancelled = batch.items.filter(status__in=[BatchItem.Status.PENDING, BatchItem.Status.QUEUED]).update(
            status=BatchItem.Status.CANCELLED, finished_at=timezone.now(), message="cancelled"
        )
        # APPROVED and not running: held for its owners' notice period.
        if batch.status in (Batch.Status.DRAFT, Batch.Status.APPROVED):
            Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.CANCELLED)
        audit.record("batch_cancel", user=user, batch=batch, dry_run=False, details={"items": cancelled})
    refresh_batch_status(batch.pk)
    return cancelled


def batch_retry_failed(batch: Batch, *, user, kaltura: Kaltura | None = None, store: ArchiveStore | None = None) -> int:
    """Queue the failed items again, after a fresh preview: their state has moved on since the first one."""
    release_stale_items(batch)
    failed_ids = list(batch.items.filter(status=BatchItem.Status.FAILED).values_list("id", flat=True))
    if not failed_ids:
        return 0
    BatchItem.objects.filter(id__in=failed_ids).update(status=BatchItem.Status.PENDING, skip_reason="")
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
    from archive_app.jobs import job_timeout_seconds

    now = timezone.now()
    stale = [
        item.id
        for item in batch.items.filter(status__in=BatchItem.ACTIVE).only("bytes_to_copy", "heartbeat_at", "status")
        if item.heartbeat_at is None
        or item.heartbeat_at < now - timedelta(seconds=job_timeout_seconds(item.bytes_to_copy) * 4 + 600)
    ]
    if stale:
        BatchItem.objects.filter(id__in=stale, status__in=BatchItem.ACTIVE).update(
            status=BatchItem.Status.FAILED,
            message="the worker stopped without finishing (killed or crashed); retry to continue",
            finished_at=now,
        )
    return len(stale)


def refresh_batch_status(batch_id: int) -> None:
    unfinished = BatchItem.objects.filter(
        batch_id=batch_id,
        status__in=[BatchItem.Status.PENDING, BatchItem.Status.QUEUED, *BatchItem.ACTIVE],
    )
    if not unfinished.exists():
        Batch.objects.filter(pk=batch_id, status__in=[Batch.Status.APPROVED, Batch.Status.RUNNING]).update(
            status=Batch.Status.DONE, finished_at=timezone.now()
        )


# --- executing one item -------------------------------------------------------------------


class Wait(Exception):
    """Kaltura is still converting: check back later rather than hold a worker."""


class Refused(Exception):
    """The live state no longer allows what was approved."""


def claim_item(item_id: int, token: str) -> BatchItem | None:
    """Take the item for this job (or its retry, which carries the same token); None if not ours."""
    now = timezone.now()
    claimable = Q(status__in=[BatchItem.Status.QUEUED, BatchItem.Status.FAILED, *BatchItem.ACTIVE])
    try:
        with transaction.atomic():
            taken = (
                BatchItem.objects.filter(claimable, id=item_id, job_id=token)
                .exclude(batch__status=Batch.Status.CANCELLED)
                .update(
                    status=BatchItem.Status.RUNNING,
                    heartbeat_at=now,
                    started_at=Coalesce(F("started_at"), now),
                    attempts=F("attempts") + 1,
                )
            )
    except IntegrityError:
        # Another batch's item for this entry is running or waiting.
        BatchItem.objects.filter(id=item_id, job_id=token).update(
            status=BatchItem.Status.FAILED,
            message="another batch is working on this entry; retry when it has finished",
            finished_at=now,
        )
        return None
    if taken != 1:
        return None
    return BatchItem.objects.select_related("batch", "batch__approved_by").get(id=item_id)


@dataclass
class Context:
    item: BatchItem
    kaltura: Kaltura
    store: ArchiveStore
    state: LiveState
    user: object
    uploaded: object = None

    @property
    def entry_id(self) -> str:
        return self.item.entry_id

    def save_progress(self, **progress) -> None:
        self.item.progress = {**self.item.progress, **progress}
        self.item.heartbeat_at = timezone.now()
        self.item.save(update_fields=["progress", "heartbeat_at"])


def execute_item(item_id: int, token: str, *, kaltura: Kaltura | None = None, store: ArchiveStore | None = None):
    """Run one item's plan against live state. Returns the item, or None if it was not ours to run."""
    item = claim_item(item_id, token)
    if item is None:
        return None
    user = item.batch.approved_by
    try:
        kaltura = kaltura or Kaltura.from_settings()
        store = store or ArchiveStore.from_settings()
        state = read_live_state(
            item.entry_id, kaltura, store, replacement_started=bool(item.progress.get("replace_requested"))
        )
        plan = plan_for(item.batch.action, state, Policy.from_settings(timezone.now()))
        if plan.skipped:
            _finish(item, BatchItem.Status.SKIPPED, plan.skip_reason, user=user, action="skip")
            return item
        approved = set(item.planned_steps)
        if "copy" in approved:
            # A crash after the upload but before recording it: the rerun adopts that object
            # (and copies again if it has no SHA-256), which is less than was approved.
            approved.add("adopt")
        if item.planned_steps and not set(plan.step_names) <= approved:
            raise Refused(
                f"the entry changed since the preview: planned {', '.join(item.planned_steps)}; "
                f"now {', '.join(plan.step_names)}. Preview it again."
            )
        context = Context(item=item, kaltura=kaltura, store=store, state=state, user=user)
        for step in plan.steps:
            details = STEPS[step.name](context) or {}
            audit.record(step.name, user=user, entry_id=item.entry_id, batch=item.batch, dry_run=False, details=details)
            context.save_progress(**{f"done_{step.name}": True})
        _finish(item, BatchItem.Status.DONE, plan.summary(), user=user, action=None)
        return item
    except Wait as waiting:
        item.status, item.message, item.heartbeat_at = BatchItem.Status.WAITING, str(waiting), timezone.now()
        item.save(update_fields=["status", "message", "heartbeat_at"])
        from archive_app.jobs import enqueue_item

        enqueue_item(item, delay=timedelta(seconds=30))
        return item
    except Refused as refused:
        _finish(item, BatchItem.Status.FAILED, str(refused), user=user, action="refused")
        return item
    except (KalturaError, StorageError, requests.RequestException, OSError) as exc:
        _finish(item, BatchItem.Status.FAILED, f"{type(exc).__name__}: {exc}", user=user, action="failed")
        if getattr(exc, "transient", False):
            raise  # let RQ's retry take it again; the claim token lets the retry in
        return item


def _finish(item: BatchItem, status: str, message: str, *, user, action: str | None) -> None:
    # The message may quote an error from Kaltura, S3 or a download URL: no secrets in the page.
    item.status, item.message, item.finished_at = status, redact(message)[:4000], timezone.now()
    item.save(update_fields=["status", "message", "finished_at", "bytes_copied", "bytes_freed"])
    if action:
        outcome = {
            "skip": AuditEvent.Outcome.SKIPPED,
            "refused": AuditEvent.Outcome.REFUSED,
            "failed": AuditEvent.Outcome.FAILED,
        }[action]
        audit.record(
            f"{item.batch.action}_{action}",
            user=user,
            entry_id=item.entry_id,
            batch=item.batch,
            dry_run=False,
            outcome=outcome,
            message=message,
        )
    sync.refresh_entries([item.entry_id])  # the pages show what the job did, without waiting for a sync
    refresh_batch_status(item.batch_id)


# --- the steps --------------------------------------------------------------------------


def _stream_original_to_s3(context: Context, *, overwrite: bool) -> dict:
    original = context.state.original
    url = context.kaltura.flavor_download_url(original.id)
    # urllib3 raises on a body shorter than its Content-Length, so a truncated download fails the upload.
    with requests.get(url, stream=True, timeout=(10, 300)) as response:
        response.raise_for_status()
        archived = context.store.upload_stream(
            context.entry_id,
            response.raw,
            flavor_id=original.id,
            expected_size=original.size_in_bytes or None,
            overwrite=overwrite,
        )
    if not sizes_agree(archived.size, original):
        context.store.delete(context.entry_id, archived.version_id)
        raise StorageError(
            f"{context.entry_id}: streamed {archived.size} bytes but Kaltura says {original.size_bytes}; copy removed",
            "SizeMismatch",
        )
    context.uploaded = archived
    context.item.bytes_copied = archived.size
    context.item.save(update_fields=["bytes_copied"])
    return {"s3_key": archived.key, "bytes": archived.size, "sha256": archived.sha256, "class": archived.storage_class}


def step_copy(context: Context) -> dict:
    return _stream_original_to_s3(context, overwrite=context.state.s3 is not None)


def step_adopt(context: Context) -> dict:
    """Record an object already in S3, if it carries our SHA-256; otherwise copy again."""
    s3 = context.store.head(context.entry_id)
    if s3 is None or not s3.sha256 or not sizes_agree(s3.size, context.state.original):
        details = _stream_original_to_s3(context, overwrite=s3 is not None)
        return {**details, **step_verify(context)}
    _record_copy(context, size=s3.size, sha256=s3.sha256, crc32=s3.crc32 or "", version_id=s3.version_id,
                 storage_class=s3.storage_class, adopted=True)  # fmt: skip
    return {"adopted": True, "s3_key": s3.key, "bytes": s3.size, "sha256": s3.sha256}


def step_verify(context: Context) -> dict:
    archived = context.uploaded
    context.store.verify(context.entry_id, size=archived.size, sha256=archived.sha256, crc32=archived.crc32)
    _record_copy(
        context,
        size=archived.size,
        sha256=archived.sha256,
        crc32=archived.crc32,
        version_id=archived.version_id,
        storage_class=archived.storage_class,
        adopted=False,
    )
    return {"verified": True, "bytes": archived.size, "sha256": archived.sha256}


def _record_copy(context: Context, *, size, sha256, crc32, version_id, storage_class, adopted) -> None:
    ArchiveCopy.objects.update_or_create(
        entry_id=context.entry_id,
        defaults={
            "flavor_id": context.state.original.id,
            "bucket": context.store.bucket,
            "key": context.store.key_for(context.entry_id),
            "version_id": version_id or "",
            "storage_class": storage_class,
            "size_bytes": size,
            "sha256": sha256,
            "crc32": crc32 or "",
            "adopted": adopted,
            "verified_at": timezone.now(),
            "replaced_at": None,
            "bytes_freed": 0,
        },
    )


def _add_tags(context: Context, *tags: str) -> dict:
    # Read the tags again right before writing: someone may have edited them meanwhile.
    current = split_tags(context.kaltura.get_entry(context.entry_id).tags)
    wanted = current + [t for t in tags if t not in {c.lower() for c in current}]
    entry = context.kaltura.set_tags(context.entry_id, wanted)
    mirror = Entry.objects.filter(id=context.entry_id).first()
    if mirror is not None:
        mirror.set_tags(entry.tags)
        mirror.save(update_fields=["tags", "tags_search", "archive_state"])
    return {"tags_before": ", ".join(current), "tags_after": entry.tags}


def step_tag_archived(context: Context) -> dict:
    return _add_tags(context, TAG_ARCHIVED)


def _require_verified_copy(context: Context) -> ArchiveCopy:
    """Rule: no content is replaced unless its verified copy is recorded and S3 still holds it."""
    copy = ArchiveCopy.objects.filter(entry_id=context.entry_id).first()
    if copy is None or not copy.sha256:
        raise Refused("no verified archive copy with a SHA-256 is recorded")
    context.store.verify(context.entry_id, size=copy.size_bytes, sha256=copy.sha256, crc32=copy.crc32 or None)
    return copy


def step_upload_placeholder(context: Context) -> dict:
    _require_verified_copy(context)
    path = settings.PLACEHOLDER_VIDEO
    with open(path, "rb") as placeholder:
        token = context.kaltura.upload(placeholder, file_name=path.name, size=path.stat().st_size)
    context.save_progress(placeholder_token=token)
    return {"upload_token": token, "bytes": path.stat().st_size}


def step_replace_content(context: Context) -> dict:
    _require_verified_copy(context)
    # Marked before the call: if the answer is lost, a rerun knows the replacement may be ours.
    context.save_progress(replace_requested=True)
    try:
        context.kaltura.replace_content(context.entry_id, context.item.progress["placeholder_token"])
    except KalturaError as exc:
        if exc.code != "ENTRY_REPLACEMENT_ALREADY_EXISTS":
            raise
    return {"replacement": "started"}


def step_wait_replacement(context: Context) -> dict:
    copy = ArchiveCopy.objects.get(entry_id=context.entry_id)
    deadline = time.monotonic() + settings.ARCHIVE_REPLACEMENT_WAIT_SECONDS
    while True:
        entry = context.kaltura.get_entry(context.entry_id)
        original = next((f for f in context.kaltura.flavors(context.entry_id) if f.is_original), None)
        if (
            not entry.replacing_entry_id
            and original is not None
            and original.status == 2
            and original.size_bytes != copy.size_bytes
        ):
            return {"original_flavor": original.id, "placeholder_bytes": original.size_bytes}
        if time.monotonic() > deadline:
            raise Wait("Kaltura is still converting the placeholder")
        time.sleep(2)


def step_thumbnail(context: Context) -> dict:
    # Right after a replacement Kaltura may not be ready to cut a thumbnail: try a few times.
    for attempt in range(3):
        try:
            context.kaltura.update_thumbnail(context.entry_id, 1)
            return {"thumbnail": "updated"}
        except KalturaError as exc:
            if attempt == 2:
                return {"thumbnail": f"not updated: {exc}"}
            time.sleep(2)
    return {}


def step_tag_replaced(context: Context) -> dict:
    details = _add_tags(context, TAG_ARCHIVED, TAG_REPLACED)
    freed = context.item.bytes_freed
    ArchiveCopy.objects.filter(entry_id=context.entry_id).update(replaced_at=timezone.now(), bytes_freed=freed)
    Entry.objects.filter(id=context.entry_id).update(archive_state=ArchiveState.PLACEHOLDER)
    return {**details, "bytes_freed": freed}


STEPS = {
    "copy": step_copy,
    "adopt": step_adopt,
    "verify": step_verify,
    "tag_archived": step_tag_archived,
    "upload_placeholder": step_upload_placeholder,
    "replace_content": step_replace_content,
    "wait_replacement": step_wait_replacement,
    "thumbnail": step_thumbnail,
    "tag_replaced": step_tag_replaced,
}
