"""Bucket safety (issue 15) against moto's S3: versioning, Object Lock and its default retention, and whether the
app's credentials may delete object versions, on the Health page, /healthz?checks=bucket and check --deploy; and
the Object Lock retention and legal hold a setting puts on each new copy."""

from __future__ import annotations

import json
import urllib.request

import boto3
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


# --- the delete-permission probe against a server that enforces IAM ------------------------------

ALLOW_ALL_S3 = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
DENY_VERSION_DELETES = {"Effect": "Deny", "Action": "s3:DeleteObjectVersion", "Resource": "*"}


def _moto_auth(moto_server, free_requests: float) -> None:
    """moto's server checks every request but the next `free_requests` against IAM (inf: none)."""
    request = urllib.request.Request(
        f"{moto_server.url}/moto-api/reset-auth",
        data=str(free_requests).encode(),
        headers={"Content-Type": "text/plain"},  # a form body would be read as a form, leaving no number
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10)


@pytest.fixture
def iam_enforced(s3, moto_server):
    """Two IAM users of moto's server, `safe` (denied s3:DeleteObjectVersion) and `risky` (s3:*), as credentials
    for the app's settings; the server enforces IAM from the moment `enforce()` is called until the test ends."""
    iam = boto3.client("iam", endpoint_url=moto_server.url, region_name="us-east-1")
    users = {}
    for name, statements in (("safe", [ALLOW_ALL_S3, DENY_VERSION_DELETES]), ("risky", [ALLOW_ALL_S3])):
        iam.create_user(UserName=f"archive-{name}")
        policy = json.dumps({"Version": "2012-10-17", "Statement": statements})
        iam.put_user_policy(UserName=f"archive-{name}", PolicyName="archive", PolicyDocument=policy)
        key = iam.create_access_key(UserName=f"archive-{name}")["AccessKey"]
        users[name] = (key["AccessKeyId"], key["SecretAccessKey"])
    try:
        yield users, lambda: _moto_auth(moto_server, 0)
    finally:
        _moto_auth(moto_server, float("inf"))


def _store_as(settings, monkeypatch, credentials) -> ArchiveStore:
    settings.AWS_ACCESS_KEY_ID, settings.AWS_SECRET_ACCESS_KEY = credentials
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials[1])
    return ArchiveStore.from_settings()


def test_credentials_denied_version_deletes_are_safe_and_allowed_ones_a_risk(s3, iam_enforced, settings, monkeypatch):
    users, enforce = iam_enforced
    s3.put_bucket_versioning(Bucket=settings.AWS_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    archived = s3.put_object(Bucket=settings.AWS_BUCKET, Key="0_archived", Body=b"an archived original")
    enforce()
    # Enforced for real: without credentials IAM knows, S3 refuses even a read.
    with pytest.raises(s3.exceptions.ClientError) as refused:
        s3.head_object(Bucket=settings.AWS_BUCKET, Key="0_archived")
    assert refused.value.response["Error"]["Code"] in ("403", "InvalidAccessKeyId", "AccessDenied")

    safe = _store_as(settings, monkeypatch, users["safe"]).bucket_safety()
    assert (safe.versioning, safe.can_delete_versions) == ("Enabled", "no")
    assert not any("may delete object versions" in risk for risk in safe.risks())
    # The deny is real: these credentials cannot delete the archived version either.
    safe_client = boto3.client(
        "s3",
        endpoint_url=settings.AWS_ENDPOINT_URL,
        region_name="us-east-1",
        aws_access_key_id=users["safe"][0],
        aws_secret_access_key=users["safe"][1],
    )
    with pytest.raises(safe_client.exceptions.ClientError):
        safe_client.delete_object(Bucket=settings.AWS_BUCKET, Key="0_archived", VersionId=archived["VersionId"])

    risky = _store_as(settings, monkeypatch, users["risky"]).bucket_safety()
    assert (risky.versioning, risky.can_delete_versions) == ("Enabled", "yes")
    assert any("may delete object versions (s3:DeleteObjectVersion)" in risk for risk in risky.risks())

    # Neither probe touched an archived object, nor wrote anything (rule 2): the one version is still there.
    listing = safe_client.list_object_versions(Bucket=settings.AWS_BUCKET)
    assert [(v["Key"], v["VersionId"]) for v in listing.get("Versions", [])] == [("0_archived", archived["VersionId"])]
    assert not listing.get("DeleteMarkers")
