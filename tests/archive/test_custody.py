"""Chain of custody bound to the content itself (issue 11), through the simulator, moto's S3 and a real worker.

Each test is a way the promise "no video is ever lost" used to break: content that changed after its copy, the
old tool's archives and placeholders, an owner's upload over a placeholder, a replacement Kaltura refused or
never finished, and two operations on one entry at once.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from rq import SimpleWorker
from rq.job import Job

from archive_app.archive import batches, health, holds, restores, runner
from archive_app.archive.workflow import read_live_state, read_live_states
from archive_app.lib.kaltura import Kaltura
from archive_app.lib.storage import ArchiveStore
from archive_app.mirror import sync
from archive_app.models import ArchiveCopy, AuditEvent, Batch, BatchItem, EntryLock, Restore
from tests.archive.test_restore import hold_restores_ongoing

pytestmark = pytest.mark.django_db(transaction=True)

OLD = int((datetime.now(tz=UTC) - timedelta(days=5 * 365)).timestamp())


@pytest.fixture
def world(kaltura_sim, s3, rq_queue, settings, make_user):
    settings.KALTURA_RETRY_DELAYS = (0.01, 0.01)
    settings.ARCHIVE_REPLACEMENT_WAIT_SECONDS = 5
    # moto will not read a Glacier object before a restore; these tests look at the bytes (the Glacier paths
    # are in test_restore.py, and below where the old tool's object is in Glacier).
    settings.ARCHIVE_STORAGE_CLASS = "STANDARD"
    return kaltura_sim, make_user("lib", "librarian"), make_user("ada", "admin")


def run_jobs(queue) -> None:
    """Run the jobs that are due, and the RQ retries of any that failed on the way.

    A job that fails before its claim (on a loaded machine: any error the database or Redis gives) is put on
    RQ's retry schedule, 10 s on (jobs.enqueue_item), where a burst worker never sees it: its item would still
    be queued when the test looks. Those retries are run now, until none is left (RQ stops after the last).
    The jobs an operation rescheduled itself (Wait: a new job with all its retries) stay on the schedule.
    """
    registry = queue.scheduled_job_registry
    while True:
        SimpleWorker([queue], connection=queue.connection).work(burst=True)
        jobs = Job.fetch_many(registry.get_job_ids(), connection=queue.connection)
        retries = [job for job in jobs if job is not None and job.retries_left is not None and job.retries_left < 3]
        if not retries:
            return
        for job in retries:
            registry.requeue(job)


def tags(sim, entry_id: str) -> set[str]:
    return {tag.strip() for tag in sim.state.get_entry(entry_id)["tags"].split(",") if tag.strip()}


def new_entry(sim, name: str = "Old lecture", **fields) -> str:
    entry_id = sim.state.add_entry(name=name, createdAt=OLD, **fields)
    sync.sync_full(Kaltura.from_settings())
    return entry_id


def run_batch(sim, queue, user, action: str, entry_ids: list[str]) -> Batch:
    batch = batches.batch_create(user=user, action=action, entry_ids=entry_ids)
    batches.batch_preview(batch, user=user)
    batches.batch_approve(batch, user=user)
    run_jobs(queue)
    return batch


def s3_bytes(s3, key: str, version_id: str = "") -> bytes:
    extra = {"VersionId": version_id} if version_id else {}
    return s3.get_object(Bucket=settings.AWS_BUCKET, Key=key, **extra)["Body"].read()


def owner_replaces(sim, entry_id: str, data: bytes) -> None:
    """KMC "Replace media": new bytes, same entry, same tags; the conversion finishes at the next request."""
    sim.state.replace_media(entry_id, data)
    sim.state.complete_conversions()


def problems(entry_id: str) -> list[str]:
    state = read_live_states([entry_id], Kaltura.from_settings(), ArchiveStore.from_settings())[entry_id]
    return health.entry_problems(state, known_placeholder_sizes=restores.known_placeholder_sizes())


# --- content replaced in Kaltura after the copy -------------------------------------------------


def test_content_replaced_after_the_copy_is_archived_first_and_both_copies_stay(world, rq_queue, s3):
    sim, librarian, _ = world
    entry_id = new_entry(sim)
    first_sha = sim.state.original_bytes_sha256(entry_id)
    run_batch(sim, rq_queue, librarian, Batch.Action.ARCHIVE, [entry_id])
    first = ArchiveCopy.objects.get(entry_id=entry_id)
    assert first.key == entry_id and first.sha256 == first_sha and first.flavor_version

    # The owner replaces the media in KMC: same entry, same tags (archived_to_s3 stays), new content.
    new_video = b"the owner's new lecture " * 4000
    owner_replaces(sim, entry_id, new_video)
    assert "archived_to_s3" in tags(sim, entry_id)
    assert any("content replaced in Kaltura after its copy" in p for p in problems(entry_id))

    # A replace alone refuses: the copy is of other content. Kaltura is untouched.
    replace = run_batch(sim, rq_queue, librarian, Batch.Action.REPLACE, [entry_id])
    item = replace.items.get()
    assert item.status == BatchItem.Status.SKIPPED
    assert item.message.startswith("archive the new content first"), item.message
    assert sim.state.original_bytes_sha256(entry_id) == hashlib.sha256(new_video).hexdigest()
    skip = AuditEvent.objects.get(batch=replace, action="preview_replace")
    assert skip.outcome == "skipped"
    assert skip.details["recorded_copy"]["version"] == first.flavor_version
    assert skip.details["live"]["version"] != first.flavor_version

    # Archive and replace: the preview says so, the new content gets a copy of its own, then the placeholder.
    both = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE_REPLACE, entry_ids=[entry_id])
    plan = batches.batch_preview(both, user=librarian)[entry_id]
    assert plan.steps[0].name == "copy" and plan.steps[0].description.startswith("archive the new content first")
    batches.batch_approve(both, user=librarian)
    run_jobs(rq_queue)
    assert both.items.get().status == BatchItem.Status.DONE, both.items.get().message
    copies = list(ArchiveCopy.objects.filter(entry_id=entry_id).order_by("id"))
    assert len(copies) == 2 and copies[0].pk == first.pk
    second = copies[1]
    assert second.key != first.key and second.key.startswith(f"{entry_id}/")
    assert second.sha256 == hashlib.sha256(new_video).hexdigest() and second.placeholder_version
    # Both contents are in S3, each byte for byte.
    assert hashlib.sha256(s3_bytes(s3, first.key)).hexdigest() == first_sha
    assert s3_bytes(s3, second.key) == new_video
    assert {"archived_to_s3", "flavors_deleted"} <= tags(sim, entry_id)
    assert problems(entry_id) == []

    # And a restore brings back the latest content, from its own copy.
    restore, _ = restores.restore_request(entry_id=entry_id, tier="Bulk", source=Restore.Source.MANUAL, user=None)
    run_jobs(rq_queue)
    restore.refresh_from_db()
    assert restore.status == Restore.Status.DONE, restore.error
    assert sim.state.original_bytes_sha256(entry_id) == hashlib.sha256(new_video).hexdigest()


def test_content_replaced_after_the_preview_is_refused_at_run_time(world, rq_queue):
    sim, librarian, _ = world
    entry_id = new_entry(sim)
    run_batch(sim, rq_queue, librarian, Batch.Action.ARCHIVE, [entry_id])
    replace = batches.batch_create(user=librarian, action=Batch.Action.REPLACE, entry_ids=[entry_id])
    assert batches.batch_preview(replace, user=librarian)[entry_id].step_names[0] == "upload_placeholder"
    batches.batch_approve(replace, user=librarian)
    new_video = b"uploaded after the preview " * 3000
    owner_replaces(sim, entry_id, new_video)
    run_jobs(rq_queue)
    item = replace.items.get()
    assert item.status == BatchItem.Status.SKIPPED and "archive the new content first" in item.message
    assert "flavors_deleted" not in tags(sim, entry_id)
    assert sim.state.original_bytes_sha256(entry_id) == hashlib.sha256(new_video).hexdigest()


def _run_to_replace_content(sim, librarian, entry_id):
    """A job of an archive-and-replace item, its steps run up to media.updateContent, as its plan has them."""
    batch = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE_REPLACE, entry_ids=[entry_id])
    batches.batch_preview(batch, user=librarian)
    batches.batch_approve(batch, user=librarian)
    item = batch.items.get()
    claimed = batches.claim_item(item.id, item.job_id)
    run = runner.Run(batches.ITEMS, claimed, Kaltura.from_settings(), ArchiveStore.from_settings(), librarian)
    run.read_state()
    steps = batches.ITEMS.plan(run).steps
    assert [step.name for step in steps][:5] == [
        "copy",
        "verify",
        "tag_archived",
        "upload_placeholder",
        "replace_content",
    ]
    for step in steps[:4]:
        batches.STEPS[step.name](run)
    # archived_to_s3 is owed, to be written in the one request of media.updateContent.
    assert "archived_to_s3" not in tags(sim, entry_id)
    return run


def test_right_before_update_content_the_entry_is_read_again(world, rq_queue):
    """An exemption tag added while the placeholder uploads stops the replacement before updateContent; the
    entry, whose copy is made and checks out in S3, still gets archived_to_s3, and the owner's tags stay."""
    sim, librarian, _ = world
    entry_id = new_entry(sim)
    original = sim.state.original_bytes_sha256(entry_id)
    run = _run_to_replace_content(sim, librarian, entry_id)
    sim.state.set_tags(entry_id, "Physics, archive_exempt")
    with pytest.raises(runner.Refused, match="right before media.updateContent: exempt") as refused:
        batches.step_replace_content(run)
    assert sim.state.original_bytes_sha256(entry_id) == original
    assert not sim.state.get_entry(entry_id)["replacingEntryId"]
    assert tags(sim, entry_id) == {"physics", "archive_exempt", "archived_to_s3"}
    assert refused.value.details["tags"]["tags_after"].endswith("archived_to_s3")


