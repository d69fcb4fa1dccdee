"""RQ entry points: plain arguments in, a service function called, nothing else."""

from __future__ import annotations

import logging
from datetime import timedelta

import django_rq
from rq import Callback, Retry

from archive_app.lib.kaltura import Kaltura
from archive_app.mirror import sync

log = logging.getLogger(__name__)

# Generous for a slow link: a 50 GB original at 10 MB/s is under 1.5 hours.
ASSUMED_BYTES_PER_SECOND = 10 * 1024 * 1024


def sync_kaltura_job(kind: str = "incremental") -> dict:
    """The scheduled mirror refresh: changed entries, then recent plays (or a full pass)."""
    kaltura = Kaltura.from_settings()
    try:
        if kind == "full":
            runs = [sync.sync_full(kaltura)]
        else:
            runs = [sync.sync_incremental(kaltura), sync.sync_plays(kaltura)]
    except sync.SyncBusy as busy:
        # Another worker is already on it; the next schedule will catch up.
        log.info("%s", busy)
        return {"skipped": str(busy)}
    return {run.kind: {"seen": run.seen, "created": run.created, "updated": run.updated} for run in runs}


def run_batch_item(item_id: int, token: str) -> str:
    from archive_app.archive.batches import execute_item

    item = execute_item(item_id, token)
    return item.status if item is not None else "not ours"


def batch_item_job_failed(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ's on_failure of an item's job. A job that fails before its claim (the database or Redis failing)
    leaves the item queued; RQ's retry takes it again, but after the last attempt nothing would, and the item
    would wait forever. Then it fails, with the error, and a librarian's retry can queue it again."""
    if job.retries_left:
        return  # RQ retries it
    from archive_app.archive.batches import fail_unclaimed_item

    item_id, token = job.args
    fail_unclaimed_item(item_id, token, f"{exc_type.__name__}: {exc_value}")


def job_timeout_seconds(bytes_to_copy: int) -> int:
    return 900 + bytes_to_copy // ASSUMED_BYTES_PER_SECOND


def enqueue_item(item, delay: timedelta | None = None):
    """Queue one batch item, with retries and a timeout sized to what it copies."""
    queue = django_rq.get_queue("default")
    options = {
        "retry": Retry(max=3, interval=[10, 60, 300]),
        "on_failure": Callback(batch_item_job_failed),
        "job_timeout": job_timeout_seconds(item.bytes_to_copy),
        "description": f"batch {item.batch_id}: {item.entry_id}",
    }
    if delay is not None:
        return queue.enqueue_in(delay, run_batch_item, item.id, item.job_id, **options)
    return queue.enqueue(run_batch_item, item.id, item.job_id, **options)


def release_stale_items_job() -> dict:
    """Scheduled: fail the items whose worker died, in every batch, so their entries are free for a retry
    (batches.release_stale_items). Pages never do it: a GET writes nothing."""
    from archive_app import audit
    from archive_app.archive.batches import refresh_batch_status, release_stale_items
    from archive_app.models import Batch, BatchItem

    released = {}
    for batch in Batch.objects.filter(items__status__in=BatchItem.ACTIVE).distinct():
        count = release_stale_items(batch)
        if count:
            refresh_batch_status(batch.pk)
            audit.record(
                "release_stale",
                batch=batch,
                dry_run=False,
                outcome="failed",
                details={"items": count},
                message=f"{count} items whose worker stopped were marked failed",
            )
            released[batch.pk] = count
    return released


def audit_ip_retention_job() -> dict:
    """Scheduled: blank the IP addresses of audit events older than ARCHIVE_AUDIT_IP_RETENTION_DAYS."""
    from archive_app.audit import blank_old_addresses

    return blank_old_addresses()


def send_notices_job(batch_id: int) -> dict:
    from archive_app.scheduling.notices import send_notices

    return send_notices(batch_id)


def run_policies_job() -> dict:
    """The scheduler's step: due policies make draft batches; held batches whose notice ended are queued."""
    from archive_app.scheduling import notices, policies

    return {
        "policies": policies.policies_run_due(execute=True),
        "notices_resent": notices.resend_unfinished(execute=True),
        "released": notices.release_due_batches(execute=True),
    }


def run_restore(restore_id: int, token: str) -> str:
    from archive_app.archive.restores import execute_restore

    restore = execute_restore(restore_id, token)
    return restore.status if restore is not None else "not ours"


def enqueue_restore(restore_id: int, token: str, size_bytes: int = 0, delay: timedelta | None = None):
    """Queue one step of a restore, with retries and a timeout sized to what it uploads."""
    queue = django_rq.get_queue("default")
    options = {
        "retry": Retry(max=3, interval=[10, 60, 300]),
        "job_timeout": job_timeout_seconds(size_bytes),
        "description": f"restore {restore_id}",
    }
    if delay is not None:
        return queue.enqueue_in(delay, run_restore, restore_id, token, **options)
    return queue.enqueue(run_restore, restore_id, token, **options)


def restore_poll_job() -> dict:
    """Scheduled: queue the restores waiting on Glacier (they check S3's Restore header) and any whose job died."""
    from archive_app.archive.restores import restore_poll

    return restore_poll()


def auto_restore_job() -> dict:
    """Scheduled: request restores of played placeholders and of ones replaced although recent."""
    from archive_app.archive.restores import auto_restore

    return auto_restore()


def fixity_audit_job() -> dict:
    """Scheduled: the fixity audit of every copy, then the sample re-hash (restores it needs are requested, and
    hashed by a later run once Glacier has them ready)."""
    from archive_app.archive import fixity

    summary = fixity.audit_fixity(execute=True)
    plan, rehash = fixity.rehash_sample(execute=True)
    return {
        "checked": summary.checked,
        "failed": summary.failed,
        "requests": summary.requests,
        "rehash": {
            "passed": rehash.passed,
            "failed": rehash.failed,
            "requested": rehash.requested,
            "waiting": rehash.waiting,
        },
    }
