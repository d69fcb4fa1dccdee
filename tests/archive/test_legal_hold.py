"""Legal hold (issue 15): placed by an archive admin on the entry page, audited; every action refuses a held entry
with a plain reason (archive, archive and replace, replace, restore), in the preview and again in the job; the
copies' S3 versions get an Object Lock legal hold where the bucket has Object Lock."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.urls import reverse

from archive_app.archive import holds, restores
from archive_app.lib.kaltura import Kaltura
from archive_app.lib.storage import ArchiveStore
from archive_app.models import ArchiveCopy, AuditEvent, Batch, BatchItem, LegalHold
from tests.archive.test_custody import new_entry, run_batch
from tests.archive.test_restore import make_placeholders

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(kaltura_sim, s3, rq_queue, settings, make_user):
    settings.KALTURA_RETRY_DELAYS = (0.01, 0.01)
    settings.ARCHIVE_REPLACEMENT_WAIT_SECONDS = 20
    settings.ARCHIVE_STORAGE_CLASS = "STANDARD"
    return kaltura_sim, make_user("lib", "librarian"), make_user("ada", "admin")


def place_on_page(client, admin, entry_id: str, reason: str = "subpoena 2026-17"):
    client.force_login(admin)
    response = client.post(reverse("entry_legal_hold", args=[entry_id]), {"action": "place", "reason": reason})
    assert response.status_code == 302
    page = client.get(reverse("entry_detail", args=[entry_id])).content.decode()
    assert 'data-testid="legal-hold-status"' in page and reason in page


def test_a_held_entry_is_refused_by_archive_and_by_archive_and_replace(world, rq_queue, client):
    sim, librarian, admin = world
    entry_ids = [new_entry(sim, "Held lecture"), new_entry(sim, "Free lecture")]
    held, free = entry_ids
    place_on_page(client, admin, held)
    assert AuditEvent.objects.filter(action=holds.PLACE_ACTION, entry_id=held, username="ada").exists()

    for action in (Batch.Action.ARCHIVE, Batch.Action.ARCHIVE_REPLACE):
        batch = run_batch(sim, rq_queue, librarian, action, entry_ids)
        item = BatchItem.objects.get(batch=batch, entry_id=held)
        assert item.status == BatchItem.Status.SKIPPED
        assert "under legal hold" in item.skip_reason and "subpoena 2026-17" in item.skip_reason
        assert BatchItem.objects.get(batch=batch, entry_id=free).status == BatchItem.Status.DONE
    assert not ArchiveCopy.objects.filter(entry_id=held).exists()


def test_a_hold_placed_after_the_preview_stops_the_job(world, rq_queue):
    sim, librarian, admin = world
    from archive_app.archive import batches
    from tests.archive.test_custody import run_jobs

    entry_id = new_entry(sim)
    batch = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE_REPLACE, entry_ids=[entry_id])
    batches.batch_preview(batch, user=librarian)
    holds.hold_place(entry_id, user=admin, reason="records request")
    batches.batch_approve(batch, user=librarian)
    run_jobs(rq_queue)
    item = BatchItem.objects.get(batch=batch)
    assert item.status in (BatchItem.Status.SKIPPED, BatchItem.Status.FAILED)
    assert "under legal hold" in (item.skip_reason + item.message)
    assert "flavors_deleted" not in sim.state.get_entry(entry_id)["tags"]


def test_a_held_placeholder_is_not_restored_and_is_again_once_released(world, rq_queue, client):
    sim, librarian, admin = world
    (entry_id,), _ = make_placeholders(sim, rq_queue, admin, count=1)
    place_on_page(client, admin, entry_id)
    kaltura, store = Kaltura.from_settings(), ArchiveStore.from_settings()
    plan = restores.restore_preview(entry_id, tier="Standard", user=admin, kaltura=kaltura, store=store)
    assert plan.skipped and "under legal hold" in plan.skip_reason
    with pytest.raises(restores.RestoreError, match="under legal hold"):
        restores.restore_request(
            entry_id=entry_id, tier="Standard", source="manual", user=admin, kaltura=kaltura, store=store
        )
    # A replace batch refuses it too (it is a placeholder already, but the hold is the reason given).
    batch = run_batch(sim, rq_queue, librarian, Batch.Action.REPLACE, [entry_id])
    assert "under legal hold" in BatchItem.objects.get(batch=batch).skip_reason

    client.post(reverse("entry_legal_hold", args=[entry_id]), {"action": "release"})
    assert not LegalHold.objects.exists()
    assert AuditEvent.objects.filter(action=holds.RELEASE_ACTION, entry_id=entry_id).exists()
    plan = restores.restore_preview(entry_id, tier="Standard", user=admin, kaltura=kaltura, store=store)
    assert not plan.skipped


def test_bad_hold_requests_are_refused_with_a_message_and_change_nothing(world, client):
    sim, _, admin = world
    entry_id = new_entry(sim)
    client.force_login(admin)
    url = reverse("entry_legal_hold", args=[entry_id])
    response = client.post(url, {"action": "place", "reason": "   "}, follow=True)
    assert "Say why the entry is held" in response.content.decode() and not LegalHold.objects.exists()
    response = client.post(url, {"action": "release"}, follow=True)
    assert "is not under legal hold" in response.content.decode()
    client.post(url, {"action": "place", "reason": "case 1"})
    response = client.post(url, {"action": "place", "reason": "case 2"}, follow=True)
    assert "already under legal hold" in response.content.decode()
    assert list(LegalHold.objects.values_list("reason", flat=True)) == ["case 1"]
    assert client.post(reverse("entry_legal_hold", args=["0_nosuchid"]), {"reason": "x"}).status_code == 404


def test_the_copies_get_an_object_lock_legal_hold_where_the_bucket_has_object_lock(world, rq_queue, s3, settings):
    sim, librarian, admin = world
    settings.AWS_BUCKET = "kaltura-archive-locked"
    s3.create_bucket(Bucket=settings.AWS_BUCKET, ObjectLockEnabledForBucket=True)
    entry_id = new_entry(sim)
    run_batch(sim, rq_queue, librarian, Batch.Action.ARCHIVE, [entry_id])
    copy = ArchiveCopy.objects.get(entry_id=entry_id)
    holds.hold_place(entry_id, user=admin, reason="litigation")
    status = s3.get_object_legal_hold(Bucket=settings.AWS_BUCKET, Key=copy.key, VersionId=copy.version_id)
    assert status["LegalHold"]["Status"] == "ON"
    holds.hold_release(entry_id, user=admin)
    status = s3.get_object_legal_hold(Bucket=settings.AWS_BUCKET, Key=copy.key, VersionId=copy.version_id)
    assert status["LegalHold"]["Status"] == "OFF"


def test_without_object_lock_the_hold_is_in_the_app_and_the_event_says_so(world, rq_queue):
    sim, librarian, admin = world
    entry_id = new_entry(sim)
    run_batch(sim, rq_queue, librarian, Batch.Action.ARCHIVE, [entry_id])
    holds.hold_place(entry_id, user=admin, reason="litigation")
    event = AuditEvent.objects.get(action=holds.PLACE_ACTION)
    assert "held in the app only" in event.details["s3"][0]
    assert settings.AWS_BUCKET in event.details["s3"][0]