def test_a_copy_that_no_longer_checks_out_in_s3_is_neither_replaced_nor_tagged(world, rq_queue):
    sim, librarian, _ = world
    entry_id = new_entry(sim)
    run = _run_to_replace_content(sim, librarian, entry_id)
    ArchiveCopy.objects.filter(entry_id=entry_id).update(sha256="0" * 64)  # what S3 holds is not what was recorded
    with pytest.raises(runner.Refused, match="no longer checks out"):
        batches.step_replace_content(run)
    assert "archived_to_s3" not in tags(sim, entry_id)
    assert not sim.state.get_entry(entry_id)["replacingEntryId"]


def test_the_archived_tag_goes_with_update_content_in_one_request_and_the_owners_tags_stay(world, rq_queue):
    sim, librarian, _ = world
    entry_id = new_entry(sim)
    run = _run_to_replace_content(sim, librarian, entry_id)
    sim.state.set_tags(entry_id, "Physics")
    sim.state.reset_counters()
    details = batches.step_replace_content(run)
    assert sim.state.counters == {"multirequest": 2}  # the re-read; media.update with media.updateContent
    assert sim.state.subrequest_counters["media.updateContent"] == 1
    assert details["tags_after"] == "physics, archived_to_s3" and tags(sim, entry_id) == {"physics", "archived_to_s3"}
    assert sim.state.get_entry(entry_id)["replacingEntryId"] or sim.state.original_bytes_sha256(entry_id)


