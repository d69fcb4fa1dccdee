"""Pacing: a simulator that rate-limits like a real partner (ACTION_BLOCKED), the adapter's backoff, and the
requests-per-second cap shared by every process through Redis."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from rq import SimpleWorker

from archive_app.archive import batches
from archive_app.lib.kaltura import Kaltura, KalturaError, pacing_status
from archive_app.mirror import sync
from archive_app.models import Batch, BatchItem, Entry, SyncRun

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def limited(kaltura_sim, rq_queue, settings):
    """The simulator refusing more than 6 requests a second; retries fast enough for a test."""
    settings.KALTURA_RETRY_DELAYS = (0.01, 0.01)
    settings.KALTURA_BLOCKED_RETRY_DELAYS = (0.4,) * 12
    kaltura_sim.state.rate_limit.per_second = 6
    yield kaltura_sim
    kaltura_sim.state.rate_limit.per_second = None


def busy_threads(count: int, calls: int) -> list[Kaltura]:
    """`count` adapters (one per thread, as workers and a sync have) making `calls` list calls each at once."""
    adapters = [Kaltura.from_settings() for _ in range(count)]
    errors = []

    def work(kaltura):
        try:
            for _ in range(calls):
                kaltura.list_entries(page_size=5)
        except KalturaError as exc:  # pragma: no cover - shown by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in adapters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    return adapters


def test_a_blocked_call_is_retried_after_a_pause_and_succeeds(limited):
    adapters = busy_threads(4, 6)
    assert limited.state.rate_limit.blocked > 0, "four busy workers call faster than the partner allows"
    assert sum(k.blocked_count for k in adapters) == limited.state.rate_limit.blocked
    assert pacing_status()["blocked"]["call"] == "media.list"


def test_the_cap_is_shared_by_every_worker_so_none_is_blocked(limited, settings):
    settings.KALTURA_MAX_REQUESTS_PER_SECOND = 5  # below the partner's 6
    started = time.monotonic()
    adapters = busy_threads(4, 4)  # and a session each: 20 requests
    elapsed = time.monotonic() - started
    assert limited.state.rate_limit.blocked == 0
    assert elapsed >= 19 / 5 - 0.2, "spaced 1/5 s apart across all four"
    assert sum(k.paced_seconds for k in adapters) > 0
    status = pacing_status()
    assert status["capped"]["per_second"] == 5 and status["blocked"] is None


@pytest.mark.slow
def test_a_rate_limited_kaltura_is_synced_and_archived_without_one_failed_item(limited, s3, rq_queue, make_user):
    old = int((datetime.now(tz=UTC) - timedelta(days=5 * 365)).timestamp())
    entry_ids = [limited.state.add_entry(name=f"Old lecture {n}", createdAt=old) for n in range(3)]
    # Two syncs at once against a partner that blocks above 6 requests a second.
    runs = []
    threads = [
        threading.Thread(target=lambda: runs.append(sync.sync_full(Kaltura.from_settings()))),
        threading.Thread(target=busy_threads, args=(2, 6)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [run] = runs
    assert run.status == SyncRun.Status.SUCCEEDED
    assert set(entry_ids) <= set(Entry.objects.values_list("id", flat=True))

    librarian = make_user("lib", "librarian")
    batch = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE_REPLACE, entry_ids=entry_ids)
    batches.batch_preview(batch, user=librarian)
    batches.batch_approve(batch, user=librarian)
    # One worker alone calls faster than 3 a second while it archives.
    limited.state.rate_limit.per_second = 3
    blocked_before = limited.state.rate_limit.blocked
    SimpleWorker([rq_queue], connection=rq_queue.connection).work(burst=True)
    items = list(BatchItem.objects.filter(batch=batch))
    assert [i.status for i in items] == [BatchItem.Status.DONE] * 3, [i.message for i in items]
    assert limited.state.rate_limit.blocked > blocked_before, "the archive must meet the limit to show anything"


def test_the_sync_and_batch_pages_say_when_calls_are_paced(limited, settings, client, make_user):
    user = make_user("lib", "librarian")
    client.force_login(user)
    assert 'data-testid="kaltura-pacing"' not in client.get(reverse("home")).content.decode()

    settings.KALTURA_MAX_REQUESTS_PER_SECOND = 3
    run = sync.sync_full(Kaltura.from_settings())
    assert run.details["paced_seconds"] > 0
    home = client.get(reverse("home")).content.decode()
    assert 'data-testid="kaltura-pacing"' in home and "at most 3 a second" in home
    assert "calls paced" in home  # the sync's own summary

    batch = batches.batch_create(user=user, action=Batch.Action.ARCHIVE, entry_ids=[Entry.objects.first().id])
    page = client.get(reverse("batch_detail", args=[batch.pk])).content.decode()
    assert 'data-testid="kaltura-pacing"' in page
