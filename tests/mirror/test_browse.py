"""The browse page, export, entry page and dashboard through Django's test client, and one browser run."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from archive_app.mirror import costs
from archive_app.mirror.selectors import EXPORT_COLUMNS
from archive_app.models import TAG_ARCHIVED, TAG_REPLACED, Entry, SyncRun
from tests.factories import YEAR, make_category, make_entry

MB = 1024**2


@pytest.fixture
def librarian_client(client, make_user):
    client.force_login(make_user())
    return client


@pytest.fixture
def library(db):
    """A small mirror with known values."""
    now = timezone.now()
    lectures = make_category(10, "Lectures")
    biology = make_category(11, "Biology", lectures)
    other = make_category(110, "Other")
    entries = {
        "old": make_entry(
            "1_oldoldol",
            name="Old unplayed",
            created_at=now - 6 * YEAR,
            last_played_at=now - 5.5 * YEAR,
            plays=3,
            tags="lecture",
            categories=[biology],
            flavor_sizes=(400 * MB, 100 * MB, 50 * MB),
        ),
        "never": make_entry(
            "1_nevernev",
            name="=cmd|' /C calc'!A0",
            created_at=now - 3 * YEAR,
            plays=0,
            tags="Lecture Capture, zoom",
            categories=[other],
            flavor_sizes=(200 * MB, 20 * MB),
        ),
        "recent": make_entry(
            "1_recentre",
            name="Recent hit",
            created_at=now - 2 * YEAR,
            last_played_at=now - dt.timedelta(days=3),
            plays=900,
            tags="not_archived",
            flavor_sizes=(300 * MB, 30 * MB),
        ),
        "archived": make_entry(
            "1_archived",
            name="+Archived already",
            created_at=now - 4 * YEAR,
            last_played_at=now - 3 * YEAR,
            plays=10,
            tags=f"{TAG_ARCHIVED}, lecture",
            categories=[lectures],
            flavor_sizes=(500 * MB, 80 * MB),
        ),
        "placeholder": make_entry(
            "1_placehol",
            name="Replaced",
            created_at=now - 8 * YEAR,
            last_played_at=now - 7 * YEAR,
            plays=1,
            tags=f"{TAG_ARCHIVED}, {TAG_REPLACED}",
            flavor_sizes=(30_000, 20_000),
        ),
        "gone": make_entry(
            "1_gonegone",
            name="Gone",
            created_at=now - 9 * YEAR,
            gone=True,
            flavor_sizes=(700 * MB,),
        ),
    }
    return entries


def visible(library):
    return [entry for entry in library.values() if not entry.gone]


def row_ids(response) -> list[str]:
    return [row["id"] for row in response.context["rows"]]


# --- Access -----------------------------------------------------------------------

PAGES = [
    ("home", {}),
    ("entry_list", {}),
    ("entry_export", {"fmt": "csv"}),
    ("entry_detail", {"entry_id": "1_oldoldol"}),
]


@pytest.mark.parametrize(("name", "kwargs"), PAGES)
def test_anonymous_is_sent_to_sign_in(client, library, name, kwargs):
    response = client.get(reverse(name, kwargs=kwargs))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(("name", "kwargs"), PAGES)
def test_user_without_a_role_is_refused(client, make_user, library, name, kwargs):
    client.force_login(make_user("nobody", role=None))
    response = client.get(reverse(name, kwargs=kwargs))
    if name == "home":  # the home page tells them they have no role yet, and shows no figures
        assert response.status_code == 200 and b'data-testid="no-role"' in response.content
        assert b'data-testid="state-' not in response.content
    else:
        assert response.status_code == 403


@pytest.mark.parametrize("role", ["librarian", "admin"])
def test_both_roles_may_browse(client, make_user, library, role):
    client.force_login(make_user(role, role=role))
    assert client.get(reverse("entry_list")).status_code == 200


def test_browse_accepts_only_get(librarian_client, library):
    assert librarian_client.post(reverse("entry_list")).status_code == 405


# --- Browse -----------------------------------------------------------------------


def test_browse_lists_visible_entries_with_totals(librarian_client, library):
    response = librarian_client.get(reverse("entry_list"))
    assert response.status_code == 200
    shown = visible(library)
    assert set(row_ids(response)) == {entry.id for entry in shown}
    totals = response.context["totals"]
    assert totals.entries == len(shown)
    assert totals.bytes == sum(entry.total_flavor_bytes for entry in shown)
    unreplaced = [entry for entry in shown if entry.archive_state != "placeholder"]
    assert (
        totals.freed_bytes
        == sum(entry.total_flavor_bytes for entry in unreplaced) - len(unreplaced) * costs.placeholder_entry_bytes()
    )
    html = response.content.decode()
    assert 'data-testid="total-entries">5<' in html
    assert "never" in html  # the never-played entry's last play
    assert "1_gonegone" not in html


def test_large_selections_of_a_large_table_show_estimated_totals_on_postgresql(librarian_client, db, monkeypatch):
    """At a million entries an exact sum of a large selection reads the whole table; the page then shows
    totals from a sample, saying "about". Small selections, and what acts on a selection, stay exact."""
    from archive_app.mirror import selectors
    from tests.factories import save_dataset

    save_dataset(3000, seed=7)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE archive_app_entry")
    # The sizes scaled down with the table: 3,000 rows stand for a million.
    monkeypatch.setattr(selectors, "ESTIMATE_FROM_TABLE", 1000)
    monkeypatch.setattr(selectors, "ESTIMATE_ABOVE", 500)
    monkeypatch.setattr(selectors, "SAMPLE_ROWS", 1500)
    visible_entries = Entry.objects.filter(gone=False)
    exact = selectors.entry_selection_totals(queryset=visible_entries)
    response = librarian_client.get(reverse("entry_list"))
    totals, html = response.context["totals"], response.content.decode()
    if connection.vendor != "postgresql":
        assert totals == exact and not totals.estimated  # SQLite: always exact
        return
    assert totals.estimated and not exact.estimated
    assert abs(totals.entries - exact.entries) < 0.15 * exact.entries
    assert abs(totals.bytes - exact.bytes) < 0.2 * exact.bytes
    estimate_title = 'title="estimated from a sample of the mirror"'
    assert f'data-testid="total-entries" {estimate_title}>about {totals.entries:,}<' in html
    assert f"Select all (about {totals.entries:,}) matching" in html
    assert ">Last<" not in html  # the last page of an estimate is a guess
    # The same pages are sampled on every request: the page does not flicker between numbers.
    assert librarian_client.get(reverse("entry_list")).context["totals"] == totals
    # A selection the sample puts below ESTIMATE_ABOVE is counted exactly.
    few = list(visible_entries.order_by("id").values_list("id", flat=True)[:40])
    small = librarian_client.get(reverse("entry_list"), {"ids": " ".join(few)}).context["totals"]
    assert small == selectors.entry_selection_totals(queryset=visible_entries.filter(id__in=few))
    assert small.entries == 40 and not small.estimated


def test_table_rows_escape_what_kaltura_sent(librarian_client, db):
    lectures = make_category(70, 'Talks "A" & <B>')
    make_entry("1_escape01", name="<script>alert(1)</script>", tags="a<b", categories=[lectures], gone=True)
    html = librarian_client.get(reverse("entry_list"), {"include_gone": "on"}).content.decode()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<span title="Talks &quot;A&quot; &amp; &lt;B&gt;">Talks &quot;A&quot; &amp; &lt;B&gt;</span>' in html
    assert "a&lt;b" in html and '<span class="badge text-bg-secondary">gone</span>' in html


def test_filters_come_from_the_url(librarian_client, library):
    response = librarian_client.get(reverse("entry_list"), {"unplayed_years": "2", "state": ["initial", "archived"]})
    assert set(row_ids(response)) == {"1_oldoldol", "1_nevernev", "1_archived"}
    assert response.context["totals"].entries == 3
    # The form shows what was asked for, so the page can be bookmarked and shared.
    html = response.content.decode()
    assert 'name="unplayed_years" id="id_unplayed_years" value="2"' in html
    assert 'name="state" value="archived" id="id_state_1" checked' in html


def test_category_filter_includes_subcategories_only(librarian_client, library):
    response = librarian_client.get(reverse("entry_list"), {"category": "10"})
    assert set(row_ids(response)) == {"1_oldoldol", "1_archived"}  # not 110 "Other"


def test_tag_filter_is_exact_and_case_insensitive(librarian_client, library):
    assert set(row_ids(librarian_client.get(reverse("entry_list"), {"tags": "LECTURE"}))) == {
        "1_oldoldol",
        "1_archived",
    }
    assert set(row_ids(librarian_client.get(reverse("entry_list"), {"tags": "archived"}))) == set()
    assert "1_recentre" not in row_ids(librarian_client.get(reverse("entry_list"), {"tags_excluded": "not_archived"}))


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("plays", ["1_nevernev", "1_placehol", "1_oldoldol", "1_archived", "1_recentre"]),
        ("-plays", ["1_recentre", "1_archived", "1_oldoldol", "1_placehol", "1_nevernev"]),
        ("last_played", ["1_nevernev", "1_placehol", "1_oldoldol", "1_archived", "1_recentre"]),
        ("-last_played", ["1_recentre", "1_archived", "1_oldoldol", "1_placehol", "1_nevernev"]),
        ("-total_size", ["1_archived", "1_oldoldol", "1_recentre", "1_nevernev", "1_placehol"]),
        ("created", ["1_placehol", "1_oldoldol", "1_archived", "1_nevernev", "1_recentre"]),
    ],
)
def test_sorting_by_column(librarian_client, library, sort, expected):
    response = librarian_client.get(reverse("entry_list"), {"sort": sort})
    assert row_ids(response) == expected


def test_column_links_toggle_the_sort_and_keep_the_filters(librarian_client, library):
    html = librarian_client.get(reverse("entry_list"), {"sort": "plays", "state": "initial"}).content.decode()
    assert 'href="?sort=-plays&amp;state=initial" data-sort="plays"' in html
    assert 'aria-sort="ascending"' in html
    assert 'href="?sort=name&amp;state=initial" data-sort="name"' in html


@pytest.mark.parametrize(
    "query",
    [
        {"sort": "tags_search"},
        {"sort": "-password"},
        {"unplayed_years": "-1"},
        {"created_before_years": str(10**30)},
        {"plays_lt": "lots"},
        {"status": "99"},
        {"state": "deleted"},
        {"category": "abc"},
        {"original_min": "12 XB"},
        {"ids": "not an id"},
        {"created_from": "2020-02-30"},
        {"state": "placeholder", "played_within_years": "1e999"},
    ],
)
def test_invalid_filters_show_errors_and_an_empty_table(librarian_client, library, query):
    response = librarian_client.get(reverse("entry_list"), query)
    assert response.status_code == 200
    assert response.context["page"] is None
    assert response.context["form"].errors
    html = response.content.decode()
    assert 'data-testid="filter-errors"' in html
    assert "No entries listed until the filters are corrected." in html
    assert not any(entry.id in html for entry in library.values())


def test_pages_of_fifty(librarian_client, db):
    for number in range(60):
        make_entry(f"0_page{number:04d}", created_at=timezone.now() - dt.timedelta(days=number))
    first = librarian_client.get(reverse("entry_list"))
    assert len(row_ids(first)) == 50
    assert 'href="?page=2"' in first.content.decode()
    second = librarian_client.get(reverse("entry_list"), {"page": "2"})
    assert row_ids(second) == [f"0_page{number:04d}" for number in range(50, 60)]
    assert row_ids(librarian_client.get(reverse("entry_list"), {"page": "999"})) == row_ids(second)


def test_browse_query_count_does_not_grow_with_rows(librarian_client, library, django_assert_max_num_queries):
    # session, user, permissions, categories, totals, page, categories of the page
    with django_assert_max_num_queries(9):
        librarian_client.get(reverse("entry_list"))


# --- Export -----------------------------------------------------------------------


def export(client, fmt, query=None):
    response = client.get(reverse("entry_export", kwargs={"fmt": fmt}), query or {})
    assert response.status_code == 200
    assert response.streaming
    body = b"".join(response.streaming_content).decode()
    delimiter = "," if fmt == "csv" else "\t"
    return response, list(csv.reader(io.StringIO(body), delimiter=delimiter))


def test_csv_export_has_the_selection_every_column_and_iso_dates(librarian_client, library):
    response, rows = export(librarian_client, "csv", {"unplayed_years": "2", "sort": "plays"})
    assert response["Content-Type"].startswith("text/csv")
    assert 'attachment; filename="kaltura-entries-' in response["Content-Disposition"]
    assert rows[0] == EXPORT_COLUMNS
    records = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert [record["id"] for record in records] == ["1_nevernev", "1_placehol", "1_oldoldol", "1_archived"]
    old = records[2]
    entry = library["old"]
    assert old["last_played"] == entry.last_played_at.isoformat()
    assert dt.datetime.fromisoformat(old["created"]) == entry.created_at
    assert old["plays"] == "3" and old["status"] == "READY" and old["media_type"] == "VIDEO"
    assert old["categories"] == "Lectures>Biology" and old["category_ids"] == "11"
    assert old["original_size_bytes"] == str(400 * MB)
    assert old["total_flavor_bytes"] == str(550 * MB)
    assert old["archive_state"] == "initial"
    assert records[0]["last_played"] == ""


def test_export_guards_against_formula_injection(librarian_client, library):
    _, rows = export(librarian_client, "csv", {"ids": "1_nevernev 1_archived", "sort": "id"})
    names = [row[EXPORT_COLUMNS.index("name")] for row in rows[1:]]
    assert names == ["'+Archived already", "'=cmd|' /C calc'!A0"]


def test_tsv_export(librarian_client, library):
    response, rows = export(librarian_client, "tsv", {"state": "placeholder"})
    assert response["Content-Type"].startswith("text/tab-separated-values")
    assert rows[0] == EXPORT_COLUMNS
    assert [row[EXPORT_COLUMNS.index("id")] for row in rows[1:]] == ["1_placehol"]
    assert rows[1][EXPORT_COLUMNS.index("tags")] == f"{TAG_ARCHIVED}, {TAG_REPLACED}"


def test_export_with_invalid_filters_is_a_400_naming_the_field(librarian_client, library):
    response = librarian_client.get(reverse("entry_export", kwargs={"fmt": "csv"}), {"unplayed_years": "x"})
    assert response.status_code == 400
    assert b"unplayed_years: Enter a number." in response.content


def test_only_csv_and_tsv_exports_exist(librarian_client, library):
    # APPEND_SLASH turns it into an entry id, which does not exist.
    assert librarian_client.get("/entries/export.xlsx", follow=True).status_code == 404


def test_export_links_carry_the_filters_but_not_the_page(librarian_client, library):
    html = librarian_client.get(reverse("entry_list"), {"tags": "zoom", "page": "1"}).content.decode()
    assert 'href="/entries/export.csv?tags=zoom"' in html
    assert 'href="/entries/export.tsv?tags=zoom"' in html


# --- Entry page -------------------------------------------------------------------


def test_entry_page_shows_fields_flavors_categories_and_empty_sections(librarian_client, library):
    response = librarian_client.get(reverse("entry_detail", kwargs={"entry_id": "1_oldoldol"}))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Old unplayed" in html
    assert html.count("<tr>") - 1 == 3  # three flavors (one header row)
    assert "Lectures&gt;Biology" in html
    assert 'src="https://cfvod.kaltura.com/p/1/thumbnail/entry_id/x/version/1"' in html
    assert "No archive copy recorded." in html and "No events yet." in html
    assert "not archived" in html


def test_entry_page_does_not_render_a_script_url_as_image(librarian_client, db):
    make_entry("1_badthumb", thumbnail_url="javascript:alert(1)")
    html = librarian_client.get(reverse("entry_detail", kwargs={"entry_id": "1_badthumb"})).content.decode()
    assert "javascript:" not in html


def test_unknown_entry_is_404(librarian_client, library):
    assert librarian_client.get(reverse("entry_detail", kwargs={"entry_id": "1_nosuchid"})).status_code == 404


# --- Dashboard --------------------------------------------------------------------


def test_dashboard_numbers_match_a_direct_computation(librarian_client, library, settings):
    settings.ARCHIVE_STORAGE_CLASS = "DEEP_ARCHIVE"
    now = timezone.now()
    response = librarian_client.get(reverse("home"))
    assert response.status_code == 200
    shown = visible(library)

    states = {row["state"]: row for row in response.context["states"]}
    for state in ("initial", "archived", "placeholder"):
        members = [entry for entry in shown if entry.archive_state == state]
        assert states[state]["entries"] == len(members)
        assert states[state]["bytes"] == sum(entry.total_flavor_bytes for entry in members)

    rows = {row["years"]: row for row in response.context["savings"]}
    for years, expected_ids in {1: {"old", "never", "archived"}, 5: {"old"}}.items():
        chosen = [library[key] for key in expected_ids]
        row = rows[years]
        assert row["entries"] == len(chosen)
        freed = sum(entry.total_flavor_bytes for entry in chosen) - len(chosen) * costs.placeholder_entry_bytes()
        assert row["freed_bytes"] == freed
        originals = sum(entry.original_size_bytes for entry in chosen)
        assert row["original_bytes"] == originals
        saving = row["savings"]
        assert saving.storage_class == "DEEP_ARCHIVE"
        gb = 1024**3
        expected_net = freed / gb * 0.10 - (
            originals / gb * 0.00099 + len(chosen) * (8 * 1024 / gb * 0.023 + 32 * 1024 / gb * 0.00099)
        )
        assert saving.net_monthly == pytest.approx(expected_net)
    # 3 years: the never-played entry (created exactly 3 years ago) is on the boundary; leave it out.

    played = {bar["label"]: bar for bar in response.context["played_years"]}
    assert played["never"]["entries"] == 1
    assert played["never"]["bytes"] == library["never"].total_flavor_bytes
    recent_year = str(timezone.localtime(library["recent"].last_played_at).year)
    assert played[recent_year]["bytes"] >= library["recent"].total_flavor_bytes
    assert sum(bar["entries"] for bar in response.context["played_years"]) == len(shown)
    assert sum(bar["entries"] for bar in response.context["created_years"]) == len(shown)
    assert sum(bar["bytes"] for bar in response.context["created_years"]) == sum(e.total_flavor_bytes for e in shown)

    html = response.content.decode()
    assert 'href="/entries/?unplayed_years=2&amp;state=initial&amp;state=archived"' in html
    assert html.count('<g class="bar') == len(response.context["played_years"]) + len(response.context["created_years"])
    assert "never synced" in html
    assert now.year - 8 <= int(response.context["created_years"][0]["label"].lstrip("≤ ")) <= now.year


def test_dashboard_shows_the_newest_sync_run(librarian_client, db):
    SyncRun.objects.create(kind="full", status="succeeded", finished_at=timezone.now(), total_expected=10, seen=10)
    newest = SyncRun.objects.create(kind="incremental", status="running", total_expected=200, seen=50, created=7)
    assert newest.progress_percent == 25
    html = librarian_client.get(reverse("home")).content.decode()
    assert "Incremental" in html and "running" in html and "25%" in html and "7 new" in html
    assert "never synced" not in html


def test_dashboard_with_an_empty_mirror(librarian_client, db):
    response = librarian_client.get(reverse("home"))
    assert response.status_code == 200
    assert response.context["created_years"] == []
    assert [bar["label"] for bar in response.context["played_years"]] == ["never"]


# --- In a browser -----------------------------------------------------------------


@pytest.mark.browser
def test_browse_filter_sort_export_and_open_an_entry(page, sign_in, make_user, library, tmp_path):
    sign_in(make_user("librarian-lee"))
    page.click("nav >> text=Entries")
    page.wait_for_url("**/entries/")
    assert page.get_by_test_id("total-entries").inner_text() == "5"

    page.fill("#id_unplayed_years", "2")
    page.click("text=Apply filters")
    page.wait_for_url("**unplayed_years=2**")
    assert page.get_by_test_id("total-entries").inner_text() == "4"

    page.click("th >> a[data-sort=plays]")
    page.wait_for_url("**sort=plays**")
    shown = page.locator("tbody tr").evaluate_all("rows => rows.map(row => row.dataset.entryId)")
    assert shown == ["1_nevernev", "1_placehol", "1_oldoldol", "1_archived"]
    assert page.locator("#id_unplayed_years").input_value() == "2"

    with page.expect_download() as download_info:
        page.get_by_test_id("export-csv").click()
    path = tmp_path / "export.csv"
    download_info.value.save_as(path)
    rows = list(csv.reader(path.open(newline="", encoding="utf-8")))
    assert rows[0] == EXPORT_COLUMNS
    assert [row[EXPORT_COLUMNS.index("id")] for row in rows[1:]] == shown

    page.click("a:text('1_oldoldol')")
    page.wait_for_url("**/entries/1_oldoldol/")
    assert page.get_by_test_id("entry-name").inner_text() == "Old unplayed"
    assert page.get_by_test_id("flavors-table").locator("tbody tr").count() == 3
    assert Entry.objects.get(pk="1_oldoldol").name == "Old unplayed"


@pytest.mark.django_db
def test_the_browse_indexes_exist_after_migrating():
    """The hand-made indexes survive later migrations (SQLite rebuilds a table to add a column)."""
    with connection.cursor() as cursor:
        names = set(connection.introspection.get_constraints(cursor, "archive_app_entry"))
    expected = {"entry_browse", "entry_totals", "entry_last_played_id", "entry_plays_id", "entry_name_id"}
    if connection.vendor == "sqlite":
        expected.add("entry_browse_text")
    else:
        expected |= {"entry_tags_trgm", "entry_categories_trgm"}
    assert expected <= names
