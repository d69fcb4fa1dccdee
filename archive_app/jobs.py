"""RQ entry points: plain arguments in, a service function called, nothing else."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from archive_app import audit
from archive_app.archive import fixity, restores
from archive_app.archive.batches import execute_item, fail_unclaimed_item, refresh_batch_status, release_stale_items
from archive_app.lib.kaltura import Kaltura
from archive_app.mirror import sync
from archive_app.models import AuditEvent, Batch, BatchItem
from archive_app.scheduling import notices, policies

log = logging.getLogger(__name__)


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
    item = execute_item(item_id, token)
    return item.status if item is not None else "not ours"


def run_batch_items(pairs: list[list]) -> list[str]:
    """Several items of one batch at once, a thread each (ARCHIVE_PARALLEL_TRANSFERS): a worker then streams
    several entries where the link and Kaltura's latency, not the CPU, set the pace. Each item runs exactly as
    alone (its own claim, Kaltura client and database connection). If one raises for RQ's retry, the retry runs
    the group again: the items that ended are no job's to run any more (their claim is gone)."""
    from django.db import connection
    from rq import get_current_job
    from rq.job import _job_stack  # where get_current_job looks, per thread: the runner asks it about retries

    job = get_current_job()

    def one(pair) -> str:
        if job is not None:
            _job_stack.push(job)
        try:
            return run_batch_item(*pair)
        finally:
            if job is not None:
                _job_stack.pop()
            if threads > 1:
                connection.close()  # this thread's own

    # SQLite takes one writer at a time (and its shared in-memory test database locks whole tables): there the
    # items run one after another.
    threads = 1 if connection.vendor == "sqlite" else len(pairs)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="item") as pool:
        futures = [pool.submit(one, pair) for pair in pairs]
    for future in futures:
        if future.exception() is not None:
            raise future.exception()
    return [future.result() for future in futures]


def batch_item_job_failed(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ's on_failure of an item's job. A job that fails before its claim (the database or Redis failing)
    leaves the item queued; RQ's retry takes it again, but after the last attempt nothing would, and the item
    would wait forever. Then it fails, with the error, and a librarian's retry can queue it again."""
    if job.retries_left:
        return  # RQ retries it

    pairs = job.args[0] if job.func_name.endswith("run_batch_items") else [job.args]
    for item_id, token in pairs:
        fail_unclaimed_item(item_id, token, f"{exc_type.__name__}: {exc_value}")


def release_stale_items_job() -> dict:
    """Scheduled: fail the items whose worker died, in every batch, so their entries are free for a retry
    (batches.release_stale_items). Pages never do it: a GET writes nothing."""
    released = {}
    for batch in Batch.objects.filter(items__status__in=BatchItem.ACTIVE).distinct():
        count = release_stale_items(batch)
        if count:
            refresh_batch_status(batch.pk)
            audit.record(
                "release_stale",
                batch=batch,
                dry_run=False,
                outcome=AuditEvent.Outcome.FAILED,
                details={"items": count},
                message=f"{count} items whose worker stopped were marked failed",
            )
            released[batch.pk] = count
    return released


def audit_ip_retention_job() -> dict:
    """Scheduled: blank the IP addresses of audit events older than ARCHIVE_AUDIT_IP_RETENTION_DAYS."""
    return audit.blank_old_addresses()


def send_notices_job(batch_id: int) -> dict:
    return notices.send_notices(batch_id)


def run_policies_job() -> dict:
    """The scheduler's step: due policies make draft batches; held batches whose notice ended are queued."""
    return {
        "policies": [policies.policy_run(plan) for plan in policies.policies_plan()],
        "notices_resent": notices.resend_unfinished(notices.resend_plan()),
        "released": notices.release_due_batches(notices.release_plan()),
    }


def run_restore(restore_id: int, token: str) -> str:
    restore = restores.execute_restore(restore_id, token)
    return restore.status if restore is not None else "not ours"


def restore_poll_job() -> dict:
    """Scheduled: queue the restores waiting on Glacier (they check S3's Restore header) and any whose job died."""
    return restores.restore_poll()


def auto_restore_job() -> dict:
    """Scheduled: request restores of played placeholders and of ones replaced although recent."""
    return restores.auto_restore()


def fixity_audit_job() -> dict:
    """Scheduled: the fixity audit of every copy, then the sample re-hash (restores it needs are requested, and
    hashed by a later run once Glacier has them ready)."""

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
