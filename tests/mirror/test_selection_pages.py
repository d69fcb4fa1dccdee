"""Choosing entries in the table: ticks kept across pages, select-all, search, the category picker,
previewing and confirming a batch of the selection, and what the pages say after its jobs ran."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect
from rq import SimpleWorker

from archive_app.lib.kaltura import Kaltura
from archive_app.mirror import sync
from archive_app.models import ArchiveCopy, ArchivePolicy, Batch, BatchItem, Category, Entry
from archive_app.web.views import PAGE_SIZE

pytestmark = pytest.mark.django_db(transaction=True)
SEMINARS = PAGE_SIZE + 6  # two pages


@pytest.fixture
def library(kaltura_sim, s3, rq_queue, settings):
    """Two pages of old seminars (sorted by name: "Seminar 000" first) and one old lecture."""
    settings.KALTURA_RETRY_DELAYS = (0.01,)
    old = int((datetime.now(tz=UTC) - timedelta(days=6 * 365)).timestamp())
    add = kaltura_sim.state.add_entry
    seminars = [add(name=f"Seminar {n:03d}", createdAt=old, tags="forgotten") for n in range(SEMINARS)]
    lecture = add(name="Quantum chromodynamics lecture", createdAt=old, tags="forgotten", userId="prof-quark")
    sync.sync_full(Kaltura.from_settings())
    return seminars, lecture


def tick(page, entry_id: str) -> None:
    """Tick a row and wait until the server has stored it in the selection."""
    with page.expect_response(lambda response: "/entries/selection/" in response.url and response.ok):
        page.check(f"tr[data-entry-id='{entry_id}'] input[type=checkbox]")


def assert_selected(page, count: int) -> None:
    """The count is swapped in by the page's script after the server answers, so wait for it (up to 5 s)
    rather than read it once: reading right after the response raced the swap."""
    expect(page.get_by_test_id("selected-count").locator("strong")).to_have_text(str(count), timeout=5_000)


@pytest.mark.browser
def test_ticks_on_two_pages_make_a_batch_that_is_confirmed_and_runs(page, sign_in, make_user, library, rq_queue):
    seminars, _ = library
    sign_in(make_user("lena"))
    page.goto("/entries/?tags=forgotten&sort=name")
    for entry_id in seminars[:3]:
        tick(page, entry_id)
    assert_selected(page, 3)
    page.click("a[rel=next]")
    page.wait_for_selector(f"tr[data-entry-id='{seminars[PAGE_SIZE]}']")
    chosen = seminars[:3] + seminars[PAGE_SIZE : PAGE_SIZE + 2]
    for entry_id in chosen[3:]:
        tick(page, entry_id)
    assert_selected(page, 5)
    # Back on page 1 the first ticks are still there: the selection lives on the server.
    page.click("text=Previous")
    page.wait_for_selector(f"tr[data-entry-id='{seminars[0]}']")
    assert page.is_checked(f"tr[data-entry-id='{seminars[2]}'] input[type=checkbox]")
    assert not page.is_checked(f"tr[data-entry-id='{seminars[3]}'] input[type=checkbox]")

    page.select_option("select[name=action]", "archive")
    page.click("[data-testid=preview-selected]")
    page.wait_for_selector("[data-testid=preview]")
    assert page.get_by_test_id("batch-entries").inner_text() == "5"
    items = page.get_by_test_id("batch-items")
    assert "Seminar 000" in items.inner_text() and "Copy original to S3 (" in items.inner_text()

    page.click("[data-testid=approve-link]")
    assert page.get_by_test_id("confirm-entries").inner_text() == "5"
    copied = sum(Entry.objects.get(pk=entry_id).original_size_bytes for entry_id in chosen)
    assert page.get_by_test_id("confirm-copied").get_attribute("class") == "num"
    assert f"{copied:,} bytes" in page.get_by_test_id("confirm-totals").inner_text()
    assert "$" in page.get_by_test_id("confirm-saving").inner_text()
    assert "nobody is warned" in page.get_by_test_id("confirm-owners").inner_text()
    assert Batch.objects.get().status == "draft"  # the confirmation page changes nothing
    page.click("[data-testid=confirm-approve]")
    page.wait_for_selector("[data-testid=batch-progress][data-status=running]")

    SimpleWorker([rq_queue], connection=rq_queue.connection).work(burst=True)
    page.wait_for_selector("[data-testid=batch-progress][data-status=done]", timeout=20_000)
    assert "done: 5" in page.get_by_test_id("counts").inner_text()
    assert set(ArchiveCopy.objects.values_list("entry_id", flat=True)) == set(chosen)

    # The entry page after the job: the new state, read from Kaltura when the job finished.
    page.goto(f"/entries/{chosen[4]}/")
    assert page.get_by_test_id("archive-state").inner_text() == "archived (copy in S3)"
    age = page.get_by_test_id("mirror-age").inner_text()
    assert "when its last job finished" in age and "last sync" not in age
    assert "Copy original to S3" in page.get_by_test_id("history").inner_text()


@pytest.mark.browser
def test_select_all_matching_spans_pages_and_unticking_leaves_one_out(page, sign_in, make_user, library):
    seminars, lecture = library
    sign_in(make_user("lena"))
    page.goto("/entries/?tags=forgotten&sort=name")
    page.click("[data-testid=select-all]")
    assert_selected(page, SEMINARS + 1)
    page.click("a[rel=next]")
    box = f"tr[data-entry-id='{seminars[-1]}'] input[type=checkbox]"
    assert page.is_checked(box)
    with page.expect_response(lambda response: "/entries/selection/" in response.url and response.ok):
        page.uncheck(box)
    assert_selected(page, SEMINARS)
    page.select_option("select[name=action]", "archive")
    page.click("[data-testid=preview-selected]")
    page.wait_for_selector("[data-testid=preview]")
    items = set(BatchItem.objects.values_list("entry_id", flat=True))
    assert items == (set(seminars) | {lecture}) - {seminars[-1]}
    assert Batch.objects.get().filter_query == "tags=forgotten"


@pytest.mark.browser
def test_search_by_a_word_of_a_name_an_owner_or_an_id(page, sign_in, make_user, library):
    seminars, lecture = library
    sign_in(make_user("lena"))
    page.goto("/entries/")
    page.fill("input[name=q]", "chromodynamics")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**q=chromodynamics**")
    rows = page.locator("[data-testid=entries-table] tbody tr")
    assert rows.count() == 1 and rows.first.get_attribute("data-entry-id") == lecture
    page.goto("/entries/?q=QUARK")  # the owner, any case
    assert page.locator("[data-testid=entries-table] tbody tr").first.get_attribute("data-entry-id") == lecture
    page.goto(f"/entries/?q={seminars[7][:-2]}")  # the start of an id
    ids = page.locator("[data-testid=entries-table] tbody tr").evaluate_all(
        "(rows) => rows.map((row) => row.dataset.entryId)"
    )
    assert seminars[7] in ids and all(entry_id.startswith(seminars[7][:-2]) for entry_id in ids)


@pytest.mark.browser
def test_the_category_picker_narrows_its_options_as_one_types(page, sign_in, make_user, library):
    category = Category.objects.exclude(name="").order_by("-full_name").first()
    sign_in(make_user("lena"))
    page.goto("/entries/")
    page.click("summary:has-text('Categories and tags')")
    page.fill("[data-find-options=id_category]", category.name)
    visible = page.locator("#id_category option").evaluate_all(
        "(options) => options.filter((option) => !option.hidden).map((option) => option.textContent)"
    )
    assert category.full_name in visible
    assert all(category.name.lower() in text.lower() for text in visible)
    assert len(visible) < Category.objects.count()
    page.select_option("#id_category", str(category.pk))
    page.click("text=Apply filters")
    page.wait_for_url(f"**category={category.pk}**")
    assert page.locator(f"#id_category option[value='{category.pk}']").evaluate("(option) => option.selected")


@pytest.mark.browser
def test_a_typo_in_a_policy_filter_is_refused(page, sign_in, make_user, library, settings):
    settings.ARCHIVE_POLICY_MAX_SHARE = 1.0  # the share's confirmation is tested in test_policies
    sign_in(make_user("lena"))
    # The typo, as the Entries page would pass it on.
    page.goto("/policies/new/?filter=foo%3Dbar%26%26%26")
    assert "Not a filter (a typo?): 'foo'" in page.get_by_test_id("policy-filter-errors").inner_text()
    page.fill("#id_name", "Everything by mistake")
    page.click("text=Save policy")
    errors = page.get_by_test_id("policy-filter-errors").inner_text()
    assert "no condition of age, plays, category, tag or ids" in errors
    assert not ArchivePolicy.objects.exists()
    # The Entries page refuses the same address rather than listing everything.
    page.goto("/entries/?foo=bar")
    assert "Not a filter (a typo?): 'foo'" in page.get_by_test_id("filter-errors").inner_text()
    assert page.locator("[data-testid=entries-table] tbody tr[data-entry-id]").count() == 0
    # A real condition saves.
    page.goto("/policies/new/")
    page.fill("#id_name", "Forgotten seminars")
    page.fill("#id_filter-unplayed_years", "3")
    page.click("summary:has-text('Categories and tags')")
    page.fill("#id_filter-tags", "forgotten")
    page.click("text=Save policy")
    page.wait_for_url("**/policies/")
    assert ArchivePolicy.objects.get().filter_query == "tags=forgotten&unplayed_years=3"


@pytest.mark.browser
def test_the_entries_table_fits_a_1366_pixel_window(page, sign_in, make_user, library):
    page.set_viewport_size({"width": 1366, "height": 768})
    sign_in(make_user("lena"))
    page.goto("/entries/?sort=name")
    overflow = page.evaluate(
        "() => { const box = document.querySelector('.table-responsive'); return box.scrollWidth - box.clientWidth; }"
    )
    assert overflow <= 0, f"the table is {overflow} px wider than its box"
    for heading in ("State", "All flavors", "Original"):
        right = page.locator(f"[data-testid=entries-table] th:has-text('{heading}')").bounding_box()
        assert right["x"] + right["width"] <= 1366
