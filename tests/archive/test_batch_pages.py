"""Batch pages: create from a filter, preview, approve, progress; and who may do it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from rq import SimpleWorker

from archive_app.lib.kaltura import Kaltura
from archive_app.mirror import sync
from archive_app.models import ArchiveCopy, AuditEvent, Batch, BatchItem, Entry, Flavor
from archive_app.web import wording

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def old_entries(kaltura_sim, s3, rq_queue, settings):
    settings.KALTURA_RETRY_DELAYS = (0.01,)
    settings.ARCHIVE_REPLACEMENT_WAIT_SECONDS = 20
    old = int((datetime.now(tz=UTC) - timedelta(days=6 * 365)).timestamp())
    ids = [kaltura_sim.state.add_entry(name=f"Old seminar {n}", createdAt=old, tags="forgotten") for n in range(2)]
    sync.sync_full(Kaltura.from_settings())
    return ids


def test_batch_pages_refuse_users_without_the_role(client, make_user, old_entries):
    client.force_login(make_user("nobody", role=None))
    assert client.get(reverse("batch_list")).status_code == 403
    response = client.post(reverse("batch_create"), {"action": "archive", "filter_query": "tags=forgotten"})
    assert response.status_code == 403
    assert not Batch.objects.exists()


def test_state_changes_only_by_post(client, make_user, old_entries):
    client.force_login(make_user())
    assert client.get(reverse("batch_create")).status_code == 405


def test_unknown_action_is_a_400_and_nothing_is_made(client, make_user, old_entries):
    client.force_login(make_user())
    response = client.post(reverse("batch_create"), {"action": "delete_everything", "filter_query": ""})
    assert response.status_code == 400
    assert not Batch.objects.exists()


def test_create_previews_and_approve_queues(client, make_user, old_entries, rq_queue):
    client.force_login(make_user())
    response = client.post(reverse("batch_create"), {"action": "archive", "filter_query": "tags=forgotten"})
    batch = Batch.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("batch_detail", args=[batch.pk])
    assert set(batch.items.values_list("entry_id", flat=True)) == set(old_entries)
    page = client.get(reverse("batch_detail", args=[batch.pk])).content.decode()
    assert "Dry run" in page
    assert "<li>Copy original to S3 (" in page and "<li>Check the copy (size and SHA-256)</li>" in page
    assert "Old seminar 0" in page  # names beside ids
    assert AuditEvent.objects.filter(batch=batch, dry_run=True).count() >= 2

    # Without the confirmation page's button nothing is approved.
    unconfirmed = client.post(reverse("batch_approve", args=[batch.pk]))
    assert unconfirmed["Location"] == reverse("batch_confirm", args=[batch.pk])
    assert Batch.objects.get().status == "draft" and rq_queue.count == 0
    approved = client.post(reverse("batch_approve", args=[batch.pk]), {"confirmed": "yes"}, follow=True)
    assert "Approved: 2 entries running." in approved.content.decode()
    assert rq_queue.count == 2
    assert set(BatchItem.objects.values_list("status", flat=True)) == {"queued"}


def test_a_batch_over_the_cap_is_refused_with_a_message(client, make_user, old_entries, settings):
    settings.ARCHIVE_MAX_BATCH_SIZE = 1
    client.force_login(make_user())
    response = client.post(
        reverse("batch_create"), {"action": "archive", "filter_query": "tags=forgotten"}, follow=True
    )
    # The real size of the selection, not the cap plus one the view once read to detect it.
    assert "The selection has 2 entries; a batch may have at most 1." in response.content.decode()
    assert not Batch.objects.exists()


@pytest.mark.browser
def test_librarian_makes_a_batch_from_a_filter_and_watches_it_finish(page, sign_in, make_user, old_entries, rq_queue):
    sign_in(make_user("lena"))
    page.goto("/entries/?tags=forgotten")
    assert page.locator("table tbody tr").count() == 2
    page.select_option("select[name=action]", "archive")
    page.click("[data-testid=preview-filter]")
    page.wait_for_selector("[data-testid=preview]")
    assert page.get_by_test_id("to-process").inner_text() == "2"
    page.click("text=Approve and run 2 entries")
    page.click("[data-testid=confirm-approve]")
    page.wait_for_selector("[data-testid=batch-progress][data-status=running]")

    # A real worker (in this process, sharing the test database) does the jobs.
    SimpleWorker([rq_queue], connection=rq_queue.connection).work(burst=True)
    page.wait_for_selector("[data-testid=batch-progress][data-status=done]", timeout=20_000)
    assert "done: 2" in page.get_by_test_id("counts").inner_text()
    assert ArchiveCopy.objects.count() == 2


def test_entry_page_shows_the_archive_copy_and_its_history(client, make_user, old_entries, rq_queue):
    client.force_login(make_user())
    client.post(reverse("batch_create"), {"action": "archive", "filter_query": "tags=forgotten"})
    client.post(reverse("batch_approve", args=[Batch.objects.get().pk]), {"confirmed": "yes"})
    SimpleWorker([rq_queue], connection=rq_queue.connection).work(burst=True)
    copy = ArchiveCopy.objects.get(entry_id=old_entries[0])
    page = client.get(reverse("entry_detail", args=[old_entries[0]])).content.decode()
    assert copy.sha256 in page
    for action in ("preview_archive", "copy", "verify", "tag_archived"):
        assert f'{wording.action_label(action)} <code class="small text-muted">{action}</code>' in page
    # The job refreshed the mirror row: the page shows the new state, and says when it was read.
    assert 'data-testid="archive-state">archived (copy in S3)' in page
    assert "when its last job finished" in page and "as of the last sync" not in page


def test_health_page_checks_live_state(client, make_user, old_entries, rq_queue, s3, settings):
    client.force_login(make_user())
    client.post(reverse("batch_create"), {"action": "archive", "filter_query": "tags=forgotten"})
    client.post(reverse("batch_approve", args=[Batch.objects.get().pk]), {"confirmed": "yes"})
    SimpleWorker([rq_queue], connection=rq_queue.connection).work(burst=True)
    assert "All 2 entries are healthy" in client.get(reverse("health"), {"tags": "forgotten"}).content.decode()
    s3.delete_object(Bucket=settings.AWS_BUCKET, Key=old_entries[1])
    page = client.get(reverse("health"), {"tags": "forgotten"}).content.decode()
    assert "1 of 2 entries are unhealthy" in page and "no S3 object" in page
    assert client.get(reverse("health"), {"plays_lt": "-5"}).status_code == 400
    # By default it checks every archived entry: the simulator's old-tool tags without S3 objects show up.
    assert "tagged archived_to_s3 but no S3 object" in client.get(reverse("health")).content.decode()


def test_viewing_a_batch_never_releases_items_the_scheduled_job_and_cancel_do(client, make_user, rq_queue):
    """htmx polls the batch page every 2 s: a GET must write nothing, even for an item whose worker died."""
    from archive_app.jobs import release_stale_items_job

    librarian = make_user()
    client.force_login(librarian)
    long_ago = datetime.now(tz=UTC) - timedelta(days=1)
    batches_ = []
    for n in range(2):
        batch = Batch.objects.create(action=Batch.Action.ARCHIVE, created_by=librarian, status=Batch.Status.RUNNING)
        BatchItem.objects.create(
            batch=batch,
            entry_id=f"1_stale{n:03d}",
            status=BatchItem.Status.RUNNING,
            heartbeat_at=long_ago,
            job_id=f"job-{n}",
        )
        batches_.append(batch)
    live = BatchItem.objects.create(
        batch=batches_[0],
        entry_id="1_working",
        status=BatchItem.Status.RUNNING,
        heartbeat_at=datetime.now(tz=UTC),
        job_id="job-live",
    )
    events = AuditEvent.objects.count()
    for _ in range(3):
        assert client.get(reverse("batch_detail", args=[batches_[0].pk])).status_code == 200
        assert client.get(reverse("batch_detail", args=[batches_[0].pk]), HTTP_HX_REQUEST="true").status_code == 200
    assert set(BatchItem.objects.values_list("status", flat=True)) == {"running"}
    assert AuditEvent.objects.count() == events

    assert release_stale_items_job() == {batches_[0].pk: 1, batches_[1].pk: 1}
    statuses = dict(BatchItem.objects.values_list("entry_id", "status"))
    assert statuses == {"1_stale000": "failed", "1_stale001": "failed", "1_working": "running"}
    assert "worker stopped" in BatchItem.objects.get(entry_id="1_stale000").message
    assert AuditEvent.objects.filter(action="release_stale", batch=batches_[0]).get().details == {"items": 1}
    assert release_stale_items_job() == {}  # nothing twice
    live.refresh_from_db()
    assert live.status == "running"

    # Cancelling releases a dead worker's item too, rather than leaving it "running" in a cancelled batch.
    dead = BatchItem.objects.create(
        batch=batches_[1], entry_id="1_dead", status=BatchItem.Status.WAITING, heartbeat_at=long_ago, job_id="job-dead"
    )
    client.post(reverse("batch_cancel", args=[batches_[1].pk]))
    dead.refresh_from_db()
    assert dead.status == "failed"


def test_the_scheduler_releases_stale_items(rq_queue):
    from rq.cron import CronScheduler

    from archive_app.jobs import release_stale_items_job

    scheduler = CronScheduler(connection=rq_queue.connection, name="stale-items-test")
    scheduler.load_config_from_file("archive_app/cron.py")  # what `rqcron archive_app.cron` loads
    assert release_stale_items_job in [job.func for job in scheduler.get_jobs()]


def test_a_finished_replace_refreshes_the_mirror_without_a_sync(client, make_user, old_entries, rq_queue):
    """The flavors Kaltura made from the placeholder are in the mirror (and so on every page) at once."""
    client.force_login(make_user())
    entry_id = old_entries[0]
    before = dict(Flavor.objects.filter(entry_id=entry_id).values_list("id", "size_bytes"))
    client.post(reverse("batch_create"), {"action": "archive_replace", "filter_query": f"ids={entry_id}"})
    client.post(reverse("batch_approve", args=[Batch.objects.get().pk]), {"confirmed": "yes"})
    SimpleWorker([rq_queue], connection=rq_queue.connection).work(burst=True)
    assert BatchItem.objects.get().status == "done"
    live = {flavor.id: flavor.size_bytes for flavor in Kaltura.from_settings().flavors(entry_id)}
    mirrored = dict(Flavor.objects.filter(entry_id=entry_id).values_list("id", "size_bytes"))
    assert mirrored == live and mirrored != before
    entry = Entry.objects.get(pk=entry_id)
    assert entry.archive_state == "placeholder" and entry.total_flavor_bytes == sum(live.values())
    page = client.get(reverse("entry_detail", args=[entry_id])).content.decode()
    assert "when its last job finished" in page
    browse = client.get(reverse("entry_list"), {"state": "placeholder"}).content.decode()
    assert f'data-entry-id="{entry_id}"' in browse


def test_every_skipped_row_says_why_and_never_pending(client, make_user, old_entries, kaltura_sim, rq_queue):
    recent = kaltura_sim.state.add_entry(name="New lecture", tags="forgotten")
    sync.sync_full(Kaltura.from_settings())
    client.force_login(make_user())
    client.post(reverse("batch_create"), {"action": "archive", "filter_query": "tags=forgotten"})
    batch = Batch.objects.get()
    row = _item_row(client.get(reverse("batch_detail", args=[batch.pk])).content.decode(), recent)
    assert "Will be skipped" in row and "Skipped: created less than 365 days ago" in row
    assert "pending" not in row.lower()
    assert "New lecture" in row
    client.post(reverse("batch_approve", args=[batch.pk]), {"confirmed": "yes"})
    row = _item_row(client.get(reverse("batch_detail", args=[batch.pk])).content.decode(), recent)
    assert '<td data-testid="item-status">Skipped</td>' in row and "created less than 365 days ago" in row


def _item_row(page: str, entry_id: str) -> str:
    start = page.index(f'<tr data-entry="{entry_id}">')
    return page[start : page.index("</tr>", start)]


def test_the_confirmation_shows_the_totals_and_owners_and_changes_nothing(client, make_user, old_entries):
    client.force_login(make_user())
    client.post(reverse("batch_create"), {"action": "archive", "filter_query": "tags=forgotten"})
    batch = Batch.objects.get()
    events = AuditEvent.objects.count()
    page = client.get(reverse("batch_confirm", args=[batch.pk])).content.decode()
    to_copy = sum(BatchItem.objects.values_list("bytes_to_copy", flat=True))
    assert to_copy > 0 and f"{to_copy:,} bytes" in page
    assert 'data-testid="confirm-entries">2<' in page
    owners = set(Entry.objects.filter(id__in=old_entries).values_list("owner_id", flat=True))
    assert all(f"<li>{owner}: " in page for owner in owners)
    assert Batch.objects.get().status == "draft" and AuditEvent.objects.count() == events
    assert 'name="confirmed" value="yes"' in page


def test_a_policy_batch_at_the_cap_says_how_many_the_policy_selects(client, policy_world, settings):
    from archive_app.scheduling import policies
    from tests.policy_world import make_policy

    settings.ARCHIVE_MAX_BATCH_SIZE = 2
    batch_id = policies.policy_run(make_policy(policy_world), execute=True)["batch"]
    client.force_login(policy_world.librarian)
    page = client.get(reverse("batch_detail", args=[batch_id])).content.decode()
    assert "Its policy selects 5 entries now; a batch holds at most 2, so this one has 2" in page