@pytest.mark.parametrize("change", ["played", "exempt_tag", "legal_hold", "content_gone_from_s3_view"])
def test_what_changes_after_update_content_cannot_stop_the_placeholder_being_recorded(
    world, rq_queue, settings, change
):
    """Once the replacement is sent, the entry's original is going: the item sees it through and records the
    placeholder (or a restore could never find it), whatever a play, an exemption or a hold says meanwhile."""
    sim, librarian, admin = world
    settings.ARCHIVE_REPLACEMENT_WAIT_SECONDS = 0
    sim.state.conversion_delay = 600
    try:
        entry_id = new_entry(sim)
        batch = run_batch(sim, rq_queue, librarian, Batch.Action.ARCHIVE_REPLACE, [entry_id])
        item = batch.items.get()
        assert item.status == BatchItem.Status.WAITING, item.message
        if change == "played":
            sim.state.play(entry_id)  # the original, still playing while Kaltura converts
        elif change == "exempt_tag":
            sim.state.set_tags(entry_id, "archived_to_s3, archive_exempt")
        elif change == "legal_hold":
            holds.hold_place(entry_id, user=admin, reason="case 12")
        else:
            # What the job would see of S3 now does not matter: it is not read again once the swap is sent.
            ArchiveCopy.objects.filter(entry_id=entry_id).update(sha256="0" * 64)
        sim.state.complete_conversions()
        batches.execute_item(item.id, item.job_id)
        item.refresh_from_db()
        assert item.status == BatchItem.Status.DONE, item.message
        copy = ArchiveCopy.objects.get(entry_id=entry_id)
        assert copy.replaced_at is not None and copy.placeholder_flavor_id and copy.placeholder_size
        assert {"archived_to_s3", "flavors_deleted"} <= tags(sim, entry_id)
    finally:
        sim.state.conversion_delay = 0


