"""Putting jobs on the RQ queue: by dotted path, once the current transaction commits.

Services call these, never `archive_app.jobs`: jobs import the services, so a service importing jobs would be an
import cycle. Jobs are named by their dotted path (what RQ stores in Redis anyway), so this module imports no
service and no job. Enqueueing on commit means a job never sees a row that was rolled back, nor misses one
that is not committed yet; outside a transaction Django runs the callback at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import django_rq
from django.conf import settings
from django.db import transaction
from rq import Callback, Retry

# Generous for a slow link: a 50 GB original at 10 MB/s is under 1.5 hours.
ASSUMED_BYTES_PER_SECOND = 10 * 1024 * 1024

QUEUE = "default"


def job_timeout_seconds(bytes_to_copy: int) -> int:
    return 900 + bytes_to_copy // ASSUMED_BYTES_PER_SECOND


def enqueue(func: str, *args: Any, delay: timedelta | None = None, **options: Any) -> None:
    """Queue `func` (a dotted path such as "archive_app.jobs.run_batch_item") after the transaction commits."""

    def send() -> None:
        queue = django_rq.get_queue(QUEUE)
        if delay is not None:
            # Due, it goes to the front of the queue: a check back on Kaltura is one cheap request, and
            # behind a batch's thousands of queued items it would hold its entry's lock for hours.
            queue.enqueue_in(delay, func, *args, at_front=True, **options)
        else:
            queue.enqueue(func, *args, **options)

    transaction.on_commit(send)


def _item_options(items: list[Any]) -> dict[str, Any]:
    """Retries, and a timeout sized to what the items copy (together: they share the link)."""
    return {
        "retry": Retry(max=3, interval=[10, 60, 300]),
        "on_failure": Callback("archive_app.jobs.batch_item_job_failed"),
        "job_timeout": job_timeout_seconds(sum(item.bytes_to_copy for item in items)),
        "description": f"batch {items[0].batch_id}: {', '.join(item.entry_id for item in items)}"[:200],
    }


def batch_item(item: Any, delay: timedelta | None = None) -> None:
    """Queue one batch item, with retries and a timeout sized to what it copies."""
    enqueue("archive_app.jobs.run_batch_item", item.id, item.job_id, delay=delay, **_item_options([item]))


def batch_items(items: list[Any]) -> None:
    """Queue a batch's items: one job each, or ARCHIVE_PARALLEL_TRANSFERS of them a job (run side by side).
    An item that waits on Kaltura later checks back in a job of its own (batch_item with a delay)."""
    size = settings.ARCHIVE_PARALLEL_TRANSFERS
    for start in range(0, len(items), max(size, 1)):
        group = items[start : start + max(size, 1)]
        if len(group) == 1:
            batch_item(group[0])
        else:
            pairs = [[item.id, item.job_id] for item in group]
            enqueue("archive_app.jobs.run_batch_items", pairs, **_item_options(group))


def restore(restore_id: int, token: str, size_bytes: int = 0, delay: timedelta | None = None) -> None:
    """Queue one step of a restore, with retries and a timeout sized to what it uploads."""
    enqueue(
        "archive_app.jobs.run_restore",
        restore_id,
        token,
        delay=delay,
        retry=Retry(max=3, interval=[10, 60, 300]),
        job_timeout=job_timeout_seconds(size_bytes),
        description=f"restore {restore_id}",
    )


def send_notices(batch_id: int) -> None:
    """Queue the owner notices of a held batch."""
    enqueue(
        "archive_app.jobs.send_notices_job",
        batch_id,
        retry=Retry(max=3, interval=[60, 300, 1800]),
        job_timeout=3600,
        description=f"batch {batch_id}: owner notices",
    )
