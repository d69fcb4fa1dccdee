"""WCAG 2.1 AA: axe-core (from axe-playwright-python) in Chromium on every page of the role matrix, opened by the
first role that may open it, and on the error pages; the keyboard reaches every control, visibly.

Serious and critical violations fail; moderate and minor ones are printed, to be fixed as they are met.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.urls import reverse
from django.utils import timezone

from archive_app.models import Batch, BatchItem, BatchNotice, OwnerNotice
from archive_app.scheduling import notices
from tests.web.test_roles import ENTRY_ID, MATRIX, NAMESPACES, ROLES, _fill, world  # noqa: F401 (world is a fixture)
from tests.web.test_screenshots import library, main_pages  # noqa: F401 (library is a fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}}
FAILING_IMPACTS = {"serious", "critical"}


def pages_by_role(placeholders: dict) -> dict[str, list[str]]:
    """Role -> the URLs it is the first (least privileged) role to open with a 200."""
    rows = [
        (reverse(name, args=[_fill(str(arg), placeholders) for arg in args]), row)
        for name, (args, row) in MATRIX.items()
    ]
    rows += [(_fill(url, placeholders), row) for samples in NAMESPACES.values() for url, row in samples]
    by_role: dict[str, list[str]] = {role: [] for role in ROLES}
    for url, row in rows:
        role = next((role for role in ROLES if row[role] == 200), None)
        if role is not None:
            by_role[role].append(url)
    return by_role


def keep_link(librarian) -> str:
    """An owner's keep link for a batch in its notice period (as notices.send_notices leaves it)."""
    batch = Batch.objects.create(action=Batch.Action.ARCHIVE, created_by=librarian, status=Batch.Status.APPROVED)
    BatchItem.objects.create(batch=batch, entry_id=ENTRY_ID, planned_steps=["copy"])
    BatchNotice.objects.create(batch=batch, notice_days=14, runs_after=timezone.now() + timedelta(days=14))
    OwnerNotice.objects.create(
        batch=batch, owner_id="alice", email="alice@example.edu", entry_ids=[ENTRY_ID], status=OwnerNotice.Status.SENT
    )
    token = notices.keep_token(batch.pk, "alice", timezone.now() + timedelta(days=14))
    return f"{reverse('keep_entries')}#{token}"  # the page posts the token (static/js/keep.js)


def violations(page, url: str) -> list[str]:
    results = Axe().run(page, options=WCAG_AA).response
    found = []
    for violation in results["violations"]:
        targets = ", ".join(str(node["target"]) for node in violation["nodes"][:3])
        line = f"{url}: {violation['id']} ({violation['impact']}) {violation['help']} at {targets}"
        if violation["impact"] in FAILING_IMPACTS:
            found.append(line)
        else:
            print("note:", line)
    return found


def open_as(browser, live_server, role: str, users: dict):
    # Reduced motion: Bootstrap then draws focus rings at once, not after a transition.
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1366, "height": 768}, reduced_motion="reduce"
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    if role != "anonymous":
        user = users[role]
        page.goto("/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", user.raw_password)
        page.click("button[type=submit]")
        page.wait_for_selector("[data-testid=signed-in-user]")
    return context, page


@pytest.mark.parametrize("role", ROLES)
def test_every_page_has_no_serious_accessibility_violation(
    browser,
    live_server,
    world,  # noqa: F811
    role,
    kaltura_sim,
    s3,
    rq_queue,
):
    users, placeholders = world
    urls = pages_by_role(placeholders)[role]
    if role == "anonymous":  # the owner's keep page, and its refusal of a link that is not signed
        urls += [keep_link(users["librarian"]), reverse("keep_entries") + "#not-a-signed-link"]
    if role == "none":
        urls += [reverse("entry_list")]  # the 403 page
    urls += ["/no/such/page/"]  # the 404 page, signed in or not
    context, page = open_as(browser, live_server, role, users)
    found = []
    try:
        for url in urls:
            if "/keep/#" in url:  # the keep page's script posts the token: wait for the page it gets back
                page.goto(url)
                page.wait_for_selector("input[name=keep], [data-testid=keep-refused]")
                if "not-a-signed" not in url:
                    assert page.locator("input[name=keep]").count() == 1, page.content()[:2000]  # the real page
                found += violations(page, url)
                continue
            if not page.request.get(url).headers.get("content-type", "").startswith("text/html"):
                continue  # exports, JSON: no page to read
            page.goto(url)
            found += violations(page, url)
    finally:
        context.close()
    assert found == [], "\n".join(found)


def test_the_main_pages_full_of_content_have_no_serious_violation(browser, live_server, library):  # noqa: F811
    # Batches with items, placeholders, restores, a policy, exemptions: what the empty world above lacks.
    admin, replaced, placeholder = library
    context, page = open_as(browser, live_server, "admin", {"admin": admin})
    found = []
    try:
        for _, url in main_pages(replaced, placeholder):
            page.goto(url)
            found += violations(page, url)
    finally:
        context.close()
    assert found == [], "\n".join(found)


def test_the_keyboard_reaches_the_skip_link_first_and_every_control_shows_focus(
    browser,
    live_server,
    world,  # noqa: F811
    kaltura_sim,
    s3,
    rq_queue,
):
    users, _ = world
    context, page = open_as(browser, live_server, "librarian", users)
    try:
        page.goto(reverse("entry_list"))
        page.keyboard.press("Tab")
        skip = page.evaluate("document.activeElement.outerHTML")
        assert "Skip to the content" in skip and page.locator("a.skip-link").is_visible()
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "content"
        # Tab through the page: every stop is a control, and shows that it has the focus.
        unfocused = []
        for _ in range(40):
            page.keyboard.press("Tab")
            stop = page.evaluate(
                """() => { const e = document.activeElement; const s = getComputedStyle(e);
                   return {tag: e.tagName, html: e.outerHTML.slice(0, 120),
                           shown: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0
                                  || s.boxShadow !== 'none'}; }"""
            )
            if stop["tag"] == "BODY":
                break
            if not stop["shown"]:
                unfocused.append(stop["html"])
        assert unfocused == []
    finally:
        context.close()


def test_the_navigation_says_which_page_is_open(client, world):  # noqa: F811
    users, _ = world
    client.force_login(users["librarian"])
    html = client.get(reverse("batch_list")).content.decode()
    assert html.count('aria-current="page"') == 1
    assert 'class="nav-link active" aria-current="page" href="/batches/"' in html