# --- the old tool's archives ----------------------------------------------------------------------


def test_an_old_tool_placeholder_in_an_archive_run_keeps_its_s3_object_and_is_adopted_by_hash(world, rq_queue, s3):
    sim, librarian, _ = world
    entry_id = new_entry(sim, tags="archived_to_s3, flavors_deleted")
    placeholder_sha = sim.state.original_bytes_sha256(entry_id)
    original = bytes(range(256)) * 900
    s3.put_object(Bucket=settings.AWS_BUCKET, Key=entry_id, Body=original, StorageClass="GLACIER")

    batch = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE_REPLACE, entry_ids=[entry_id])
    plan = batches.batch_preview(batch, user=librarian)[entry_id]
    # Never "copy again": Kaltura holds the placeholder. The S3 object itself is hashed, after a Glacier restore.
    assert plan.step_names == ["s3_restore", "s3_wait", "adopt_hash"], plan.summary()
    assert "retrieval fee" in plan.steps[0].description
    batches.batch_approve(batch, user=librarian)
    run_jobs(rq_queue)
    item = batch.items.get()
    assert item.status == BatchItem.Status.DONE, item.message
    copy = ArchiveCopy.objects.get(entry_id=entry_id)
    assert copy.sha256 == hashlib.sha256(original).hexdigest()
    assert copy.get_sha256_source_display() == "adopted: hash computed from S3" and copy.replaced_at
    assert s3_bytes(s3, entry_id) == original  # its exact bytes
    assert len(s3.list_objects_v2(Bucket=settings.AWS_BUCKET)["Contents"]) == 1
    assert sim.state.original_bytes_sha256(entry_id) == placeholder_sha  # Kaltura untouched

    # Archiving it again changes nothing more.
    again = run_batch(sim, rq_queue, librarian, Batch.Action.ARCHIVE, [entry_id])
    assert again.items.get().message == "already replaced"


def test_an_old_tool_archive_of_other_size_is_never_written_over(world, rq_queue, s3):
    sim, librarian, _ = world
    entry_id = new_entry(sim, tags="archived_to_s3")
    s3.put_object(Bucket=settings.AWS_BUCKET, Key=entry_id, Body=b"an older original", StorageClass="STANDARD")
    original_sha = sim.state.original_bytes_sha256(entry_id)
    batch = run_batch(sim, rq_queue, librarian, Batch.Action.ARCHIVE, [entry_id])
    assert batch.items.get().status == BatchItem.Status.DONE, batch.items.get().message
    assert s3_bytes(s3, entry_id) == b"an older original"
    copy = ArchiveCopy.objects.get(entry_id=entry_id)
    assert copy.key != entry_id and hashlib.sha256(s3_bytes(s3, copy.key)).hexdigest() == original_sha


