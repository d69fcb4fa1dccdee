"""The Entries page's selection, kept in the session: ticks per page, select all, clear, and its limits."""

from __future__ import annotations

import pytest
from django.urls import reverse

from archive_app.mirror.filters import MAX_IDS
from archive_app.mirror.selection import SESSION_KEY, Selection
from tests.factories import make_entry

pytestmark = pytest.mark.django_db


@pytest.fixture
def entries(db):
    return [make_entry(f"1_sel{n:05d}", name=f"Seminar {n}", tags="forgotten" if n < 4 else "") for n in range(6)]


def change(client, **data):
    return client.post(reverse("entry_selection"), data, HTTP_ACCEPT="application/json")


def test_ticks_on_pages_add_and_remove_only_the_rows_shown(client, make_user, entries):
    client.force_login(make_user())
    ids = [entry.id for entry in entries]
    assert change(client, op="page", shown=ids[:3], checked=ids[:2]).json() == {"selected": 2}
    # Another page: its rows only; the first page's ticks stay.
    assert change(client, op="page", shown=ids[3:], checked=[ids[4]]).json() == {"selected": 3}
    assert change(client, op="page", shown=[ids[0]], checked=[]).json() == {"selected": 2}
    assert client.session[SESSION_KEY] == {"ids": [ids[1], ids[4]]}
    page = client.get(reverse("entry_list"), {"sort": "id"}).content.decode()
    assert f'value="{ids[1]}" form="selection-form" aria-label="Select {ids[1]} Seminar 1" checked' in page
    assert f'value="{ids[0]}" form="selection-form" aria-label="Select {ids[0]} Seminar 0">' in page


def test_select_all_keeps_the_filter_and_the_rows_unticked_since(client, make_user, entries):
    client.force_login(make_user())
    assert change(client, op="all", filter_query="tags=forgotten&page=2&sort=name").json() == {"selected": 4}
    # The filter is stored without its page and sort; the page's filter may change afterwards.
    assert client.session[SESSION_KEY] == {"filter": "tags=forgotten", "excluded": []}
    assert change(client, op="page", shown=[entries[0].id, entries[5].id], checked=[entries[5].id]).json() == {
        "selected": 3  # entries[5] is not in the filter: ticking it does not add it
    }
    selection = Selection(client.session)
    assert set(selection.queryset().values_list("id", flat=True)) == {e.id for e in entries[1:4]}
    assert change(client, op="clear").json() == {"selected": 0}
    assert SESSION_KEY not in client.session


def test_bad_changes_are_refused_and_ids_that_are_not_ids_are_dropped(client, make_user, entries):
    client.force_login(make_user())
    assert change(client, op="all", filter_query="plays_lt=-4").status_code == 400
    assert change(client, op="all", filter_query="foo=bar").status_code == 400
    assert change(client, op="delete").status_code == 400
    # Without script: a message on the page it came from.
    response = client.post(reverse("entry_selection"), {"op": "all", "filter_query": "foo=bar"}, follow=True)
    assert "The filter is not valid; correct it before selecting." in response.content.decode()
    assert change(client, op="page", shown=["x'; --", entries[0].id], checked=["x'; --", entries[0].id]).json() == {
        "selected": 1
    }
    # At most MAX_IDS ticked one by one (a request carries at most 1,000 fields: several pages' worth).
    session = {}
    many = [f"1_m{n:07d}" for n in range(MAX_IDS + 50)]
    Selection(session).update_page(shown=many, checked=many)
    assert len(session[SESSION_KEY]["ids"]) == MAX_IDS


def test_without_script_the_form_goes_back_to_the_same_page(client, make_user, entries):
    client.force_login(make_user())
    response = client.post(
        reverse("entry_selection"),
        {"op": "page", "shown": [entries[0].id], "checked": [entries[0].id], "back": "tags=forgotten&page=1"},
    )
    assert response.status_code == 302 and response["Location"] == "/entries/?tags=forgotten&page=1"
    # The page sends the ids it shows as one field, spaces between.
    client.post(
        reverse("entry_selection"),
        {"op": "page", "shown": f"{entries[0].id} {entries[1].id}", "checked": [entries[1].id]},
    )
    assert Selection(client.session).ids == [entries[1].id]


def test_a_batch_from_the_selection_over_the_cap_says_its_real_size(client, make_user, entries, settings):
    settings.ARCHIVE_MAX_BATCH_SIZE = 2
    client.force_login(make_user())
    change(client, op="all", filter_query="tags=forgotten")
    response = client.post(reverse("batch_create"), {"action": "archive", "source": "selection"}, follow=True)
    assert "The selection has 4 entries; a batch may have at most 2." in response.content.decode()
    empty = client.post(reverse("batch_create"), {"action": "archive", "source": "selection"}, follow=True)
    assert "has 4 entries" in empty.content.decode()  # the selection is kept after a refusal
    change(client, op="clear")
    empty = client.post(reverse("batch_create"), {"action": "archive", "source": "selection"}, follow=True)
    assert "No entries are selected" in empty.content.decode()
