"""Flavor downloads come from Kaltura only: the service host, its CDN hosts and *.kaltura.com, over HTTPS
(plain HTTP only when the service URL is plain HTTP, as the simulator's is). A redirect anywhere else fails
the item, naming the host, before a byte is stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from rq import SimpleWorker

from archive_app.archive import batches
from archive_app.lib.kaltura import Kaltura, download_refusal
from archive_app.mirror import sync
from archive_app.models import ArchiveCopy, AuditEvent, Batch, BatchItem

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def one_old_entry(kaltura_sim, s3, rq_queue, settings, make_user):
    settings.KALTURA_RETRY_DELAYS = (0.01,)
    old = int((datetime.now(tz=UTC) - timedelta(days=5 * 365)).timestamp())
    entry_id = kaltura_sim.state.add_entry(name="Old lecture", createdAt=old)
    sync.sync_full(Kaltura.from_settings())
    original = next(f for f in kaltura_sim.state.get_flavors(entry_id) if f["isOriginal"])
    return entry_id, original, make_user("lib", "librarian")


def archive(entry_id: str, librarian, rq_queue) -> BatchItem:
    batch = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE, entry_ids=[entry_id], preview=True)
    batches.batch_approve(batch, user=librarian)
    SimpleWorker([rq_queue], connection=rq_queue.connection).work(burst=True)
    return BatchItem.objects.get(batch=batch)


def objects_in_s3(s3) -> int:
    return s3.list_objects_v2(Bucket=settings.AWS_BUCKET)["KeyCount"]


def test_a_redirect_to_another_host_fails_the_item_naming_it_and_stores_nothing(
    one_old_entry, kaltura_sim, rq_queue, s3
):
    entry_id, original, librarian = one_old_entry
    # The same simulator under another name: had the download followed it, the copy would have succeeded.
    elsewhere = kaltura_sim.state.flavor_url(original).replace("127.0.0.1", "localhost")
    kaltura_sim.state.redirect_download(original["id"], elsewhere, count=10)
    kaltura_sim.state.reset_counters()
    item = archive(entry_id, librarian, rq_queue)
    assert item.status == BatchItem.Status.FAILED
    assert "host localhost is not Kaltura's" in item.message
    assert kaltura_sim.state.counters.get("download", 0) == 0  # not one byte was sent
    assert objects_in_s3(s3) == 0 and not ArchiveCopy.objects.exists()
    failed = AuditEvent.objects.get(action="archive_failed", entry_id=entry_id)
    assert "localhost" in failed.message and failed.outcome == AuditEvent.Outcome.FAILED
    assert "archived_to_s3" not in kaltura_sim.state.get_entry(entry_id)["tags"]


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/original.mp4", "//example.org/a.mp4"])
def test_a_redirect_to_another_scheme_or_a_foreign_host_is_refused(location, one_old_entry, kaltura_sim, rq_queue, s3):
    entry_id, original, librarian = one_old_entry
    kaltura_sim.state.redirect_download(original["id"], location, count=10)
    item = archive(entry_id, librarian, rq_queue)
    assert item.status == BatchItem.Status.FAILED and "flavor download refused" in item.message
    assert (urlsplit(location).hostname or "(none)") in item.message
    assert objects_in_s3(s3) == 0


def test_a_redirect_within_the_service_host_is_followed(one_old_entry, kaltura_sim, rq_queue, s3):
    entry_id, original, librarian = one_old_entry
    kaltura_sim.state.redirect_download(original["id"], kaltura_sim.state.flavor_url(original), count=1, status=307)
    item = archive(entry_id, librarian, rq_queue)
    assert item.status == BatchItem.Status.DONE, item.message
    assert ArchiveCopy.objects.get(entry_id=entry_id).sha256 == kaltura_sim.state.original_bytes_sha256(entry_id)


def test_a_cdn_host_from_the_setting_is_followed(one_old_entry, kaltura_sim, rq_queue, s3, settings):
    entry_id, original, librarian = one_old_entry
    settings.KALTURA_CDN_HOSTS = ["localhost"]
    elsewhere = kaltura_sim.state.flavor_url(original).replace("127.0.0.1", "localhost")
    kaltura_sim.state.redirect_download(original["id"], elsewhere, count=1)
    assert archive(entry_id, librarian, rq_queue).status == BatchItem.Status.DONE
    # The original under its entry id, beside it only the copy's sidecar files (<key>/...).
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=settings.AWS_BUCKET)["Contents"]]
    assert [key for key in keys if "/" not in key] == [ArchiveCopy.objects.get().key] == [entry_id]


def test_endless_redirects_end(one_old_entry, kaltura_sim, rq_queue, s3):
    entry_id, original, librarian = one_old_entry
    kaltura_sim.state.redirect_download(original["id"], kaltura_sim.state.flavor_url(original), count=100)
    item = archive(entry_id, librarian, rq_queue)
    assert item.status == BatchItem.Status.FAILED and "redirects" in item.message
    assert objects_in_s3(s3) == 0


HTTPS_SERVICE = "https://www.kaltura.com"


@pytest.mark.parametrize(
    ("url", "service", "refused_because"),
    [
        ("https://www.kaltura.com/p/1/serveFlavor/a.mp4", HTTPS_SERVICE, ""),
        ("https://cfvod.kaltura.com/p/1/a.mp4", HTTPS_SERVICE, ""),
        ("https://CDNAPISEC.Kaltura.COM./p/1/a.mp4", HTTPS_SERVICE, ""),
        ("https://video.example.edu/a.mp4", "https://video.example.edu", ""),  # an on-premises Kaltura
        ("http://cfvod.kaltura.com/p/1/a.mp4", HTTPS_SERVICE, "http scheme"),  # no downgrade
        ("https://kaltura.com.evil.example/a.mp4", HTTPS_SERVICE, "host kaltura.com.evil.example"),
        ("https://evilkaltura.com/a.mp4", HTTPS_SERVICE, "host evilkaltura.com"),
        ("https://www.kaltura.com@evil.example/a.mp4", HTTPS_SERVICE, "host evil.example"),
        ("https://169.254.169.254/latest/meta-data/", HTTPS_SERVICE, "host 169.254.169.254"),
        ("file:///etc/passwd", HTTPS_SERVICE, "file scheme"),
        ("http://127.0.0.1:8001/p/1/a.mp4", "http://127.0.0.1:8001", ""),  # the simulator
        ("http://localhost:8001/p/1/a.mp4", "http://127.0.0.1:8001", "host localhost"),
    ],
)
def test_the_download_policy(url, service, refused_because, settings):
    settings.KALTURA_CDN_HOSTS = []
    refusal = download_refusal(url, service_url=service)
    assert refusal.startswith(refused_because) if refused_because else refusal == "", refusal


def test_cdn_hosts_may_be_names_or_wildcards(settings):
    settings.KALTURA_CDN_HOSTS = ["media.example.edu", "*.cdn.example.net"]
    allowed = ["https://media.example.edu/a", "https://eu.cdn.example.net/a"]
    refused = ["https://other.example.edu/a", "https://cdn.example.net.evil/a", "https://xmedia.example.edu/a"]
    assert [download_refusal(url, service_url=HTTPS_SERVICE) for url in allowed] == ["", ""]
    assert all(download_refusal(url, service_url=HTTPS_SERVICE) for url in refused)