# --- an owner's upload over a placeholder -----------------------------------------------------


def make_placeholder(sim, queue, user) -> tuple[str, str]:
    entry_id = new_entry(sim)
    original = sim.state.original_bytes_sha256(entry_id)
    run_batch(sim, queue, user, Batch.Action.ARCHIVE_REPLACE, [entry_id])
    assert "flavors_deleted" in tags(sim, entry_id)
    return entry_id, original


def test_a_new_upload_over_a_placeholder_then_played_is_never_restored_over(world, rq_queue, settings):
    sim, librarian, admin = world
    entry_id, _ = make_placeholder(sim, rq_queue, librarian)
    copy = ArchiveCopy.objects.get(entry_id=entry_id)
    assert copy.placeholder_flavor_id and copy.placeholder_version and copy.placeholder_size

    new_video = b"a new recording by the owner " * 5000
    owner_replaces(sim, entry_id, new_video)
    sim.state.play(entry_id, when=time.time() + 5)  # a play after the replacement, to the second
    assert "flavors_deleted" in tags(sim, entry_id)  # the tag stays, the content is the owner's
    entry_before = sim.state.get_entry(entry_id)

    # The automatic restore of played placeholders refuses it, with the reason audited.
    settings.ARCHIVE_MIN_AGE_DAYS = 365
    restores.auto_restore()
    assert not Restore.objects.filter(entry_id=entry_id).exists()
    refusal = AuditEvent.objects.get(entry_id=entry_id, action="restore_request", outcome="refused")
    assert refusal.message.startswith(restores.PLACEHOLDER_ON_NEW_CONTENT)
    assert refusal.details["recorded_placeholder"]["version"] == copy.placeholder_version
    assert refusal.details["live"]["version"] != copy.placeholder_version
    # An admin cannot restore over it either, not even by confirming: the placeholder was recorded.
    with pytest.raises(restores.RestoreError, match="placeholder tag on new content"):
        restores.restore_request(
            entry_id=entry_id, tier="Bulk", source=Restore.Source.MANUAL, user=admin, confirm_placeholder=True
        )
    run_jobs(rq_queue)
    assert sim.state.original_bytes_sha256(entry_id) == hashlib.sha256(new_video).hexdigest()
    assert sim.state.get_entry(entry_id)["updatedAt"] == entry_before["updatedAt"]
    assert any(p.startswith(restores.PLACEHOLDER_ON_NEW_CONTENT) for p in problems(entry_id))


def test_a_new_upload_after_the_restore_was_requested_stops_its_job(world, rq_queue):
    sim, librarian, admin = world
    entry_id, _ = make_placeholder(sim, rq_queue, librarian)
    restore, _ = restores.restore_request(entry_id=entry_id, tier="Bulk", source=Restore.Source.MANUAL, user=admin)
    new_video = b"uploaded while the restore was queued " * 3000
    owner_replaces(sim, entry_id, new_video)
    run_jobs(rq_queue)
    restore.refresh_from_db()
    assert restore.status == Restore.Status.FAILED and restore.error.startswith(restores.PLACEHOLDER_ON_NEW_CONTENT)
    assert sim.state.original_bytes_sha256(entry_id) == hashlib.sha256(new_video).hexdigest()
    assert not EntryLock.objects.exists()
    event = AuditEvent.objects.get(entry_id=entry_id, action="restore_failed")
    assert event.outcome == "refused" and "recorded_placeholder" in event.details


# --- replacements Kaltura refuses, fails or never finishes --------------------------------------


