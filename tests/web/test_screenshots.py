"""Screenshots of each main page at 1366 × 768, for the README: a small library archived by the real jobs.

    SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest tests/web/test_screenshots.py

writes them (skipped without SCREENSHOTS). Every page is also checked to render without an error.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.http import QueryDict
from django.utils import timezone
from rq import SimpleWorker

from archive_app.archive import batches, restores
from archive_app.lib.kaltura import Kaltura
from archive_app.mirror import selectors, sync
from archive_app.models import ArchivePolicy, Batch, Entry, Restore
from archive_app.scheduling import exemptions

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

VIEWPORT = {"width": 1366, "height": 768}


def run_jobs(queue) -> None:
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


def archived_by_the_jobs(queue, admin, query: str, action: str, count: int) -> Batch:
    entry_ids = list(selectors.entry_list(data=QueryDict(query)).values_list("id", flat=True)[:count])
    batch = batches.batch_create(user=admin, action=action, entry_ids=entry_ids)
    batches.batch_preview(batch, user=admin)
    batches.batch_approve(batch, user=admin)
    run_jobs(queue)
    return batch


@pytest.fixture
def library(make_kaltura_sim, s3, rq_queue, settings, make_user):
    sim = make_kaltura_sim(entries=400, archive_tags=False)
    settings.KALTURA_SERVICE_URL, settings.KALTURA_PARTNERID = sim.url, sim.partner_id
    settings.KALTURA_SECRET, settings.KALTURA_USERID = sim.admin_secret, "kaltura-archive-screenshots"
    settings.KALTURA_RETRY_DELAYS = (0.01,)
    settings.ARCHIVE_REPLACEMENT_WAIT_SECONDS = 20
    admin = make_user("admin", role="admin")
    kaltura = Kaltura.from_settings()
    sync.sync_full(kaltura)
    videos = "media_type=1&status=2&sort=created"
    replaced = archived_by_the_jobs(rq_queue, admin, f"unplayed_years=5&{videos}", Batch.Action.ARCHIVE_REPLACE, 8)
    archived_by_the_jobs(rq_queue, admin, f"unplayed_years=3&played_within_years=5&{videos}", Batch.Action.ARCHIVE, 12)
    draft = selectors.entry_list(data=QueryDict("unplayed_years=2&state=initial")).values_list("id", flat=True)[:30]
    batches.batch_create(user=admin, action=Batch.Action.ARCHIVE, entry_ids=list(draft), preview=True, kaltura=kaltura)
    placeholder = Entry.objects.filter(archive_state="placeholder").order_by("id").first()
    restores.restore_request(entry_id=placeholder.id, tier="Standard", source=Restore.Source.MANUAL, user=admin)
    run_jobs(rq_queue)
    ArchivePolicy.objects.create(
        name="Lectures unplayed for 3 years",
        filter_query="unplayed_years=3&media_type=1",
        next_run_at=timezone.now() + timedelta(days=20),
        created_by=admin,
    )
    exempt = Entry.objects.filter(archive_state="initial").order_by("-plays").first()
    exemptions.entry_exempt(exempt.id, kaltura=kaltura, user=admin, reason="used every term")
    return admin, replaced, placeholder


def main_pages(replaced: Batch, placeholder: Entry) -> list[tuple[str, str]]:
    return [
        ("sign-in", "/login/"),
        ("dashboard", "/"),
        ("entries", "/entries/?unplayed_years=3"),
        ("entry", f"/entries/{placeholder.id}/"),
        ("batches", "/batches/"),
        ("batch", f"/batches/{replaced.pk}/"),
        ("health", "/health/"),
        ("policies", "/policies/"),
        ("exemptions", "/exemptions/"),
        ("restores", "/restores/"),
        ("audit-log", "/audit/"),
    ]


@pytest.mark.skipif(not os.environ.get("SCREENSHOTS"), reason="set SCREENSHOTS=<directory> to take them")
def test_screenshots_of_the_main_pages(browser, live_server, library):
    admin, replaced, placeholder = library
    folder = Path(os.environ["SCREENSHOTS"])
    folder.mkdir(parents=True, exist_ok=True)
    pages = main_pages(replaced, placeholder)
    context = browser.new_context(base_url=live_server.url, viewport=VIEWPORT)
    page = context.new_page()
    try:
        for number, (name, url) in enumerate(pages, start=1):
            if name == "dashboard":  # signed out for the sign-in page only
                page.fill("#id_username", admin.username)
                page.fill("#id_password", admin.raw_password)
                page.click("button[type=submit]")
                page.wait_for_selector("[data-testid=signed-in-user]")
            response = page.goto(url)
            assert response.status == 200, (url, response.status)
            page.screenshot(path=folder / f"{number:02d}-{name}.png")
    finally:
        context.close()
