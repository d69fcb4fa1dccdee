"""Bucket safety (issue 15) against moto's S3: versioning, Object Lock and its default retention, and whether the
app's credentials may delete object versions, on the Health page, /healthz?checks=bucket and check --deploy; and
the Object Lock retention and legal hold a setting puts on each new copy."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.urls import reverse

from archive_app.lib.storage import PROBE_KEY, ArchiveStore
from archive_app.models import ArchiveCopy, Batch
from tests.archive.test_custody import new_entry, run_batch

pytestmark = pytest.mark.django_db(transaction=True)
LOCKED = "kaltura-archive-locked"


def test_a_plain_bucket_reports_every_risk_and_the_probe_writes_nothing(s3):
    safety = ArchiveStore.from_settings().bucket_safety()
    assert (safety.versioning, safety.object_lock, safety.default_retention) == ("Off", False, "")
    # moto enforces no IAM policy: the credentials may delete versions, and the report says so.
    assert safety.can_delete_versions == "yes"
    risks = " | ".join(safety.risks())
    assert "versioning is off" in risks and "no Object Lock" in risks and "may delete object versions" in risks
    listing = s3.list_object_versions(Bucket=settings.AWS_BUCKET)
    assert not listing.get("Versions") and not listing.get("DeleteMarkers")
    assert PROBE_KEY.startswith(".")  # outside the entry id keys (entry ids never start with a dot)


def test_compliance_retention_answers_the_delete_risk(s3, settings):
    settings.AWS_BUCKET = LOCKED
    s3.create_bucket(Bucket=LOCKED, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket=LOCKED,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 30}},
        },
    )
    safety = ArchiveStore.from_settings().bucket_safety()
    assert safety.versioning == "Enabled"  # Object Lock turns versioning on
    assert safety.object_lock and safety.default_retention == "COMPLIANCE 30 days"
    assert safety.risks() == []


def test_the_health_page_and_healthz_show_bucket_safety(s3, kaltura_sim, make_user, client):
    client.force_login(make_user("lib", "librarian"))
    page = client.get(reverse("health")).content.decode()
    assert 'data-testid="bucket-safety"' in page and 'data-testid="bucket-risks"' in page
    assert "no Object Lock" in page
    body = json.loads(client.get(reverse("healthz"), {"checks": "bucket"}).content)
    assert body["checks"]["bucket"]["can_delete_versions"] == "yes"
    assert body["checks"]["bucket"]["object_lock"] is False and body["checks"]["bucket"]["risks"] == 3


def test_new_copies_get_the_configured_retention_and_legal_hold(kaltura_sim, s3, rq_queue, settings, make_user):
    settings.KALTURA_RETRY_DELAYS = (0.01, 0.01)
    settings.ARCHIVE_STORAGE_CLASS = "STANDARD"
    settings.AWS_BUCKET = LOCKED
    settings.ARCHIVE_OBJECT_LOCK_MODE = "GOVERNANCE"
    settings.ARCHIVE_OBJECT_LOCK_DAYS = 10
    settings.ARCHIVE_LEGAL_HOLD_NEW_COPIES = True
    s3.create_bucket(Bucket=LOCKED, ObjectLockEnabledForBucket=True)
    entry_id = new_entry(kaltura_sim)
    run_batch(kaltura_sim, rq_queue, make_user("lib", "librarian"), Batch.Action.ARCHIVE, [entry_id])
    copy = ArchiveCopy.objects.get(entry_id=entry_id)
    head = s3.head_object(Bucket=LOCKED, Key=copy.key, VersionId=copy.version_id)
    assert head["ObjectLockMode"] == "GOVERNANCE" and head["ObjectLockLegalHoldStatus"] == "ON"
    days = (head["ObjectLockRetainUntilDate"] - head["LastModified"]).total_seconds() / 86400
    assert 9.9 < days < 10.1
    # The bucket's own keys cannot delete that version now.
    with pytest.raises(s3.exceptions.ClientError):
        s3.delete_object(Bucket=LOCKED, Key=copy.key, VersionId=copy.version_id)
    assert s3.head_object(Bucket=LOCKED, Key=copy.key, VersionId=copy.version_id)["ContentLength"] == copy.size_bytes
