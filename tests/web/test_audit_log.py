"""The audit log page: filters, pages, CSV export, links from entries and batches; append-only."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from archive_app import audit
from archive_app.models import AuditEvent, Batch
from archive_app.web import audit_views
from archive_app.web.audit_views import ACTIONS_CACHE_KEY, EXPORT_COLUMNS, PAGE_SIZE
from tests.factories import make_entry

pytestmark = pytest.mark.django_db


@pytest.fixture
def events(make_user):
    """A small history: two users, two batches, real and dry-run events, every outcome."""
    lena, sam = make_user("lena"), make_user("sam", role="admin")
    first = Batch.objects.create(action=Batch.Action.ARCHIVE, created_by=lena)
    second = Batch.objects.create(action=Batch.Action.REPLACE, created_by=sam)
    made = [
        audit.record("preview_archive", user=lena, entry_id="1_aaaaaaaa", batch=first, dry_run=True),
        audit.record("preview_archive", user=lena, entry_id="1_bbbbbbbb", batch=first, dry_run=True, outcome="skipped"),
        audit.record("batch_approve", user=sam, batch=first, dry_run=False),
        audit.record("copy", entry_id="1_aaaaaaaa", batch=first, dry_run=False, details={"bytes": 123}),
        audit.record("copy", entry_id="1_bbbbbbbb", batch=first, dry_run=False, outcome="failed", message="=cmd()"),
        audit.record("replace", user=sam, entry_id="1_aaaaaaaa", batch=second, dry_run=False, outcome="refused"),
    ]
    return {"lena": lena, "sam": sam, "first": first, "second": second, "events": made}


def _listed(response) -> list[int]:
    return [row["id"] for row in response.context["rows"]]


def _ids(events, *indexes) -> list[int]:
    """Newest first, as the page lists them."""
    return sorted((events["events"][i].pk for i in indexes), reverse=True)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, [0, 1, 2, 3, 4, 5]),
        ({"user": "lena"}, [0, 1]),
        ({"user": "LENA"}, []),
        ({"user": "system"}, [3, 4]),
        ({"action": "copy"}, [3, 4]),
        ({"action": "never_recorded"}, []),
        ({"entry": "1_aaaaaaaa"}, [0, 3, 5]),
        ({"batch": "<second>"}, [5]),
        ({"outcome": "failed"}, [4]),
        ({"mode": "dry_run"}, [0, 1]),
        ({"mode": "real", "entry": "1_bbbbbbbb"}, [4]),
        ({"since": "<today>", "until": "<today>"}, [0, 1, 2, 3, 4, 5]),
        ({"until": "<yesterday>"}, []),
        ({"since": "<tomorrow>"}, []),
    ],
)
def test_filters(client, events, query, expected):
    client.force_login(events["lena"])
    today = timezone.localdate()
    values = {
        "<second>": str(events["second"].pk),
        "<today>": today.isoformat(),
        "<yesterday>": (today - dt.timedelta(days=1)).isoformat(),
        "<tomorrow>": (today + dt.timedelta(days=1)).isoformat(),
    }
    response = client.get(reverse("audit_log"), {key: values.get(value, value) for key, value in query.items()})
    assert response.status_code == 200
    assert _listed(response) == _ids(events, *expected)


@pytest.mark.parametrize(
    "query",
    [
        {"entry": "not an id"},
        {"entry": "1_a'; DROP TABLE"},
        {"batch": "x"},
        {"batch": "1.5"},
        {"batch": "-1"},
        {"batch": "99999999999999999999999"},
        {"since": "2026-02-30"},
        {"since": "0001-01-01"},
        {"since": "2026-05-02", "until": "2026-05-01"},
        {"outcome": "deleted"},
        {"mode": "both"},
        {"action": "Copy; DROP"},
        {"action": "x" * 51},
        {"user": "x" * 151},
    ],
)
def test_invalid_filters_are_form_errors_and_list_nothing(client, events, query):
    client.force_login(events["lena"])
    response = client.get(reverse("audit_log"), query)
    assert response.status_code == 200
    assert response.context["form"].errors
    assert response.context["page"] is None
    assert b'data-testid="filter-errors"' in response.content
    export = client.get(reverse("audit_export"), query)
    assert export.status_code == 400 and export["Content-Type"].startswith("text/plain")


def test_a_nul_anywhere_in_the_query_is_a_bad_request(client, events):
    # Refused by the middleware before any view (PostgreSQL cannot take NUL in a query).
    client.force_login(events["lena"])
    for name in ("audit_log", "audit_export"):
        assert client.get(reverse(name), {"user": "nul\x00"}).status_code == 400


def test_pages_hold_a_hundred_newest_first(client, make_user):
    user = make_user("lena")
    for n in range(PAGE_SIZE + 5):
        audit.record("preview_archive", user=user, entry_id=f"1_page{n:04d}", dry_run=True)
    client.force_login(user)
    first = client.get(reverse("audit_log"))
    assert len(_listed(first)) == PAGE_SIZE
    assert first.context["rows"][0]["entry_id"] == f"1_page{PAGE_SIZE + 4:04d}"
    second = client.get(reverse("audit_log"), {"page": 2})
    oldest = [f"1_page{n:04d}" for n in range(4, -1, -1)]
    assert [row["entry_id"] for row in second.context["rows"]] == oldest
    assert client.get(reverse("audit_log"), {"page": "nonsense"}).status_code == 200
    # The page links keep the filter.
    filtered = client.get(reverse("audit_log"), {"action": "preview_archive"}).content.decode()
    assert "?action=preview_archive&amp;page=2" in filtered


def test_export_is_the_filtered_view_as_csv(client, events):
    client.force_login(events["lena"])
    response = client.get(reverse("audit_export"), {"entry": "1_bbbbbbbb"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="kaltura-archive-audit-')
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == EXPORT_COLUMNS
    by_column = [dict(zip(EXPORT_COLUMNS, row, strict=True)) for row in rows[1:]]
    assert [(row["action"], row["user"], row["mode"], row["outcome"]) for row in by_column] == [
        ("copy", "system", "real", "failed"),
        ("preview_archive", "lena", "dry run", "skipped"),
    ]
    # A message a spreadsheet would run as a formula is defused.
    assert by_column[0]["message"] == "'=cmd()"
    assert by_column[0]["batch"] == str(events["first"].pk)

    everything = client.get(reverse("audit_export"))
    rows = list(csv.reader(io.StringIO(b"".join(everything.streaming_content).decode())))
    assert len(rows) == 1 + 6
    copy_row = dict(zip(EXPORT_COLUMNS, rows[3], strict=True))
    assert copy_row["details"] == '{"bytes": 123}'


def test_entry_and_batch_pages_link_to_their_events(client, events):
    make_entry("1_aaaaaaaa")
    client.force_login(events["lena"])
    entry_page = client.get(reverse("entry_detail", args=["1_aaaaaaaa"])).content.decode()
    assert f'href="{reverse("audit_log")}?entry=1_aaaaaaaa"' in entry_page
    first = events["first"]
    batch_page = client.get(reverse("batch_detail", args=[first.pk])).content.decode()
    assert f'href="{reverse("audit_log")}?batch={first.pk}"' in batch_page
    listed = client.get(reverse("audit_log"), {"batch": first.pk})
    assert _listed(listed) == _ids(events, 0, 1, 2, 3, 4)


def test_a_user_without_a_role_cannot_read_or_export_the_log(client, events, make_user):
    client.force_login(make_user("newcomer", role=None))
    home = client.get(reverse("home"))
    assert home.status_code == 200 and b'data-testid="no-role"' in home.content
    assert reverse("audit_log").encode() not in home.content  # not offered: it would be a 403
    assert client.get(reverse("audit_log")).status_code == 403
    assert client.get(reverse("audit_export")).status_code == 403
    assert client.get(reverse("entry_list")).status_code == 403


# --- Personal data: e-mail and IP addresses ----------------------------------------------

EMAIL, IPV4, IPV6 = "jane.owner@example.edu", "192.0.2.77", "2001:db8::7"


@pytest.fixture
def personal_events(make_user):
    """Events that quote addresses the way the app records them (a notice's address, a lock's client),
    recorded 100 days ago."""
    from django.db.models import QuerySet

    make_entry("1_personal")
    made = [
        audit.record(
            "owner_notice",
            dry_run=False,
            message=f"sent to {EMAIL}",
            details={"owner": EMAIL, "email": EMAIL, "entries": ["1_personal"]},
        ),
        audit.record(
            "sign_in_locked",
            username=EMAIL,
            dry_run=False,
            outcome="refused",
            message=f"too many failed sign-ins from {IPV4}",
            details={"address": IPV4, "locked": "address"},
        ),
        audit.record(
            "owner_keep", username=f"owner:{EMAIL}", entry_id="1_personal", dry_run=False, details={"addresses": [IPV6]}
        ),
    ]
    # Test set-up only: back-dated past the model's append-only guard, as time would.
    QuerySet.update(AuditEvent.objects.all(), created_at=timezone.now() - dt.timedelta(days=100))
    return made


def _page_and_export(client) -> tuple[str, str]:
    page = client.get(reverse("audit_log")).content.decode()
    export = b"".join(client.get(reverse("audit_export")).streaming_content).decode()
    return page, export


def test_librarians_see_addresses_masked_in_the_page_and_the_export(client, personal_events, make_user):
    client.force_login(make_user("lena"))
    page, export = _page_and_export(client)
    entry_page = client.get(reverse("entry_detail", args=["1_personal"])).content.decode()
    for text in (page, export, entry_page):
        assert EMAIL not in text and IPV4 not in text and "2001:db8::7" not in text
    for text in (page, export):
        assert "@example.edu" not in text.replace("j***@example.edu", "")
        assert "j***@example.edu" in text and "192.0.*.*" in text and "2001:db8:*" in text
    assert "owner:j***@example.edu" in entry_page
    # A masked user name is not a link: the link would carry the address.
    assert "?user=" + "jane" not in page and 'href="/audit/?user=owner' not in page
    assert "shown to archive admins only" in page


def test_archive_admins_see_addresses_in_full(client, personal_events, make_user):
    client.force_login(make_user("sam", role="admin"))
    page, export = _page_and_export(client)
    for text in (page, export):
        assert EMAIL in text and IPV4 in text and IPV6 in text
    assert f'href="/audit/?user={EMAIL.replace("@", "%40")}"' in page


def test_old_ip_addresses_are_blanked_in_place_once_and_audited(personal_events, settings, make_user):
    settings.ARCHIVE_AUDIT_IP_RETENTION_DAYS = 90
    now = timezone.now()
    recent = audit.record("sign_in_locked", username="x", dry_run=False, details={"address": "198.51.100.9"})
    fields = ["id", "created_at", "username", "action", "entry_id", "dry_run", "outcome", "message", "details"]
    before = {event["id"]: event for event in AuditEvent.objects.values(*fields)}

    result = audit.blank_old_addresses(now=now)
    assert result["events"] == 2  # the lock (message and details) and the keep (details); the notice has none
    after = {event["id"]: event for event in AuditEvent.objects.values(*fields)}
    notice, lock, keep = (after[event.pk] for event in personal_events)
    assert lock["message"] == "too many failed sign-ins from "
    assert lock["details"] == {"address": "", "locked": "address"}
    assert keep["details"] == {"addresses": [""]}
    assert notice == before[personal_events[0].pk]  # e-mail addresses are kept (shown masked to librarians)
    assert after[recent.pk] == before[recent.pk]  # not old enough yet
    for event_id, event in before.items():  # nothing but the addresses changed
        assert {k: v for k, v in after[event_id].items() if k not in ("message", "details")} == {
            k: v for k, v in event.items() if k not in ("message", "details")
        }
    run = AuditEvent.objects.get(action=audit.IP_RETENTION_ACTION)
    assert run.username == "system" and run.details["events"] == 2 and not run.dry_run

    # The next run starts where this one stopped, and finds nothing new.
    assert audit.blank_old_addresses(now=now + dt.timedelta(days=1))["events"] == 0
    assert AuditEvent.objects.filter(action=audit.IP_RETENTION_ACTION).count() == 2
    # 90 days on, the recent lock is old enough too.
    assert audit.blank_old_addresses(now=now + dt.timedelta(days=91))["events"] == 1
    assert AuditEvent.objects.get(pk=recent.pk).details == {"address": ""}


def test_blanking_addresses_is_the_only_change_an_event_allows(personal_events):
    event = AuditEvent.objects.get(pk=personal_events[1].pk)
    event.message = "rewritten"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(message="rewritten")
    event.refresh_from_db()
    assert event.blank_addresses() is True
    event.refresh_from_db()
    assert IPV4 not in event.message and event.message.startswith("too many failed sign-ins")
    assert event.blank_addresses() is False  # nothing left to remove


def test_the_scheduler_blanks_old_addresses(rq_queue):
    from rq.cron import CronScheduler

    from archive_app.jobs import audit_ip_retention_job

    scheduler = CronScheduler(connection=rq_queue.connection, name="audit-retention-test")
    scheduler.load_config_from_file("archive_app/cron.py")
    assert audit_ip_retention_job in [job.func for job in scheduler.get_jobs()]


def test_the_log_offers_no_way_to_change_events(client, events):
    client.force_login(events["sam"])
    assert client.post(reverse("audit_log")).status_code == 405
    assert client.post(reverse("audit_export")).status_code == 405
    page = client.get(reverse("audit_log")).content.decode()
    assert 'method="post"' not in page.split("<main")[1]
    event = events["events"][0]
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(outcome="ok")
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.count() == 6


# --- In a browser ----------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_librarian_filters_the_log_to_one_entry_and_exports_it(page, sign_in, make_user, tmp_path):
    lena = make_user("lena")
    make_entry("1_wantedwa")
    batch = Batch.objects.create(action=Batch.Action.ARCHIVE, created_by=lena)
    audit.record("preview_archive", user=lena, entry_id="1_wantedwa", batch=batch, dry_run=True)
    audit.record("preview_archive", user=lena, entry_id="1_otherone", batch=batch, dry_run=True)
    audit.record("copy", entry_id="1_wantedwa", batch=batch, dry_run=False, details={"bytes": 5})
    audit.record("batch_approve", user=lena, batch=batch, dry_run=False)

    sign_in(lena)
    page.click("nav >> text=Audit log")
    page.wait_for_url("**/audit/")
    assert page.get_by_test_id("audit-table").locator("tbody tr").count() == 5  # and lena's sign-in

    page.fill("#id_entry", "1_wantedwa")
    page.click("text=Apply filters")
    page.wait_for_url("**entry=1_wantedwa**")
    rows = page.get_by_test_id("audit-table").locator("tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).locator("td").nth(2).inner_text() == "Copy original to S3 copy"  # newest first; label and name

    with page.expect_download() as download_info:
        page.get_by_test_id("export-csv").click()
    path = tmp_path / "audit.csv"
    download_info.value.save_as(path)
    exported = list(csv.DictReader(path.open(newline="", encoding="utf-8")))
    assert [(row["action"], row["entry_id"], row["mode"]) for row in exported] == [
        ("copy", "1_wantedwa", "real"),
        ("preview_archive", "1_wantedwa", "dry run"),
    ]

    # From the entry's own page to the same filtered log.
    page.goto("/entries/1_wantedwa/")
    page.get_by_test_id("entry-audit-link").click()
    page.wait_for_url("**/audit/?entry=1_wantedwa")
    assert page.get_by_test_id("audit-table").locator("tbody tr").count() == 2


def test_recorded_actions_are_offered_as_suggestions(client, events):
    cache.delete(ACTIONS_CACHE_KEY)  # remembered for minutes, also across tests
    client.force_login(events["lena"])
    page = client.get(reverse("audit_log")).content.decode()
    datalist = page.split('<datalist id="audit-actions">')[1].split("</datalist>")[0]
    assert datalist == "".join(
        f'<option value="{action}">' for action in ["batch_approve", "copy", "preview_archive", "replace"]
    )


def test_a_large_log_is_counted_and_paged_up_to_the_limit(client, make_user, monkeypatch):
    monkeypatch.setattr(audit_views, "COUNT_LIMIT", 200)
    user = make_user("lena")
    AuditEvent.objects.bulk_create(
        [AuditEvent(username="system", action="copy", dry_run=False, outcome="ok") for _ in range(250)]
    )
    client.force_login(user)
    response = client.get(reverse("audit_log"))
    assert response.context["page"].paginator.num_pages == 2
    assert b"More than 200 events" in response.content
    last = client.get(reverse("audit_log"), {"page": 2})
    assert len(last.context["rows"]) == PAGE_SIZE and b"Older</a>" not in last.content
    export = client.get(reverse("audit_export"))
    assert b"".join(export.streaming_content).count(b"\r\n") == 1 + 250  # the export has them all
    under = client.get(reverse("audit_log"), {"user": "nobody-at-all"})
    assert b"0 events" in under.content


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("sent to jane.owner@example.edu", "sent to j***@example.edu"),
        ("from 192.0.2.77.", "from 192.0.*.*."),
        ("from [2001:db8::7]:443", "from [2001:db8:*]:443"),
        ("from ::ffff:10.1.2.3", "from 0:0:*"),
        # Not addresses: kept as they are.
        ("at 2026-12-03T14:02:28.123+00:00, 14:02", "at 2026-12-03T14:02:28.123+00:00, 14:02"),
        ("version 1.2.3, flavor 0_abcd1234, 3.5 GB", "version 1.2.3, flavor 0_abcd1234, 3.5 GB"),
        ("sha256 " + "ab" * 32, "sha256 " + "ab" * 32),
    ],
)
def test_what_librarians_see_of_addresses(text, shown):
    from archive_app.lib.privacy import masked, without_ips

    assert masked(text) == shown
    if shown == text or "@" in text:
        assert without_ips(text) == text  # e-mail addresses are not blanked: they are not IP addresses
    else:
        assert without_ips(text) == text.replace(text.split("from ")[1].strip("[].").split("]")[0], "")
