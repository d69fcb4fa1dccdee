"""Archive and replace: plans, batches and real jobs through the simulator, moto's S3 and Redis."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from rq import SimpleWorker

from archive_app.archive import batches
from archive_app.archive.workflow import CopyRecord, LiveState, Policy, plan_archive, plan_for, plan_replace
from archive_app.lib.kaltura import Kaltura, KalturaError, KEntry, KFlavor
from archive_app.lib.storage import ArchiveStore
from archive_app.mirror import sync
from archive_app.models import ArchiveCopy, AuditEvent, Batch, BatchItem, Entry

NOW = datetime(2026, 11, 1, tzinfo=UTC)
YEARS_AGO = NOW - timedelta(days=4 * 365)


def k_entry(**fields) -> KEntry:
    values = dict(
        id="0_abcdefgh",
        name="Lecture",
        description="",
        owner_id="jdoe",
        creator_id="jdoe",
        tags="lecture",
        categories_ids=(),
        created_at=YEARS_AGO,
        updated_at=YEARS_AGO,
        last_played_at=None,
        plays=0,
        views=0,
        status=2,
        media_type=1,
        duration=600,
        source_type="1",
        parent_entry_id="",
        capabilities="",
        replacing_entry_id="",
        replacement_status=0,
        thumbnail_url="",
    )
    values.update(fields)
    return KEntry(**values)


def k_flavor(**fields) -> KFlavor:
    values = dict(
        id="0_original",
        entry_id="0_abcdefgh",
        flavor_params_id=0,
        is_original=True,
        status=2,
        size_kb=1000,
        size_in_bytes=1_024_000,
        tags="source",
        file_ext="mp4",
        width=1280,
        height=720,
        bitrate=900,
        created_at=YEARS_AGO,
        updated_at=YEARS_AGO,
        version="3",
    )
    values.update(fields)
    return KFlavor(**values)


def state(**fields) -> LiveState:
    values = dict(
        entry_id="0_abcdefgh",
        entry=k_entry(),
        flavors=[
            k_flavor(),
            k_flavor(id="0_mobile", is_original=False, flavor_params_id=487041, size_in_bytes=300_000),
        ],
    )
    values.update(fields)
    return LiveState(**values)


POLICY = Policy(now=NOW, placeholder_size=25_000)
# A copy names the content it holds: the original flavor above, at its version.
OF_ORIGINAL = {"flavor_id": "0_original", "flavor_version": "3"}


class S3Object:
    def __init__(self, size, sha256="a" * 64, storage_class="GLACIER"):
        self.size, self.sha256, self.storage_class = size, sha256, storage_class


# --- plans (pure) -------------------------------------------------------------------


def test_archive_plan_copies_verifies_and_tags():
    plan = plan_archive(state(), POLICY)
    assert plan.step_names == ["copy", "verify", "tag_archived"]
    assert plan.bytes_to_copy == 1_024_000


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"entry": None}, "not found in Kaltura"),
        ({"entry": k_entry(status=4)}, "entry is not ready"),
        ({"entry": k_entry(tags="lecture, archive_exempt")}, "exempt (tag archive_exempt)"),
        ({"entry": k_entry(source_type="5")}, "external or source-only content"),
        ({"entry": k_entry(parent_entry_id="0_parent00")}, "secondary stream"),
        ({"entry": k_entry(capabilities="quiz.quiz")}, "quiz entry"),
        ({"entry": k_entry(replacing_entry_id="0_tmp00000")}, "a replacement is already pending"),
        ({"entry": k_entry(created_at=NOW - timedelta(days=10))}, "created less than 365 days ago"),
        ({"entry": k_entry(last_played_at=NOW - timedelta(days=10))}, "played less than 365 days ago"),
        ({"flavors": [k_flavor(is_original=False)]}, "no original flavor"),
        ({"flavors": [k_flavor(status=1)]}, "original flavor is not ready"),
    ],
)
def test_every_skip_reason_is_given(changes, reason):
    plan = plan_for(Batch.Action.ARCHIVE_REPLACE, state(**changes), POLICY)
    assert plan.skipped and plan.skip_reason.startswith(reason), plan.skip_reason
    assert plan.steps == ()


def test_exempt_category_from_settings_is_skipped():
    policy = replace(POLICY, exempt_category_ids=frozenset({42}))
    assert plan_archive(state(entry=k_entry(categories_ids=(7, 42))), policy).skip_reason == "exempt (category 42)"


def test_an_object_already_in_s3_with_the_right_size_is_adopted_not_copied():
    plan = plan_archive(state(s3=S3Object(1_024_000)), POLICY)
    assert plan.step_names == ["adopt", "tag_archived"] and plan.bytes_to_copy == 0
    # Kaltura's KB figure is all there is on old flavors: agreement within rounding.
    old_flavor = [k_flavor(size_in_bytes=0, size_kb=1000)]
    assert plan_archive(state(flavors=old_flavor, s3=S3Object(1_024_300)), POLICY).step_names[0] == "adopt"
    assert plan_archive(state(s3=S3Object(999)), POLICY).step_names[0] == "copy"


def test_replace_needs_a_verified_copy_in_s3():
    assert plan_replace(state(), POLICY).skip_reason == "no archive copy recorded"
    no_sha = state(copy=CopyRecord(size=1_024_000, sha256="", **OF_ORIGINAL), s3=S3Object(1_024_000))
    assert plan_replace(no_sha, POLICY).skip_reason.startswith("archive copy has no SHA-256")
    missing = state(copy=CopyRecord(size=1_024_000, sha256="a" * 64, **OF_ORIGINAL), s3=None)
    assert plan_replace(missing, POLICY).skip_reason == "the archive copy is missing from S3"
    ok = state(
        copy=CopyRecord(size=1_024_000, sha256="a" * 64, **OF_ORIGINAL),
        s3=S3Object(1_024_000),
        entry=k_entry(tags="archived_to_s3"),
    )
    plan = plan_replace(ok, POLICY)
    assert plan.step_names == ["upload_placeholder", "replace_content", "wait_replacement", "thumbnail", "tag_replaced"]
    assert plan.bytes_freed == 1_024_000 + 300_000 - 25_000


def test_archive_and_replace_in_one_plan_and_already_done():
    assert plan_for(Batch.Action.ARCHIVE_REPLACE, state(), POLICY).step_names == [
        "copy",
        "verify",
        "tag_archived",
        "upload_placeholder",
        "replace_content",
        "wait_replacement",
        "thumbnail",
        "tag_replaced",
    ]
    replaced = state(
        entry=k_entry(tags="archived_to_s3, flavors_deleted"),
        flavors=[k_flavor(size_in_bytes=25_000)],
        copy=CopyRecord(size=1_024_000, sha256="a" * 64, **OF_ORIGINAL, replaced=True),
        s3=S3Object(1_024_000),
    )
    assert plan_for(Batch.Action.ARCHIVE_REPLACE, replaced, POLICY).skip_reason == "already replaced"


# --- end to end ---------------------------------------------------------------------


@pytest.fixture
def archive_world(kaltura_sim, s3, rq_queue, settings, make_user):
    settings.KALTURA_RETRY_DELAYS = (0.01, 0.01)
    settings.ARCHIVE_REPLACEMENT_WAIT_SECONDS = 20
    kaltura = Kaltura.from_settings()
    old = int((datetime.now(tz=UTC) - timedelta(days=5 * 365)).timestamp())
    entry_ids = [kaltura_sim.state.add_entry(name=f"Old lecture {n}", createdAt=old) for n in range(3)]
    sync.sync_full(kaltura)
    librarian = make_user("lib", "librarian")
    return kaltura_sim, entry_ids, librarian


def run_jobs(queue):
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


@pytest.mark.django_db(transaction=True)
def test_archive_and_replace_end_to_end_through_a_real_worker(archive_world, rq_queue, s3):
    sim, entry_ids, librarian = archive_world
    batch = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE_REPLACE, entry_ids=entry_ids)
    plans = batches.batch_preview(batch, user=librarian)
    assert all(not plan.skipped for plan in plans.values()), {k: p.skip_reason for k, p in plans.items()}
    originals = {entry_id: sim.state.original_bytes_sha256(entry_id) for entry_id in entry_ids}
    # The preview changed nothing.
    assert s3.list_objects_v2(Bucket=settings.AWS_BUCKET)["KeyCount"] == 0
    assert all("archived_to_s3" not in sim.state.get_entry(e)["tags"] for e in entry_ids)

    batches.batch_approve(batch, user=librarian)
    run_jobs(rq_queue)

    placeholder_sha = hashlib.sha256(settings.PLACEHOLDER_VIDEO.read_bytes()).hexdigest()
    store = ArchiveStore.from_settings()
    for entry_id in entry_ids:
        item = BatchItem.objects.get(batch=batch, entry_id=entry_id)
        assert item.status == BatchItem.Status.DONE, item.message
        copy = ArchiveCopy.objects.get(entry_id=entry_id)
        assert copy.sha256 == originals[entry_id]
        head = store.head(entry_id)
        assert head.size == copy.size_bytes and head.storage_class == "GLACIER"
        live = sim.state.get_entry(entry_id)
        assert int(live["status"]) == 2
        assert {"archived_to_s3", "flavors_deleted"} <= {t.strip() for t in live["tags"].split(",")}
        # Kaltura now serves the placeholder as the original; the flavors were regenerated from it.
        assert sim.state.original_bytes_sha256(entry_id) == placeholder_sha
        assert Entry.objects.get(id=entry_id).archive_state == "placeholder"
    assert Batch.objects.get(pk=batch.pk).status == Batch.Status.DONE
    actions = set(AuditEvent.objects.filter(batch=batch, dry_run=False).values_list("action", flat=True))
    assert {"copy", "verify", "tag_archived", "replace_content", "tag_replaced", "batch_approve"} <= actions
    assert AuditEvent.objects.filter(batch=batch, dry_run=True, action="preview_archive_replace").count() == 3

    # Running the same batch again is harmless: nothing to do.
    again = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE_REPLACE, entry_ids=entry_ids)
    assert {p.skip_reason for p in batches.batch_preview(again, user=librarian).values()} == {"already replaced"}


@pytest.mark.django_db(transaction=True)
def test_a_batch_created_with_its_preview_equals_one_previewed_afterwards(archive_world):
    sim, entry_ids, librarian = archive_world
    action = Batch.Action.ARCHIVE_REPLACE
    at_once = batches.batch_create(user=librarian, action=action, entry_ids=entry_ids, preview=True)
    afterwards = batches.batch_create(user=librarian, action=action, entry_ids=entry_ids)
    batches.batch_preview(afterwards, user=librarian)
    columns = ("entry_id", "status", "planned_steps", "skip_reason", "bytes_to_copy", "bytes_freed")
    items = list(at_once.items.values(*columns))
    assert [item["entry_id"] for item in items] == entry_ids
    assert all(item["planned_steps"] and item["bytes_to_copy"] > 0 for item in items), items
    assert items == list(afterwards.items.values(*columns))
    events = ("action", "entry_id", "outcome", "message", "details", "dry_run")
    assert list(AuditEvent.objects.filter(batch=at_once).exclude(action="batch_create").values(*events)) == list(
        AuditEvent.objects.filter(batch=afterwards).exclude(action="batch_create").values(*events)
    )


@pytest.mark.django_db(transaction=True)
def test_a_preview_that_cannot_read_kaltura_leaves_no_batch(archive_world):
    sim, entry_ids, librarian = archive_world
    sim.state.inject_fault("kaltura_error", service="media", action="list", code="SERVICE_FORBIDDEN")
    with pytest.raises(KalturaError, match="SERVICE_FORBIDDEN"):
        batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE, entry_ids=entry_ids, preview=True)
    assert not Batch.objects.exists() and not AuditEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_truncated_download_leaves_no_archive_and_no_placeholder(archive_world, rq_queue, s3):
    sim, entry_ids, librarian = archive_world
    batch = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE_REPLACE, entry_ids=entry_ids[:1])
    batches.batch_preview(batch, user=librarian)
    sim.state.set_download_faults(truncate_next=10, truncate_at=0.5)
    before = sim.state.original_bytes_sha256(entry_ids[0])
    batches.batch_approve(batch, user=librarian)
    run_jobs(rq_queue)
    item = BatchItem.objects.get(batch=batch)
    assert item.status == BatchItem.Status.FAILED and item.message
    assert not ArchiveCopy.objects.exists()
    assert s3.list_objects_v2(Bucket=settings.AWS_BUCKET)["KeyCount"] == 0
    assert sim.state.original_bytes_sha256(entry_ids[0]) == before
    assert "flavors_deleted" not in sim.state.get_entry(entry_ids[0])["tags"]
    assert AuditEvent.objects.filter(batch=batch, outcome="failed").exists()


@pytest.mark.django_db(transaction=True)
def test_replace_alone_refuses_an_entry_without_a_verified_copy(archive_world, rq_queue):
    sim, entry_ids, librarian = archive_world
    batch = batches.batch_create(user=librarian, action=Batch.Action.REPLACE, entry_ids=entry_ids[:1])
    plans = batches.batch_preview(batch, user=librarian)
    assert plans[entry_ids[0]].skip_reason == "no archive copy recorded"
    batches.batch_approve(batch, user=librarian)
    run_jobs(rq_queue)
    assert BatchItem.objects.get(batch=batch).status == BatchItem.Status.SKIPPED
    assert sim.state.get_entry(entry_ids[0])["tags"] == ""


@pytest.mark.django_db(transaction=True)
def test_one_entry_is_never_worked_on_by_two_batches_at_once(archive_world):
    sim, entry_ids, librarian = archive_world
    first = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE, entry_ids=entry_ids[:1])
    second = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE, entry_ids=entry_ids[:1])
    for batch in (first, second):
        batches.batch_preview(batch, user=librarian)
        batches.batch_enqueue(batch)
    one, other = BatchItem.objects.get(batch=first), BatchItem.objects.get(batch=second)
    assert batches.claim_item(one.id, one.job_id) is not None
    assert batches.claim_item(other.id, other.job_id) is None
    other.refresh_from_db()
    assert other.status == BatchItem.Status.FAILED and "another batch" in other.message
    # A job that is not the item's own (wrong token) cannot take it either.
    assert batches.claim_item(one.id, "not-the-token") is None


@pytest.mark.django_db(transaction=True)
def test_batch_size_cap_is_a_clear_refusal(archive_world, settings):
    sim, entry_ids, librarian = archive_world
    settings.ARCHIVE_MAX_BATCH_SIZE = 2
    with pytest.raises(batches.BatchError, match="at most 2"):
        batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE, entry_ids=entry_ids)
    assert not Batch.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_second_approval_must_come_from_another_librarian(archive_world, settings, make_user, rq_queue):
    sim, entry_ids, librarian = archive_world
    settings.ARCHIVE_REQUIRE_SECOND_APPROVAL = True
    batch = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE, entry_ids=entry_ids[:1])
    batches.batch_preview(batch, user=librarian)
    batches.batch_approve(batch, user=librarian)
    assert Batch.objects.get(pk=batch.pk).status == Batch.Status.DRAFT
    with pytest.raises(batches.BatchError, match="second librarian"):
        batches.batch_approve(batch, user=librarian)
    batches.batch_approve(batch, user=make_user("lib2", "librarian"))
    assert Batch.objects.get(pk=batch.pk).status == Batch.Status.RUNNING
    run_jobs(rq_queue)
    assert BatchItem.objects.get(batch=batch).status == BatchItem.Status.DONE


def test_audit_events_cannot_be_changed(db):
    event = AuditEvent.objects.create(username="x", action="test", dry_run=True, outcome="ok")
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(outcome="failed")
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()


# --- command line -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_archive_command_prints_the_plan_and_changes_nothing(archive_world, s3, capsys):
    from django.core.management import call_command

    sim, entry_ids, librarian = archive_world
    call_command("archive_entries", "--replace", *[f"--id={e}" for e in entry_ids])
    out = capsys.readouterr().out
    for entry_id in entry_ids:
        assert f"{entry_id}\tcopy, verify, tag_archived, upload_placeholder" in out
    assert "Nothing was changed" in out
    assert s3.list_objects_v2(Bucket=settings.AWS_BUCKET)["KeyCount"] == 0
    assert not Batch.objects.exists()
    assert AuditEvent.objects.filter(dry_run=True, username="cli", action="preview_archive_replace").count() == 3


@pytest.mark.django_db(transaction=True)
def test_archive_command_executes_and_health_check_agrees(archive_world, s3, rq_queue, capsys, make_user):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    sim, entry_ids, librarian = archive_world
    make_user("ops", role="librarian")  # --user must hold the role (test_command_user)
    call_command("archive_entries", f"--id={entry_ids[0]}", "--execute", "--in-process", "--user", "ops")
    assert ArchiveCopy.objects.filter(entry_id=entry_ids[0]).exists()
    assert "archived_to_s3" in sim.state.get_entry(entry_ids[0])["tags"]
    assert AuditEvent.objects.filter(username="ops", action="copy", dry_run=False).count() == 1

    capsys.readouterr()
    call_command("health_check", *[f"--id={e}" for e in entry_ids])
    assert "healthy" in capsys.readouterr().err

    # Break an invariant behind the archive's back: the S3 object disappears.
    s3.delete_object(Bucket=settings.AWS_BUCKET, Key=entry_ids[0])
    with pytest.raises(CommandError, match="1 of 3 entries are unhealthy"):
        call_command("health_check", *[f"--id={e}" for e in entry_ids])
    assert "no S3 object" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_archive_command_with_an_empty_selection_is_an_error(archive_world):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="selection is empty"):
        call_command("archive_entries", "--id=0_zzzzzzzz")


@pytest.mark.django_db(transaction=True)
def test_transient_faults_and_an_expired_session_during_a_batch_are_survived(archive_world, rq_queue, s3):
    sim, entry_ids, librarian = archive_world
    batch = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE_REPLACE, entry_ids=entry_ids[:1])
    batches.batch_preview(batch, user=librarian)
    batches.batch_approve(batch, user=librarian)
    sim.state.expire_sessions()
    sim.state.inject_fault("http500", count=1, service="flavorasset", action="getUrl")
    sim.state.inject_fault("drop", count=1, service="uploadtoken", action="add")
    sim.state.inject_fault("bad_gateway", count=1, service="media", action="get")
    run_jobs(rq_queue)
    assert all(fault["remaining"] == 0 for fault in sim.state.faults), "every fault was met"
    assert sim.state.counters.get("session.start", 0) >= 2
    item = BatchItem.objects.get(batch=batch)
    assert item.status == BatchItem.Status.DONE, item.message
    assert ArchiveCopy.objects.get(entry_id=entry_ids[0]).sha256


@pytest.mark.django_db(transaction=True)
def test_a_refused_replacement_fails_clearly_and_leaves_the_original_playing(archive_world, rq_queue, s3):
    sim, entry_ids, librarian = archive_world
    before = sim.state.original_bytes_sha256(entry_ids[0])
    batch = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE_REPLACE, entry_ids=entry_ids[:1])
    batches.batch_preview(batch, user=librarian)
    batches.batch_approve(batch, user=librarian)
    sim.state.inject_fault("kaltura_error", count=5, service="media", action="updateContent", code="SERVICE_FORBIDDEN")
    run_jobs(rq_queue)
    item = BatchItem.objects.get(batch=batch)
    assert item.status == BatchItem.Status.FAILED and "SERVICE_FORBIDDEN" in item.message
    # The copy is verified and kept; the video itself is untouched and carries no placeholder tag.
    assert ArchiveCopy.objects.get(entry_id=entry_ids[0]).sha256 == before
    assert sim.state.original_bytes_sha256(entry_ids[0]) == before
    assert "flavors_deleted" not in sim.state.get_entry(entry_ids[0])["tags"]
    assert AuditEvent.objects.filter(batch=batch, outcome="failed", entry_id=entry_ids[0]).exists()


# --- content identity and media types in the plans (issues 11 and 13) ----------------------------------


def archived(**fields) -> LiveState:
    """An entry archived by us: the copy holds exactly its original; S3 has it."""
    values = dict(
        copy=CopyRecord(size=1_024_000, sha256="a" * 64, **OF_ORIGINAL),
        s3=S3Object(1_024_000),
        entry=k_entry(tags="archived_to_s3"),
    )
    values.update(fields)
    return state(**values)


def test_content_changed_since_the_copy_is_archived_first():
    changed = archived(copy=CopyRecord(size=1_024_000, sha256="a" * 64, flavor_id="0_original", flavor_version="2"))
    reason = plan_replace(changed, POLICY).skip_reason
    assert reason.startswith("archive the new content first: Kaltura's original is now flavor 0_original version 3")
    plan = plan_for(Batch.Action.ARCHIVE_REPLACE, changed, POLICY)
    assert plan.step_names[:2] == ["copy", "verify"] and "upload_placeholder" in plan.step_names
    assert plan.steps[0].description.startswith("archive the new content first") and plan.bytes_to_copy == 1_024_000
    # Same version but another byte count, or another flavor: not the same content either.
    for copy in (
        CopyRecord(size=999, sha256="a" * 64, **OF_ORIGINAL),
        CopyRecord(size=1_024_000, sha256="a" * 64, flavor_id="0_other", flavor_version="3"),
    ):
        assert plan_replace(archived(copy=copy, s3=S3Object(copy.size)), POLICY).skip_reason.startswith(
            "archive the new content first"
        )
    # A copy in S3 whose hash is not the recorded one is no copy to replace behind.
    bad = archived(s3=S3Object(1_024_000, sha256="b" * 64))
    assert plan_replace(bad, POLICY).skip_reason == "the S3 object's SHA-256 differs from the recorded copy"


def test_entries_on_a_placeholder_are_never_copied():
    # The old tool's placeholder with its original in S3 (key = entry id), no record of ours: hashed from S3.
    old_tool = state(entry=k_entry(tags="archived_to_s3, flavors_deleted"), s3=S3Object(5_000_000))
    for action in (Batch.Action.ARCHIVE, Batch.Action.ARCHIVE_REPLACE):
        plan = plan_for(action, old_tool, POLICY)
        assert plan.step_names == ["s3_restore", "s3_wait", "adopt_hash"] and plan.bytes_to_copy == 0
    readable = state(entry=k_entry(tags="flavors_deleted"), s3=S3Object(5_000_000, storage_class="STANDARD"))
    assert plan_archive(readable, POLICY).step_names == ["adopt_hash"]
    nothing = state(entry=k_entry(tags="flavors_deleted"))
    assert "no archive copy is in S3" in plan_archive(nothing, POLICY).skip_reason


def test_image_entries_are_only_archived():
    image = archived(entry=k_entry(tags="archived_to_s3", media_type=2))
    assert plan_replace(image, POLICY).skip_reason == "image entry: only archiving its original is possible"
    fresh = state(entry=k_entry(media_type=2))
    assert plan_for(Batch.Action.ARCHIVE_REPLACE, fresh, POLICY).step_names == ["copy", "verify", "tag_archived"]


def test_audio_entries_get_the_audio_placeholder_or_are_skipped(db, settings, tmp_path):
    audio = archived(entry=k_entry(tags="archived_to_s3", media_type=5))
    assert plan_replace(audio, POLICY).skip_reason == "no audio placeholder configured"
    with_audio = replace(POLICY, placeholder_audio_size=4_000)
    plan = plan_replace(audio, with_audio)
    assert plan.steps[0].description.startswith("upload the audio placeholder")
    assert plan.bytes_freed == 1_024_000 + 300_000 - 4_000
    # From the settings: a missing file means no audio placeholder, never the video one.
    settings.PLACEHOLDER_AUDIO = tmp_path / "missing.m4a"
    assert Policy.from_settings(NOW).placeholder_audio_size == 0
    (tmp_path / "audio.m4a").write_bytes(b"a" * 1234)
    settings.PLACEHOLDER_AUDIO = tmp_path / "audio.m4a"
    assert Policy.from_settings(NOW).placeholder_audio_size == 1234


def test_a_replacement_freeing_too_little_is_skipped():
    policy = replace(POLICY, min_bytes_freed=10 * 1024 * 1024)
    reason = plan_replace(archived(), policy).skip_reason
    assert reason == "replacing would free only 1.2 MiB, less than 10.0 MiB (ARCHIVE_MIN_BYTES_FREED)"
    assert plan_for(Batch.Action.ARCHIVE_REPLACE, state(), policy).step_names == ["copy", "verify", "tag_archived"]


def test_a_rerun_after_our_own_replacement_never_archives_the_placeholder():
    """Killed after Kaltura swapped our placeholder in, before the tag: the content is not "new content"."""
    swapped = archived(flavors=[k_flavor(size_in_bytes=25_000, version="4")], replacement_started=True)
    plan = plan_for(Batch.Action.ARCHIVE_REPLACE, swapped, POLICY)
    assert plan.step_names == ["wait_replacement", "thumbnail", "tag_replaced"] and plan.bytes_to_copy == 0
    assert plan_archive(swapped, POLICY).skip_reason == "already archived"
