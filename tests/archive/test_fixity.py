"""Fixity (issue 15): the audit of every copy's S3 version without a restore, and the sample re-hash through the
Glacier restore path. Copies are made by the real archive batch (simulator, moto's S3, a real worker); damage is
done behind the app's back with a plain S3 client, or, for bit rot under S3's API, in moto's own storage."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from django.conf import settings
from django.core import mail
from django.core.management import CommandError, call_command
from django.urls import reverse

from archive_app.archive import fixity
from archive_app.lib.storage import ArchiveStore
from archive_app.mirror import costs
from archive_app.models import ArchiveCopy, AuditEvent, Batch
from tests.archive.test_custody import new_entry, run_batch
from tests.services import free_port

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(kaltura_sim, s3, rq_queue, settings, make_user):
    settings.KALTURA_RETRY_DELAYS = (0.01, 0.01)
    settings.ARCHIVE_REPLACEMENT_WAIT_SECONDS = 5
    settings.ARCHIVE_STORAGE_CLASS = "STANDARD"
    s3.put_bucket_versioning(Bucket=settings.AWS_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    admin = make_user("ada", "admin")
    admin.email = "ada@example.edu"
    admin.save()
    return kaltura_sim, make_user("lib", "librarian"), admin


def archive(world, rq_queue, count: int) -> list[ArchiveCopy]:
    sim, librarian, _ = world
    entry_ids = [new_entry(sim, f"Lecture {n}") for n in range(count)]
    run_batch(sim, rq_queue, librarian, Batch.Action.ARCHIVE, entry_ids)
    copies = [ArchiveCopy.objects.get(entry_id=entry_id) for entry_id in entry_ids]
    assert all(copy.version_id and copy.crc32 for copy in copies)
    return copies


def events(action: str = fixity.AUDIT_ACTION):
    return AuditEvent.objects.filter(action=action).order_by("id")


def test_a_clean_audit_makes_one_request_per_copy_and_records_each_check(world, rq_queue):
    copies = archive(world, rq_queue, 3)
    summary = fixity.audit_fixity(execute=True)
    assert (summary.checked, summary.passed, summary.failed, summary.requests) == (3, 3, 0, 3)
    for copy in copies:
        copy.refresh_from_db()
        assert copy.fixity_ok is True and copy.fixity_checked_at is not None and copy.fixity_problem == ""
    assert [(e.entry_id, e.outcome, e.dry_run) for e in events()] == [(c.entry_id, "ok", False) for c in copies]
    assert events()[0].details["seen"]["version_id"] == copies[0].version_id
    assert mail.outbox == []


def test_changes_behind_the_apps_back_are_detected_alarmed_and_e_mailed(world, rq_queue, s3, client):
    overwritten, version_deleted, reclassed, delete_marker, untouched = archive(world, rq_queue, 5)
    bucket = settings.AWS_BUCKET
    # Someone with the bucket's keys: a new version over ours, ours deleted by version id, an in-place copy to
    # another class (a new version, class changed), a plain delete (a delete marker hides ours).
    s3.put_object(Bucket=bucket, Key=overwritten.key, Body=b"not the lecture")
    s3.delete_object(Bucket=bucket, Key=version_deleted.key, VersionId=version_deleted.version_id)
    s3.copy_object(
        Bucket=bucket,
        Key=reclassed.key,
        CopySource={"Bucket": bucket, "Key": reclassed.key},
        StorageClass="STANDARD_IA",
        MetadataDirective="COPY",
    )
    s3.delete_object(Bucket=bucket, Key=delete_marker.key)

    summary = fixity.audit_fixity(execute=True)
    assert (summary.checked, summary.failed) == (5, 4)
    problems = {result.copy.entry_id: "; ".join(result.problems) for result in summary.failures}
    assert "a new version" in problems[overwritten.entry_id] and "written over" in problems[overwritten.entry_id]
    assert f"recorded version {version_deleted.version_id} is gone" in problems[version_deleted.entry_id]
    assert "STANDARD_IA) was written over" in problems[reclassed.entry_id]
    assert "a delete marker hides" in problems[delete_marker.entry_id]
    assert untouched.entry_id not in problems

    # Flagged on the copies, in the audit log, on the Health page, in /healthz and by e-mail to the admins.
    assert set(fixity.failing_copies().values_list("entry_id", flat=True)) == set(problems)
    failed_events = events().filter(outcome=AuditEvent.Outcome.FAILED, dry_run=False)
    assert set(failed_events.values_list("entry_id", flat=True)) == set(problems)
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ada@example.edu"]
    assert all(entry_id in mail.outbox[0].body for entry_id in problems)
    assert events(fixity.ALARM_ACTION).get().outcome == AuditEvent.Outcome.OK

    response = client.get(reverse("healthz"), {"checks": "fixity"})
    body = json.loads(response.content)
    assert response.status_code == 503 and body["checks"]["fixity"]["failed"] == 4

    client.force_login(world[2])
    page = client.get(reverse("health")).content.decode()
    assert 'data-testid="fixity-alarm"' in page
    assert all(entry_id in page for entry_id in problems)


def test_the_alarm_clears_only_when_a_later_audit_passes(world, rq_queue, s3, client):
    (copy,) = archive(world, rq_queue, 1)
    bucket = settings.AWS_BUCKET
    marker = s3.delete_object(Bucket=bucket, Key=copy.key)["VersionId"]
    fixity.audit_fixity(execute=True)
    assert list(fixity.failing_copies()) == [copy]
    # Deleting the delete marker brings our version back: the next audit passes and the alarm ends.
    s3.delete_object(Bucket=bucket, Key=copy.key, VersionId=marker)
    fixity.audit_fixity(execute=True)
    assert list(fixity.failing_copies()) == []
    assert client.get(reverse("healthz"), {"checks": "fixity"}).status_code == 200


def test_a_dry_run_reads_and_logs_but_records_nothing_and_sends_nothing(world, rq_queue, s3):
    (copy,) = archive(world, rq_queue, 1)
    s3.put_object(Bucket=settings.AWS_BUCKET, Key=copy.key, Body=b"x")
    summary = fixity.audit_fixity()
    assert summary.failed == 1
    copy.refresh_from_db()
    assert copy.fixity_checked_at is None and copy.fixity_ok is None
    assert list(events().values_list("dry_run", "outcome")) == [(True, "failed")]
    assert mail.outbox == []


def test_a_copy_that_cannot_be_checked_fails_rather_than_passes(world, rq_queue, settings):
    (copy,) = archive(world, rq_queue, 1)
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"  # S3 unreachable
    settings.AWS_MAX_ATTEMPTS = 1
    summary = fixity.audit_fixity(execute=True)
    assert summary.failed == 1 and "could not be checked" in summary.failures[0].problems[0]
    # A copy recorded in another bucket than the configured one is not passed either.
    ArchiveCopy.objects.filter(id=copy.id).update(bucket="another-bucket")
    summary = fixity.audit_fixity(execute=True)
    assert "recorded in bucket another-bucket" in summary.failures[0].problems[0]


def test_the_command_is_a_dry_run_unless_executed_and_exits_non_zero_on_failure(world, rq_queue, s3, capsys):
    (good, bad) = archive(world, rq_queue, 2)
    call_command("audit_fixity", "--no-rehash")
    out = capsys.readouterr().out
    assert "audit: 2 copies checked, 2 passed, 0 failed, 2 S3 requests" in out and "dry run" in out
    assert not ArchiveCopy.objects.filter(fixity_checked_at__isnull=False).exists()

    s3.delete_object(Bucket=settings.AWS_BUCKET, Key=bad.key, VersionId=bad.version_id)
    with pytest.raises(CommandError, match="1 copies failed"):
        call_command("audit_fixity", "--no-rehash", "--execute")
    captured = capsys.readouterr()
    assert bad.entry_id in captured.err and "FAILED" in captured.err
    assert events().filter(dry_run=False, username="cli").count() == 2
    with pytest.raises(CommandError, match="exclude each other"):
        call_command("audit_fixity", "--no-rehash", "--rehash-only")


def test_the_scheduled_job_audits_on_a_worker(world, rq_queue):
    from rq import SimpleWorker

    from archive_app.jobs import fixity_audit_job

    copies = archive(world, rq_queue, 2)
    job = rq_queue.enqueue(fixity_audit_job)
    SimpleWorker([rq_queue], connection=rq_queue.connection).work(burst=True)
    job.refresh()
    assert job.return_value()["checked"] == 2 and job.return_value()["failed"] == 0
    assert all(c.fixity_ok for c in ArchiveCopy.objects.filter(id__in=[copy.id for copy in copies]))


# --- the sample re-hash -----------------------------------------------------------------------------------


def test_the_sample_rotates_within_the_budget_oldest_first_and_shows_the_cost(world, rq_queue, settings):
    copies = archive(world, rq_queue, 3)
    now = datetime.now(UTC)
    assert fixity.plan_rehash(now=now).chosen == []  # just archived: the stream's hash is fresh
    # Pretend they were archived years ago, at different times; the budget fits two of them.
    for years, copy in zip([3, 2, 4], copies, strict=True):
        ArchiveCopy.objects.filter(id=copy.id).update(verified_at=now - timedelta(days=365 * years))
    sizes = sorted(copy.size_bytes for copy in copies)
    settings.FIXITY_REHASH_BYTES_PER_MONTH = sizes[-1] + sizes[-2]
    plan = fixity.plan_rehash(now=now)
    oldest_first = [copies[2], copies[0], copies[1]]
    fits, room = [], settings.FIXITY_REHASH_BYTES_PER_MONTH
    for copy in oldest_first:  # greedy, oldest first: a large copy does not block smaller ones behind it
        if copy.size_bytes <= room:
            fits.append(copy)
            room -= copy.size_bytes
    assert plan.chosen == fits and plan.due_copies == 3 and plan.budget_short
    assert plan.cost == pytest.approx(
        sum(costs.retrieval_cost(size_bytes=c.size_bytes, storage_class="STANDARD") for c in fits)
    )

    # A dry run requests nothing; executing hashes them (STANDARD: no restore) and uses the month's budget.
    fixity.rehash_sample(now=now)
    assert not ArchiveCopy.objects.filter(rehash_requested_at__isnull=False).exists()
    plan, summary = fixity.rehash_sample(execute=True, now=now)
    assert (summary.passed, summary.failed) == (len(fits), 0)
    rest = [copy for copy in oldest_first if copy not in fits]
    # This month's budget is spent on those: the rest waits unless it fits what is left.
    assert fixity.plan_rehash(now=now).chosen == [copy for copy in rest if copy.size_bytes <= room][:1]
    # Next month the rest is read; a copy re-hashed just now is not due for another year.
    next_month = (now.replace(day=1) + timedelta(days=32)).replace(day=2)
    assert fixity.plan_rehash(now=next_month).chosen == [c for c in oldest_first if c not in fits]


def test_glacier_cost_is_shown_in_money(settings):
    gb = 1024**3
    assert costs.retrieval_cost(size_bytes=100 * gb, storage_class="GLACIER", tier="Standard") == pytest.approx(
        100 * settings.PRICE_RETRIEVAL_GB["GLACIER:Standard"] + 100 * settings.PRICE_S3_GB_MONTH["STANDARD"] * 12 / 365
    )
    deep = costs.retrieval_cost(size_bytes=gb, storage_class="DEEP_ARCHIVE", tier="Expedited")
    assert deep == costs.retrieval_cost(size_bytes=gb, storage_class="DEEP_ARCHIVE", tier="Standard")


@pytest.fixture
def moto_in_process(settings, monkeypatch):
    """moto's server in this process, so a test can damage stored bytes the way bit rot would: under S3's API,
    leaving the version, its size and the checksum S3 recorded at upload as they were."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
        setattr(settings, name, value)
    settings.AWS_BUCKET = "fixity-rot-test"
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    client.create_bucket(Bucket=settings.AWS_BUCKET)
    client.put_bucket_versioning(Bucket=settings.AWS_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    yield client
    server.stop()


def rot(bucket: str, key: str, version_id: str) -> None:
    """Flip one byte of the stored version in moto's backend (same length: S3's recorded checksum is unchanged)."""
    from moto.s3.models import s3_backends

    backend = next(iter(s3_backends.values()))["aws"]
    stored = next(k for k in backend.get_bucket(bucket).keys.getlist(key) if k.version_id == version_id)
    data = bytearray(stored.value)
    data[len(data) // 2] ^= 0xFF
    stored.value = bytes(data)


def test_the_sample_re_hash_restores_from_glacier_and_catches_bit_rot(
    kaltura_sim, moto_in_process, rq_queue, settings, make_user
):
    settings.KALTURA_RETRY_DELAYS = (0.01, 0.01)
    settings.ARCHIVE_REPLACEMENT_WAIT_SECONDS = 5
    settings.ARCHIVE_STORAGE_CLASS = "GLACIER"
    admin = make_user("ada", "admin")
    admin.email = "ada@example.edu"
    admin.save()
    entry_ids = [new_entry(kaltura_sim, f"Lecture {n}") for n in range(2)]
    run_batch(kaltura_sim, rq_queue, make_user("lib", "librarian"), Batch.Action.ARCHIVE, entry_ids)
    rotten, sound = (ArchiveCopy.objects.get(entry_id=entry_id) for entry_id in entry_ids)
    assert rotten.storage_class == "GLACIER"
    rot(settings.AWS_BUCKET, rotten.key, rotten.version_id)

    # The audit without a restore cannot see bit rot: version, size, class and recorded checksum are intact.
    assert fixity.audit_fixity(execute=True).failed == 0

    later = datetime.now(UTC) + timedelta(days=5 * 365 + 2)
    store = ArchiveStore.from_settings()
    plan, summary = fixity.rehash_sample(execute=True, store=store, now=later)
    assert set(plan.chosen) == {rotten, sound}
    assert store.calls["RestoreObject"] == 2  # through Glacier's restore, as in production
    assert summary.requested == 2
    assert (summary.passed, summary.failed) == (1, 1)
    assert summary.failures[0].copy == rotten
    rotten.refresh_from_db()
    sound.refresh_from_db()
    assert rotten.rehash_ok is False and rotten.rehash_problem and sound.rehash_ok is True
    assert list(fixity.failing_copies()) == [rotten]
    assert rotten.entry_id in mail.outbox[-1].body
    rehash_events = AuditEvent.objects.filter(action=fixity.REHASH_ACTION, entry_id=rotten.entry_id)
    assert rehash_events.filter(outcome=AuditEvent.Outcome.FAILED).exists()
    # Both were read this period: nothing is due again for five years.
    assert fixity.plan_rehash(now=later + timedelta(days=40)).chosen == []


def test_the_command_shows_the_re_hash_cost_and_requests_nothing_in_a_dry_run(world, rq_queue, capsys, settings):
    (copy,) = archive(world, rq_queue, 1)
    ArchiveCopy.objects.filter(id=copy.id).update(verified_at=datetime.now(UTC) - timedelta(days=2 * 365))
    call_command("audit_fixity", "--rehash-only")
    out = capsys.readouterr().out
    assert "re-hash: 1 copies chosen" in out and "restore cost $" in out and "dry run" in out
    copy.refresh_from_db()
    assert copy.rehash_requested_at is None and copy.rehashed_at is None
    assert AuditEvent.objects.filter(action=fixity.REHASH_ACTION, dry_run=True).count() == 1


def test_an_alarm_nobody_can_receive_is_itself_a_failed_event(world, rq_queue, s3):
    (copy,) = archive(world, rq_queue, 1)
    world[2].__class__.objects.update(email="")  # no archive admin has an address
    s3.delete_object(Bucket=settings.AWS_BUCKET, Key=copy.key)
    fixity.audit_fixity(execute=True)
    assert mail.outbox == []
    alarm = events(fixity.ALARM_ACTION).get()
    assert alarm.outcome == AuditEvent.Outcome.FAILED and "no archive admin has an e-mail" in alarm.message
