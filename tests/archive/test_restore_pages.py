"""Restore pages: find, choose a tier, preview, confirm; the restores list, retry; who may do it."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rq import SimpleWorker

from archive_app.models import ArchiveCopy, AuditEvent, Restore
from tests.archive.test_restore import make_placeholders, run_jobs, tags

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def placeholders(kaltura_sim, s3, rq_queue, settings, make_user):
    settings.KALTURA_RETRY_DELAYS = (0.01,)
    settings.ARCHIVE_REPLACEMENT_WAIT_SECONDS = 20
    entry_ids, originals = make_placeholders(kaltura_sim, rq_queue, make_user("archivist", "admin"))
    return kaltura_sim, entry_ids, originals


def test_librarians_cannot_reach_restores(client, make_user, placeholders):
    sim, entry_ids, _ = placeholders
    client.force_login(make_user("lib", "librarian"))
    assert client.get(reverse("restore_list")).status_code == 403
    assert client.get(reverse("restore_new"), {"entry_id": entry_ids[0]}).status_code == 403
    response = client.post(reverse("restore_create"), {"entry_id": entry_ids[0], "tier": "Bulk"})
    assert response.status_code == 403
    assert not Restore.objects.exists()
    page = client.get(reverse("entry_detail", args=[entry_ids[0]])).content.decode()
    assert "Restore this video" not in page and 'href="/restores/"' not in page


def test_bad_input_is_a_clear_error_and_changes_nothing(client, make_user, placeholders):
    sim, entry_ids, _ = placeholders
    client.force_login(make_user("root", "admin"))
    response = client.get(reverse("restore_new"), {"entry_id": "0_x'; drop"})
    assert response.status_code == 400 and "letters, digits and _ only" in response.content.decode()
    assert client.get(reverse("restore_create")).status_code == 405
    response = client.post(reverse("restore_create"), {"entry_id": entry_ids[0], "tier": "Sometime"}, follow=True)
    assert "Choose an entry and a tier" in response.content.decode()
    # An entry with no copy: the preview says why, and confirming is refused.
    fresh = sim.state.add_entry(name="Never archived")
    page = client.get(reverse("restore_new"), {"entry_id": fresh, "tier": "Standard"}).content.decode()
    assert "S3 object" in page and "none" in page
    response = client.post(reverse("restore_create"), {"entry_id": fresh, "tier": "Standard"}, follow=True)
    assert "no archive copy in S3" in response.content.decode()
    assert not Restore.objects.exists()


def test_tiers_follow_the_storage_class(client, make_user, placeholders, settings, rq_queue):
    sim, entry_ids, _ = placeholders
    client.force_login(make_user("root", "admin"))
    page = client.get(reverse("restore_new"), {"entry_id": entry_ids[0]}).content.decode()
    assert 'value="Expedited"' in page and "1–5 minutes" in page
    # Another entry archived to Deep Archive: no Expedited.
    settings.ARCHIVE_STORAGE_CLASS = "DEEP_ARCHIVE"
    deep_ids, _ = make_placeholders(sim, rq_queue, make_user("deep", "admin"), 1)
    page = client.get(reverse("restore_new"), {"entry_id": deep_ids[0]}).content.decode()
    assert "DEEP_ARCHIVE" in page and 'value="Expedited"' not in page and "up to 48 hours" in page
    response = client.get(reverse("restore_new"), {"entry_id": deep_ids[0], "tier": "Expedited"})
    assert "has no Expedited restore" in response.content.decode()


def test_a_failed_restore_shows_its_reason_and_can_be_retried(client, make_user, placeholders, rq_queue):
    sim, entry_ids, originals = placeholders
    admin = make_user("root", "admin")
    client.force_login(admin)
    client.post(reverse("restore_create"), {"entry_id": entry_ids[0], "tier": "Bulk"})
    restore = Restore.objects.get()
    # The worker cannot reach Kaltura while it runs: a clear failure, with the reason on the page.
    sim.state.inject_fault("kaltura_error", count=20, service="uploadtoken", action="add", code="SERVICE_FORBIDDEN")
    run_jobs(rq_queue)
    restore.refresh_from_db()
    assert restore.status == Restore.Status.FAILED
    page = client.get(reverse("restore_list")).content.decode()
    assert "SERVICE_FORBIDDEN" in page and "Retry" in page
    assert "failed: 1" in page
    home = client.get(reverse("home")).content.decode()
    assert 'data-testid="restores-failed" class="text-danger">1<' in home

    sim.state.clear_faults()
    client.post(reverse("restore_retry", args=[restore.pk]))
    run_jobs(rq_queue)
    restore.refresh_from_db()
    assert restore.status == Restore.Status.DONE, restore.error
    assert sim.state.original_bytes_sha256(entry_ids[0]) == originals[entry_ids[0]]
    assert AuditEvent.objects.filter(action="restore_retry", username="root").exists()
    # Retrying a finished restore is refused.
    response = client.post(reverse("restore_retry", args=[restore.pk]), follow=True)
    assert "only a failed one is retried" in response.content.decode()


@pytest.mark.browser
def test_an_admin_restores_a_video_from_the_restore_page(page, sign_in, make_user, placeholders, rq_queue):
    sim, entry_ids, originals = placeholders
    entry_id = entry_ids[0]
    sign_in(make_user("ada", "admin"))
    page.goto(f"/entries/{entry_id}/")
    page.click("[data-testid=restore-link]")
    page.wait_for_selector("[data-testid=restore-entry]")
    assert page.get_by_test_id("storage-class").inner_text() == "GLACIER"
    assert ArchiveCopy.objects.get(entry_id=entry_id).sha256 in page.get_by_test_id("restore-entry").inner_text()
    page.check("#tier-Bulk")
    page.click("text=Preview")
    page.wait_for_selector("[data-testid=restore-preview]")
    assert page.get_by_test_id("expected-wait").inner_text() == "5–12 hours"
    assert "Upload the original back to Kaltura (" in page.get_by_test_id("restore-steps").inner_text()
    assert not Restore.objects.exists(), "the preview changed nothing"
    page.click(f"text=Confirm restore of {entry_id}")
    page.wait_for_selector("[data-testid=restore-status][data-status=requested]")

    # A real worker (in this process, sharing the test database) does the job.
    SimpleWorker([rq_queue], connection=rq_queue.connection).work(burst=True)
    # The page follows the restore by itself (htmx) while it is under way.
    page.wait_for_selector("[data-testid=restore-status][data-status=done]", timeout=20_000)
    assert "untag_replaced" in page.get_by_test_id("restore-events").inner_text()
    assert sim.state.original_bytes_sha256(entry_id) == originals[entry_id]
    assert "flavors_deleted" not in tags(sim, entry_id)
    page.click("nav >> text=Restores")
    assert entry_id in page.get_by_test_id("restores-done").inner_text()


@pytest.mark.browser
def test_a_librarian_gets_403_on_the_restore_page(page, sign_in, make_user, placeholders):
    sim, entry_ids, _ = placeholders
    sign_in(make_user("lena", "librarian"))
    for path in ("/restores/", f"/restores/new/?entry_id={entry_ids[0]}"):
        response = page.goto(path)
        assert response.status == 403, path
    assert page.locator("nav >> text=Restores").count() == 0