def test_a_refused_update_content_then_retried_finishes(world, rq_queue):
    sim, librarian, _ = world
    entry_id = new_entry(sim)
    batch = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE_REPLACE, entry_ids=[entry_id])
    batches.batch_preview(batch, user=librarian)
    batches.batch_approve(batch, user=librarian)
    sim.state.inject_fault("kaltura_error", count=1, service="media", action="updateContent", code="SERVICE_FORBIDDEN")
    run_jobs(rq_queue)
    item = batch.items.get()
    assert item.status == BatchItem.Status.FAILED and "SERVICE_FORBIDDEN" in item.message
    assert not EntryLock.objects.exists()  # a failed item holds nothing

    assert batches.batch_retry_failed(batch, user=librarian) == 1
    run_jobs(rq_queue)
    item = batch.items.get()  # previewed again: a new row
    assert item.status == BatchItem.Status.DONE, item.message
    assert "flavors_deleted" in tags(sim, entry_id)


def test_a_replacement_kaltura_dropped_fails_with_a_reason_instead_of_waiting(world, rq_queue):
    """updateContent was marked as sent, but Kaltura shows no replacement and the original unchanged."""
    sim, librarian, _ = world
    entry_id = new_entry(sim)
    batch = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE_REPLACE, entry_ids=[entry_id])
    batches.batch_preview(batch, user=librarian)
    batches.batch_approve(batch, user=librarian)
    item = batch.items.get()
    claimed = batches.claim_item(item.id, item.job_id)
    run = runner.Run(batches.ITEMS, claimed, Kaltura.from_settings(), ArchiveStore.from_settings(), librarian)
    run.read_state()
    for step in ("copy", "verify", "tag_archived", "upload_placeholder"):
        batches.STEPS[step](run)
    original = run.state.original
    run.save_progress(
        replace_requested=True,
        replaced_from={"flavor_id": original.id, "version": original.version, "size": original.size_bytes},
    )
    with pytest.raises(runner.Refused, match="Kaltura did not take the replacement"):
        batches.step_wait_replacement(run)
    # The rerun (same token) does not wait on it either: with Kaltura showing nothing, it sends it again.
    rq_queue.empty()
    batches.execute_item(item.id, item.job_id)
    item.refresh_from_db()
    assert item.status == BatchItem.Status.DONE, item.message


def test_a_restore_whose_conversion_fails_in_kaltura_fails_with_a_reason(world, rq_queue):
    sim, librarian, admin = world
    entry_id, _ = make_placeholder(sim, rq_queue, librarian)
    placeholder = sim.state.original_bytes_sha256(entry_id)
    sim.state.failing_conversions = 1
    restore, _ = restores.restore_request(entry_id=entry_id, tier="Bulk", source=Restore.Source.MANUAL, user=admin)
    run_jobs(rq_queue)
    restore.refresh_from_db()
    assert restore.status == Restore.Status.FAILED and "conversion of the restore failed" in restore.error
    assert sim.state.original_bytes_sha256(entry_id) == placeholder and "flavors_deleted" in tags(sim, entry_id)
    assert any("last replacement of the content failed" in p for p in problems(entry_id))


