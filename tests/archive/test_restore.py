"""Restore: from placeholder back to the original, through the simulator, moto's S3 and a real RQ worker."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from rq import SimpleWorker

from archive_app import jobs
from archive_app.archive import batches, restores
from archive_app.archive.workflow import ContentId, CopyRecord, LiveState
from archive_app.lib.kaltura import Kaltura
from archive_app.lib.storage import ArchiveStore
from archive_app.mirror import sync
from archive_app.models import ArchiveCopy, AuditEvent, Batch, Entry, Flavor, Restore
from tests.archive.test_batches import k_entry, k_flavor

pytestmark = pytest.mark.django_db(transaction=True)


def run_jobs(queue) -> None:
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


def hold_restores_ongoing(moto_server, s3, key: str, reads: int) -> None:
    """Keep the next restore of `key` "ongoing" for `reads` reads of the object (DOMAIN.md §4).

    moto counts every read of an object from its creation; the first look at a requested restore moves it to
    "ongoing" only if `reads` reads were made already (else it shows as restored), and `reads` more finish it.
    So the object is read that often first.
    """
    body = {"model_name": "s3::keyrestore", "transition": {"progression": "manual", "times": reads}}
    request = urllib.request.Request(
        f"{moto_server.url}/moto-api/state-manager/set-transition", data=json.dumps(body).encode(), method="POST"
    )
    urllib.request.urlopen(request, timeout=10)
    for _ in range(reads):
        s3.head_object(Bucket=settings.AWS_BUCKET, Key=key)


def tags(sim, entry_id: str) -> set[str]:
    return {tag.strip() for tag in sim.state.get_entry(entry_id)["tags"].split(",") if tag.strip()}


def make_placeholders(
    sim, queue, user, count: int = 2, *, created_at: int | None = None, durations: dict | None = None
) -> tuple[list, dict]:
    """Entries archived and replaced by the real batch path; and the SHA-256 of each original (their durations
    into `durations`, if given)."""
    old = created_at or int((datetime.now(tz=UTC) - timedelta(days=5 * 365)).timestamp())
    entry_ids = [sim.state.add_entry(name=f"Old lecture {n}", createdAt=old, duration=830) for n in range(count)]
    if durations is not None:
        durations.update({entry_id: sim.state.get_entry(entry_id)["duration"] for entry_id in entry_ids})
    sync.sync_full(Kaltura.from_settings())
    originals = {entry_id: sim.state.original_bytes_sha256(entry_id) for entry_id in entry_ids}
    batch = batches.batch_create(user=user, action=Batch.Action.ARCHIVE_REPLACE, entry_ids=entry_ids)
    batches.batch_preview(batch, user=user)
    batches.batch_approve(batch, user=user)
    run_jobs(queue)
    for entry_id in entry_ids:
        assert "flavors_deleted" in tags(sim, entry_id)
        assert sim.state.original_bytes_sha256(entry_id) != originals[entry_id]
    return entry_ids, originals


@pytest.fixture
def world(kaltura_sim, s3, rq_queue, settings, make_user):
    settings.KALTURA_RETRY_DELAYS = (0.01, 0.01)
    settings.ARCHIVE_REPLACEMENT_WAIT_SECONDS = 20
    return kaltura_sim, make_user("ada", "admin")


# --- the plan (pure) --------------------------------------------------------------------------


class Head:
    def __init__(self, size=1_024_000, storage_class="GLACIER", readable=False, ongoing=False, sha256=None):
        self.size, self.storage_class, self.readable, self.restore_ongoing = size, storage_class, readable, ongoing
        self.sha256 = sha256


def live(**fields) -> LiveState:
    values = dict(
        entry_id="0_abcdefgh",
        entry=k_entry(tags="archived_to_s3, flavors_deleted"),
        flavors=[k_flavor(size_in_bytes=24_853, version="4")],
        s3=Head(),
        # The placeholder Kaltura held once swapped in: the only content a restore writes over.
        copy=CopyRecord(
            size=1_024_000,
            sha256="a" * 64,
            replaced=True,
            flavor_id="0_original",
            flavor_version="3",
            placeholder=ContentId("0_original", "4", 24_853),
        ),
    )
    values.update(fields)
    return LiveState(**values)


def test_plan_by_storage_class_and_tier():
    glacier = restores.plan_restore(live(), tier="Bulk")
    assert glacier.step_names == [
        "s3_restore",
        "s3_wait",
        "upload_original",
        "restore_content",
        "wait_conversion",
        "restore_captions",
        "untag_replaced",
    ]
    restored = restores.plan_restore(live(s3=Head(readable=True)), tier="Bulk")
    assert restored.step_names[:2] == ["s3_wait", "upload_original"]
    assert glacier.wait == "5–12 hours" and glacier.recorded_sha256 == "a" * 64
    # Deep Archive is restored too, but never with Expedited.
    assert restores.plan_restore(live(s3=Head(storage_class="DEEP_ARCHIVE")), tier="Bulk").wait == "up to 48 hours"
    refused = restores.plan_restore(live(s3=Head(storage_class="DEEP_ARCHIVE")), tier="Expedited")
    assert refused.skip_reason == "DEEP_ARCHIVE has no Expedited restore; choose Standard or Bulk"
    assert [tier for tier, _ in restores.tiers_for("DEEP_ARCHIVE")] == ["Standard", "Bulk"]
    # Classes that need no restore go straight to the upload.
    for storage_class in ("STANDARD", "STANDARD_IA", "GLACIER_IR"):
        plan = restores.plan_restore(live(s3=Head(storage_class=storage_class, readable=True)), tier="Bulk")
        assert plan.step_names[0] == "upload_original", storage_class
    # After our updateContent: wait for it; if Kaltura shows no replacement and no original, upload again.
    converting = live(
        entry=k_entry(tags="archived_to_s3, flavors_deleted", replacing_entry_id="0_tmp"), replacement_started=True
    )
    after_swap = ["wait_conversion", "restore_captions", "untag_replaced"]
    assert restores.plan_restore(converting, tier="Bulk").step_names == after_swap
    never_took = restores.plan_restore(live(replacement_started=True), tier="Bulk")
    assert "upload_original" in never_took.step_names
    # A restore S3 already works on is waited for, not asked again.
    assert restores.plan_restore(live(s3=Head(ongoing=True)), tier="Standard").step_names[0] == "s3_wait"


def test_plan_refuses_what_cannot_be_restored():
    assert restores.plan_restore(live(entry=None), tier="Standard").skip_reason == "not found in Kaltura"
    assert restores.plan_restore(live(s3=None), tier="Standard").skip_reason == "no archive copy in S3"
    not_placeholder = live(entry=k_entry(tags="archived_to_s3"), flavors=[k_flavor()])
    assert restores.plan_restore(not_placeholder, tier="Standard").skip_reason == restores.NOT_A_PLACEHOLDER
    pending = live(entry=k_entry(tags="archived_to_s3, flavors_deleted", replacing_entry_id="0_tmp"))
    assert "replacement is already pending" in restores.plan_restore(pending, tier="Standard").skip_reason
    resized = live(s3=Head(size=5))
    assert "the recorded copy 1024000" in restores.plan_restore(resized, tier="Standard").skip_reason
    # The old tool's copies have no hash: restorable, with a warning, if its placeholder is one we know ...
    old_tool = restores.plan_restore(live(copy=None), tier="Standard", known_placeholder_sizes=frozenset({24_853}))
    assert not old_tool.skipped and "no SHA-256" in old_tool.warnings[0]
    # ... or an archive admin confirmed it; otherwise the plan asks for that confirmation.
    unknown = restores.plan_restore(live(copy=None), tier="Standard", known_placeholder_sizes=frozenset({99}))
    assert unknown.skipped and unknown.needs_confirmation and "must confirm" in unknown.skip_reason
    assert not restores.plan_restore(live(copy=None), tier="Standard", confirmed=True).skipped


def test_plan_refuses_to_write_over_anything_but_the_recorded_placeholder():
    """The owner uploaded new content over the placeholder (the tag stays): a restore would destroy it."""
    for changed in (
        k_flavor(size_in_bytes=24_853, version="5"),
        k_flavor(size_in_bytes=9_999, version="4"),
        k_flavor(id="0_other", size_in_bytes=24_853, version="4"),
    ):
        plan = restores.plan_restore(live(flavors=[changed]), tier="Bulk", known_placeholder_sizes=frozenset({24_853}))
        assert plan.skipped and plan.steps == ()
        assert plan.skip_reason.startswith(restores.PLACEHOLDER_ON_NEW_CONTENT), plan.skip_reason
        assert f"version {changed.version}" in plan.skip_reason and "the placeholder put in was" in plan.skip_reason
        assert not plan.needs_confirmation  # a recorded placeholder is never overridden by a confirmation


# --- end to end ---------------------------------------------------------------------------------


@pytest.mark.parametrize("storage_class", ["GLACIER", "DEEP_ARCHIVE", "STANDARD_IA"])
def test_a_placeholder_comes_back_as_its_original(world, rq_queue, settings, storage_class):
    sim, admin = world
    settings.ARCHIVE_STORAGE_CLASS = storage_class
    durations = {}
    entry_ids, originals = make_placeholders(sim, rq_queue, admin, durations=durations)
    entry_id, other = entry_ids
    assert sim.state.get_entry(entry_id)["duration"] < durations[entry_id]  # the placeholder's
    assert ArchiveStore.from_settings().head(entry_id).storage_class == storage_class
    before = {f["id"]: f["version"] for f in sim.state.get_flavors(entry_id) if f["status"] == 2}

    restore, created = restores.restore_request(
        entry_id=entry_id, tier="Bulk", source=Restore.Source.MANUAL, user=admin
    )
    assert created and restore.status == Restore.Status.REQUESTED
    run_jobs(rq_queue)

    restore.refresh_from_db()
    assert restore.status == Restore.Status.DONE, restore.error
    # The bytes in Kaltura are the ones archived, the tag is gone, the entry is READY, flavors made again.
    assert sim.state.original_bytes_sha256(entry_id) == originals[entry_id]
    assert ArchiveCopy.objects.get(entry_id=entry_id).sha256 == originals[entry_id]
    assert tags(sim, entry_id) == {"archived_to_s3"}
    assert int(sim.state.get_entry(entry_id)["status"]) == 2
    assert sim.state.get_entry(entry_id)["duration"] == durations[entry_id]
    after = {f["id"]: f for f in sim.state.get_flavors(entry_id) if f["status"] == 2}
    assert set(after) == set(before) and len(after) >= 2
    assert all(after[flavor_id]["version"] > version for flavor_id, version in before.items())
    # Back to "archived": the S3 copy stays.
    assert Entry.objects.get(id=entry_id).archive_state == "archived"
    # The mirror was read from Kaltura when the restore finished: the original's flavors, without a sync.
    live_flavors = {f.id: f.size_bytes for f in Kaltura.from_settings().flavors(entry_id)}
    assert dict(Flavor.objects.filter(entry_id=entry_id).values_list("id", "size_bytes")) == live_flavors
    assert Entry.objects.get(id=entry_id).original_size_bytes == ArchiveCopy.objects.get(entry_id=entry_id).size_bytes
    assert ArchiveCopy.objects.get(entry_id=entry_id).replaced_at is None
    assert ArchiveStore.from_settings().head(entry_id) is not None
    # Only the requested entry changed.
    assert "flavors_deleted" in tags(sim, other)

    actions = list(AuditEvent.objects.filter(entry_id=entry_id, dry_run=False).values_list("action", flat=True))
    needs_s3_restore = storage_class != "STANDARD_IA"
    assert ("s3_restore" in actions) == needs_s3_restore
    for action in ("restore_request", "upload_original", "restore_content", "wait_conversion", "untag_replaced"):
        assert action in actions
    assert AuditEvent.objects.filter(entry_id=entry_id, action="preview_restore", dry_run=True).exists()
    assert AuditEvent.objects.get(entry_id=entry_id, action="restore_request").username == "ada"


def test_a_restore_held_ongoing_is_polled_until_readable_and_never_duplicated(world, rq_queue, moto_server, s3):
    sim, admin = world
    entry_ids, originals = make_placeholders(sim, rq_queue, admin, count=1)
    entry_id = entry_ids[0]
    hold_restores_ongoing(moto_server, s3, entry_id, reads=30)
    restore, _ = restores.restore_request(entry_id=entry_id, tier="Standard", source=Restore.Source.MANUAL, user=admin)
    run_jobs(rq_queue)
    restore.refresh_from_db()
    assert restore.status == Restore.Status.WAITING
    assert restore.storage_class == "GLACIER"
    assert restore.expected_ready_at - restore.s3_requested_at == timedelta(hours=5)
    assert ArchiveStore.from_settings().head(entry_id).restore_ongoing

    # A second request while waiting finds the first one.
    again, created = restores.restore_request(entry_id=entry_id, tier="Bulk", source=Restore.Source.MANUAL, user=admin)
    assert not created and again.pk == restore.pk
    assert Restore.objects.count() == 1

    polls = 0
    while restore.status == Restore.Status.WAITING and polls < 20:
        # The scheduled poll on a real worker; the burst also runs the restore step it queued.
        poll = rq_queue.enqueue(jobs.restore_poll_job)
        run_jobs(rq_queue)
        assert poll.return_value() == {"queued": 1}
        restore.refresh_from_db()
        polls += 1
    assert polls >= 2, "the poller waited at least once"
    assert restore.status == Restore.Status.DONE, restore.error
    assert sim.state.original_bytes_sha256(entry_id) == originals[entry_id]
    assert AuditEvent.objects.filter(entry_id=entry_id, action="s3_restore").count() == 1
    assert AuditEvent.objects.filter(entry_id=entry_id, action="s3_wait").count() == 1
    assert restores.restore_poll() == {"queued": 0}


def test_a_restore_waiting_on_glacier_can_be_cancelled(world, rq_queue, moto_server, s3):
    sim, admin = world
    entry_ids, _ = make_placeholders(sim, rq_queue, admin, count=1)
    hold_restores_ongoing(moto_server, s3, entry_ids[0], reads=50)
    restore, _ = restores.restore_request(entry_id=entry_ids[0], tier="Bulk", source=Restore.Source.MANUAL, user=admin)
    run_jobs(rq_queue)
    restore.refresh_from_db()
    assert restore.status == Restore.Status.WAITING
    restores.restore_cancel(restore, user=admin)
    assert restores.restore_poll() == {"queued": 0}
    restore.refresh_from_db()
    assert restore.status == Restore.Status.CANCELLED
    assert "flavors_deleted" in tags(sim, entry_ids[0])
    # A job still queued for it finds it no longer its own.
    assert restores.execute_restore(restore.pk, "an-old-token") is None
    with pytest.raises(restores.RestoreError, match="only one not yet uploading"):
        restores.restore_cancel(restore, user=admin)
    # Cancelled is not under way: a new request makes a new restore.
    again, created = restores.restore_request(
        entry_id=entry_ids[0], tier="Bulk", source=Restore.Source.MANUAL, user=admin
    )
    assert created and again.pk != restore.pk
    assert AuditEvent.objects.filter(action="restore_cancel", username="ada").exists()


def test_a_corrupted_s3_object_is_refused_and_the_placeholder_stays(world, rq_queue, s3, settings):
    sim, admin = world
    settings.ARCHIVE_STORAGE_CLASS = "STANDARD"
    entry_ids, originals = make_placeholders(sim, rq_queue, admin, count=1)
    entry_id = entry_ids[0]
    placeholder_sha = sim.state.original_bytes_sha256(entry_id)
    size = ArchiveCopy.objects.get(entry_id=entry_id).size_bytes
    # Same size, other bytes: only the SHA-256 can tell.
    s3.put_object(Bucket=settings.AWS_BUCKET, Key=entry_id, Body=b"\x00" * size)
    replacements = sim.state.counters.get("media.updateContent", 0)

    restore, _ = restores.restore_request(entry_id=entry_id, tier="Standard", source=Restore.Source.MANUAL, user=admin)
    run_jobs(rq_queue)
    restore.refresh_from_db()
    assert restore.status == Restore.Status.FAILED
    assert restore.error.startswith("SHA-256 MISMATCH, nothing was changed")
    assert originals[entry_id] in restore.error
    assert sim.state.counters.get("media.updateContent", 0) == replacements
    assert sim.state.original_bytes_sha256(entry_id) == placeholder_sha
    assert "flavors_deleted" in tags(sim, entry_id)
    assert Entry.objects.get(id=entry_id).archive_state == "placeholder"
    failed = AuditEvent.objects.get(entry_id=entry_id, action="restore_failed")
    assert failed.outcome == "refused" and "SHA-256 MISMATCH" in failed.message


def test_an_upload_cut_short_resumes_where_kaltura_stopped(world, rq_queue, monkeypatch):
    sim, admin = world
    entry_ids, originals = make_placeholders(sim, rq_queue, admin, count=1)
    entry_id = entry_ids[0]
    size = ArchiveCopy.objects.get(entry_id=entry_id).size_bytes
    monkeypatch.setattr(restores, "CHUNK_BYTES", max(1, size // 4))
    # Kaltura refuses the third chunk: the first two stay on the upload token.
    sim.state.inject_fault("kaltura_error", service="uploadtoken", action="upload", code="TEST", after=2)
    restore, _ = restores.restore_request(entry_id=entry_id, tier="Standard", source=Restore.Source.MANUAL, user=admin)
    run_jobs(rq_queue)
    restore.refresh_from_db()
    assert restore.status == Restore.Status.FAILED and "TEST" in restore.error
    token_id = restore.progress["upload_token"]
    assert Kaltura.from_settings().upload_token_state(token_id) == (1, 2 * restores.CHUNK_BYTES)

    restores.restore_retry(restore, user=admin)
    run_jobs(rq_queue)
    restore.refresh_from_db()
    assert restore.status == Restore.Status.DONE, restore.error
    assert restore.progress["upload_token"] == token_id
    upload = AuditEvent.objects.filter(entry_id=entry_id, action="upload_original").get()
    assert upload.details["resumed_at"] == 2 * restores.CHUNK_BYTES
    assert sim.state.original_bytes_sha256(entry_id) == originals[entry_id]


def test_a_refused_replacement_fails_clearly_and_a_retry_finishes(world, rq_queue):
    sim, admin = world
    entry_ids, originals = make_placeholders(sim, rq_queue, admin, count=1)
    entry_id = entry_ids[0]
    sim.state.inject_fault("kaltura_error", service="media", action="updateContent", code="SERVICE_FORBIDDEN")
    restore, _ = restores.restore_request(entry_id=entry_id, tier="Bulk", source=Restore.Source.MANUAL, user=admin)
    run_jobs(rq_queue)
    restore.refresh_from_db()
    assert restore.status == Restore.Status.FAILED and "SERVICE_FORBIDDEN" in restore.error
    assert "flavors_deleted" in tags(sim, entry_id)
    # The retry sees that Kaltura never started the replacement and sends it again (the upload is kept).
    restores.restore_retry(restore, user=admin)
    run_jobs(rq_queue)
    restore.refresh_from_db()
    assert restore.status == Restore.Status.DONE, restore.error
    assert sim.state.original_bytes_sha256(entry_id) == originals[entry_id]
    uploads = AuditEvent.objects.filter(entry_id=entry_id, action="upload_original").order_by("id")
    assert [event.details.get("resumed") for event in uploads] == [None, "already complete and verified"]


def test_a_played_placeholder_is_restored_by_the_next_automatic_run(world, rq_queue, settings):
    sim, admin = world
    entry_ids, originals = make_placeholders(sim, rq_queue, admin)
    played, unplayed = entry_ids
    # The simulator's old-tool placeholders were played, but have no S3 object: refused once, not every run.
    first = restores.auto_restore()
    assert first["requested"] == 0 and first["refused"] >= 1 and not Restore.objects.exists()
    assert restores.auto_restore()["refused"] == 0

    time.sleep(1.1)  # Kaltura keeps lastPlayedAt in whole seconds
    sim.state.play(played)
    settings.ARCHIVE_AUTO_RESTORE = False
    assert restores.auto_restore() == {"disabled": True}
    assert not Restore.objects.exists()

    settings.ARCHIVE_AUTO_RESTORE = True
    settings.ARCHIVE_RESTORE_TIER = "Bulk"
    # The scheduled job's next run, on a real worker, which then also runs the restore it queued.
    scan = rq_queue.enqueue(jobs.auto_restore_job)
    run_jobs(rq_queue)
    assert scan.return_value()["requested"] == 1 and scan.return_value()["played"] == 1
    restore = Restore.objects.get()
    assert (restore.entry_id, restore.source, restore.tier) == (played, "auto_played", "Bulk")
    assert restore.requested_by is None
    assert restore.status == Restore.Status.DONE, restore.error
    assert sim.state.original_bytes_sha256(played) == originals[played]
    assert "flavors_deleted" in tags(sim, unplayed)
    events = AuditEvent.objects.filter(entry_id=played, created_at__gte=restore.requested_at)
    assert events.filter(action="untag_replaced").exists()
    assert set(events.values_list("username", flat=True)) == {"system"}

    # The next run does not ask again for the same play.
    assert restores.auto_restore()["requested"] == 0
    assert Restore.objects.count() == 1


def test_an_entry_replaced_within_the_protected_age_is_restored(world, rq_queue, settings):
    sim, admin = world
    settings.ARCHIVE_MIN_AGE_DAYS = 0  # a misconfiguration let a new video be replaced
    recent = int((datetime.now(tz=UTC) - timedelta(days=30)).timestamp())
    entry_ids, originals = make_placeholders(sim, rq_queue, admin, count=1, created_at=recent)
    settings.ARCHIVE_MIN_AGE_DAYS = 365
    counts = restores.auto_restore()
    assert counts["protected"] == 1 and counts["requested"] == 1
    assert Restore.objects.get().source == "auto_protected"
    run_jobs(rq_queue)
    assert Restore.objects.get().status == Restore.Status.DONE
    assert sim.state.original_bytes_sha256(entry_ids[0]) == originals[entry_ids[0]]
    assert restores.auto_restore()["requested"] == 0


def test_a_placeholder_of_the_old_tool_is_restored_from_its_glacier_object(world, rq_queue, s3):
    sim, admin = world
    # The old tool left the tag and an S3 object (key = entry id) without any hash; we never recorded a copy.
    entry_id = next(e["id"] for e in sim.state.all_entries() if "flavors_deleted" in e["tags"] and e["status"] == 2)
    original = bytes(range(256)) * 800
    s3.put_object(Bucket=settings.AWS_BUCKET, Key=entry_id, Body=original, StorageClass="GLACIER")
    # We never recorded its placeholder, and its size is no known placeholder's: an admin must confirm it.
    refused = restores.restore_preview(entry_id, tier="Bulk", user=admin)
    assert refused.needs_confirmation and "must confirm" in refused.skip_reason
    with pytest.raises(restores.RestoreError, match="must confirm"):
        restores.restore_request(entry_id=entry_id, tier="Bulk", source=Restore.Source.MANUAL, user=admin)
    plan = restores.restore_preview(entry_id, tier="Bulk", user=admin, confirmed=True)
    assert plan.step_names[:3] == ["s3_restore", "s3_wait", "upload_original"]
    assert "archived by the old tool" in plan.warnings[0]
    restore, _ = restores.restore_request(
        entry_id=entry_id, tier="Bulk", source=Restore.Source.MANUAL, user=admin, confirm_placeholder=True
    )
    assert restore.placeholder_confirmed_by == admin
    run_jobs(rq_queue)
    restore.refresh_from_db()
    assert restore.status == Restore.Status.DONE, restore.error
    assert sim.state.original_bytes_sha256(entry_id) == hashlib.sha256(original).hexdigest()
    assert "flavors_deleted" not in tags(sim, entry_id) and "archived_to_s3" in tags(sim, entry_id)
    upload = AuditEvent.objects.get(entry_id=entry_id, action="upload_original")
    assert upload.details["compared_with"] == "(none recorded)"


def test_nothing_to_restore_is_a_clear_refusal(world, rq_queue):
    sim, admin = world
    entry_id = sim.state.add_entry(name="Never archived")
    with pytest.raises(restores.RestoreError, match="no archive copy in S3"):
        restores.restore_request(entry_id=entry_id, tier="Standard", source=Restore.Source.MANUAL, user=admin)
    with pytest.raises(restores.RestoreError, match="unknown tier"):
        restores.restore_request(entry_id=entry_id, tier="Fast", source=Restore.Source.MANUAL, user=admin)
    assert not Restore.objects.exists()
    assert AuditEvent.objects.filter(entry_id=entry_id, action="restore_request", outcome="refused").exists()


# --- command line -------------------------------------------------------------------------------


def test_restore_command_plans_then_executes(world, rq_queue, capsys, make_user):
    sim, admin = world
    make_user("ops", role="admin")  # --user must hold the role (test_command_user)
    entry_ids, originals = make_placeholders(sim, rq_queue, admin)
    call_command("restore_entries", *[f"--id={e}" for e in entry_ids], "--tier", "Bulk")
    out = capsys.readouterr().out
    for entry_id in entry_ids:
        assert f"{entry_id}\tGLACIER\ts3_restore, s3_wait, upload_original" in out
    assert "Nothing was changed" in out
    assert not Restore.objects.exists()

    with pytest.raises(CommandError, match="tier"):
        call_command("restore_entries", f"--id={entry_ids[0]}", "--tier", "Fastest")

    call_command("restore_entries", *[f"--id={e}" for e in entry_ids], "--execute", "--in-process", "--user", "ops")
    out = capsys.readouterr().out
    assert "2 restored" in out
    for entry_id in entry_ids:
        assert sim.state.original_bytes_sha256(entry_id) == originals[entry_id]
    assert set(Restore.objects.values_list("status", flat=True)) == {"done"}
    assert AuditEvent.objects.filter(username="ops", action="restore_request", outcome="ok").count() == 2


def test_restore_command_fails_when_a_restore_fails(world, rq_queue, s3, settings):
    sim, admin = world
    settings.ARCHIVE_STORAGE_CLASS = "STANDARD"
    entry_ids, _ = make_placeholders(sim, rq_queue, admin, count=1)
    size = ArchiveCopy.objects.get(entry_id=entry_ids[0]).size_bytes
    s3.put_object(Bucket=settings.AWS_BUCKET, Key=entry_ids[0], Body=b"\x01" * size)
    with pytest.raises(CommandError, match="1 of 1 restores failed"):
        call_command("restore_entries", f"--id={entry_ids[0]}", "--execute", "--in-process")