def test_a_replacement_past_its_deadline_fails_and_a_waiting_item_can_be_cancelled(world, rq_queue, settings):
    sim, librarian, _ = world
    settings.ARCHIVE_REPLACEMENT_WAIT_SECONDS = 1
    settings.ARCHIVE_REPLACEMENT_DEADLINE_HOURS = 2
    sim.state.conversion_delay = 3600  # Kaltura never finishes within the test
    first, second = new_entry(sim, "One"), new_entry(sim, "Two")
    batch = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE_REPLACE, entry_ids=[first, second])
    batches.batch_preview(batch, user=librarian)
    batches.batch_approve(batch, user=librarian)
    run_jobs(rq_queue)  # both wait, rescheduled (not sleeping in the worker)
    items = {item.entry_id: item for item in batch.items.all()}
    assert {item.status for item in items.values()} == {BatchItem.Status.WAITING}
    assert EntryLock.objects.count() == 2
    scheduled = rq_queue.scheduled_job_registry.get_job_ids()
    assert len(scheduled) == 2

    # Past the deadline: the next check fails the item with the reason.
    item = items[first]
    since = (datetime.now(tz=UTC) - timedelta(hours=3)).isoformat()
    BatchItem.objects.filter(pk=item.pk).update(progress={**item.progress, "waiting_since_replacement": since})
    batches.execute_item(item.id, item.job_id)
    item.refresh_from_db()
    assert item.status == BatchItem.Status.FAILED
    assert item.message == "Kaltura did not finish the replacement in 2 hours"
    assert AuditEvent.objects.filter(entry_id=first, action="archive_replace_refused").exists()

    # Cancel covers the waiting one; its job, when it comes back, finds nothing to do.
    other = items[second]
    assert batches.batch_cancel(batch, user=librarian) == 1
    other.refresh_from_db()
    assert other.status == BatchItem.Status.CANCELLED and not EntryLock.objects.exists()
    assert batches.execute_item(other.id, other.job_id) is None

    # Kaltura finishes both replacements late. The health check says what happened to the cancelled one; a
    # retry of the failed one recognises the placeholder as its own and finishes, never archiving it.
    sim.state.conversion_delay = 0
    sim.state.complete_conversions()
    assert any("holds a placeholder without the tag" in p for p in problems(second))
    assert batches.batch_retry_failed(batch, user=librarian) == 1
    run_jobs(rq_queue)
    item = batch.items.get(entry_id=first)
    assert item.status == BatchItem.Status.DONE, item.message
    assert ArchiveCopy.objects.filter(entry_id=first).count() == 1
    assert ArchiveCopy.objects.get(entry_id=first).placeholder_version
    assert "flavors_deleted" in tags(sim, first) and problems(first) == []


def test_an_item_whose_job_fails_before_its_claim_fails_once_rq_gives_up(world, rq_queue):
    """A job can fail before it claims its item (the database or Redis failing): RQ retries it, and after
    its last attempt the item fails with the error, so it never waits queued forever and a retry runs it."""
    from django.db import OperationalError

    from archive_app import jobs

    sim, librarian, _ = world
    entry_id = new_entry(sim)
    batch = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE, entry_ids=[entry_id])
    batches.batch_preview(batch, user=librarian)
    batches.batch_approve(batch, user=librarian)
    item = batch.items.get()
    job = rq_queue.jobs[0]
    assert job.failure_callback is jobs.batch_item_job_failed
    error = OperationalError("database is locked")

    jobs.batch_item_job_failed(job, rq_queue.connection, OperationalError, error, None)  # RQ will retry
    item.refresh_from_db()
    assert item.status == BatchItem.Status.QUEUED

    job.retries_left = 0  # its last attempt failed too
    jobs.batch_item_job_failed(job, rq_queue.connection, OperationalError, error, None)
    item.refresh_from_db()
    assert item.status == BatchItem.Status.FAILED
    assert item.message == (
        "the job failed before it started: OperationalError: database is locked; retry to run it again"
    )
    assert AuditEvent.objects.filter(entry_id=entry_id, action="archive_failed", outcome="failed").exists()
    batch.refresh_from_db()
    assert batch.status == Batch.Status.DONE

    # A librarian's retry queues it again and it finishes; the old job's failure, reported late, changes nothing.
    assert batches.batch_retry_failed(batch, user=librarian) == 1
    jobs.batch_item_job_failed(job, rq_queue.connection, OperationalError, error, None)
    run_jobs(rq_queue)
    item = batch.items.get()  # the retry's preview wrote the item anew
    assert item.status == BatchItem.Status.DONE, item.message
    assert ArchiveCopy.objects.filter(entry_id=entry_id).count() == 1


def test_retry_cannot_touch_a_running_item(world, rq_queue):
    sim, librarian, _ = world
    entry_id = new_entry(sim)
    batch = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE, entry_ids=[entry_id])
    batches.batch_preview(batch, user=librarian)
    batches.batch_approve(batch, user=librarian)
    item = batch.items.get()
    assert batches.claim_item(item.id, item.job_id) is not None  # an RQ retry is running it
    assert batches.batch_retry_failed(batch, user=librarian) == 0
    item.refresh_from_db()
    assert item.status == BatchItem.Status.RUNNING and item.job_id


# --- one operation per entry, across batches and restores ---------------------------------------


def test_a_restore_and_a_batch_item_of_one_entry_approved_together(world, rq_queue, s3, moto_server):
    sim, librarian, admin = world
    entry_id = new_entry(sim, tags="archived_to_s3, flavors_deleted")
    s3.put_object(Bucket=settings.AWS_BUCKET, Key=entry_id, Body=b"old tool original " * 999, StorageClass="GLACIER")
    placeholder = sim.state.original_bytes_sha256(entry_id)
    # Held "ongoing" in S3, so whichever runs first holds the entry for a while.
    hold_restores_ongoing(moto_server, s3, entry_id, reads=30)
    restore, _ = restores.restore_request(
        entry_id=entry_id, tier="Bulk", source=Restore.Source.MANUAL, user=admin, confirm_placeholder=True
    )
    batch = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE, entry_ids=[entry_id])
    batches.batch_preview(batch, user=librarian)
    batches.batch_approve(batch, user=librarian)
    run_jobs(rq_queue)
    restore.refresh_from_db()
    item = batch.items.get()
    # The restore's job came first: it waits on Glacier holding the entry; the batch item is refused.
    assert restore.status == Restore.Status.WAITING
    assert item.status == BatchItem.Status.FAILED
    assert item.message == f"a restore of this entry is under way (restore {restore.pk}); retry when it has finished"
    assert EntryLock.objects.get(entry_id=entry_id).holder == f"restore:{restore.pk}"
    refusal = AuditEvent.objects.get(batch=batch, action="archive_refused")
    assert refusal.outcome == "refused" and refusal.details["held_by"] == f"restore:{restore.pk}"
    assert sim.state.original_bytes_sha256(entry_id) == placeholder

    # The other way round: a batch item holding the entry makes a restore's job fail with the reason.
    restores.restore_cancel(restore, user=admin)
    assert batches.batch_retry_failed(batch, user=librarian) == 1
    run_jobs(rq_queue)  # the adoption waits on the S3 restore (held ongoing), holding the entry
    item = batch.items.get()
    assert item.status == BatchItem.Status.WAITING, item.message
    restores.restore_retry(restore, user=admin)
    run_jobs(rq_queue)
    restore.refresh_from_db()
    assert restore.status == Restore.Status.FAILED
    assert restore.error == f"another batch (batch {batch.pk}) is working on this entry; retry when it has finished"


def test_the_database_allows_one_lock_per_entry(world):
    from django.db import IntegrityError, transaction

    EntryLock.objects.create(entry_id="0_abc", holder="item:1")
    with pytest.raises(IntegrityError), transaction.atomic():
        EntryLock.objects.create(entry_id="0_abc", holder="restore:1")


def test_live_state_reads_the_recorded_copy_at_its_exact_version(world, rq_queue, s3):
    """With versioning, an object written over from outside the app leaves our version, which every check uses."""
    sim, librarian, _ = world
    s3.put_bucket_versioning(Bucket=settings.AWS_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    entry_id = new_entry(sim)
    run_batch(sim, rq_queue, librarian, Batch.Action.ARCHIVE, [entry_id])
    copy = ArchiveCopy.objects.get(entry_id=entry_id)
    assert copy.version_id
    s3.put_object(Bucket=settings.AWS_BUCKET, Key=entry_id, Body=b"written from outside")
    state = read_live_state(entry_id, Kaltura.from_settings(), ArchiveStore.from_settings())
    assert state.s3.version_id == copy.version_id and state.s3.size == copy.size_bytes
    assert s3_bytes(s3, copy.key, copy.version_id) != b"written from outside"
