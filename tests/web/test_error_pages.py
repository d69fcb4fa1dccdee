"""Error pages: in the site's layout, in plain words, never a debug page or a bare line of text."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.test import Client, RequestFactory
from django.urls import reverse
from django.views.defaults import server_error

from tests.factories import make_entry

pytestmark = pytest.mark.django_db


def assert_layout_page(response, status: int, *words: str) -> str:
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert 'data-testid="error-page"' in page and "navbar-brand" in page and "app.css" in page
    assert "Traceback" not in page and "URLconf" not in page and "DEBUG" not in page
    for word in words:
        assert word in page, word
    return page


def test_unknown_address_is_a_404_page_without_the_url_patterns(client, make_user):
    client.force_login(make_user("lib"))
    page = assert_layout_page(client.get("/no/such/page/"), 404, "There is nothing at this address")
    assert "entries/" not in page.split('data-testid="error-page"')[1]  # no list of the project's URLs
    assert 'data-testid="signed-in-user"' in page  # the navigation stays


def test_a_missing_entry_says_so_in_the_layout(client, make_user):
    client.force_login(make_user("lib"))
    assert_layout_page(client.get(reverse("entry_detail", args=["0_nosuchid"])), 404, "No entry with this id")


def test_a_role_that_may_not_open_a_page_gets_the_403_page(client, make_user):
    client.force_login(make_user("lib"))
    assert_layout_page(client.get(reverse("restore_list")), 403, "signed in as lib", "archive admin")
    client.force_login(make_user("nobody", role=None))
    assert_layout_page(client.get(reverse("entry_list")), 403, "signed in as nobody")


def test_a_form_without_its_csrf_token_gets_the_layout_page_and_changes_nothing(make_user):
    from archive_app.models import ExcludedCategory

    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("lib"))
    response = client.post(reverse("category_exclude"), {"category_id": "1"})
    assert_layout_page(response, 403, "could not be accepted", "nothing was done")
    assert not ExcludedCategory.objects.exists()


def test_a_tampered_batch_form_gets_the_400_page(client, make_user):
    client.force_login(make_user("lib"))
    response = client.post(reverse("batch_create"), {"action": "delete_everything", "filter_query": ""})
    assert_layout_page(response, 400, "is not a batch action", "nothing was done")


def test_a_nul_in_the_address_gets_the_400_page(client, make_user):
    client.force_login(make_user("lib"))
    assert_layout_page(client.get("/entries/", {"q": "a\x00b"}), 400, "NUL character")


def test_a_bad_host_gets_the_400_page_without_details(client):
    page = assert_layout_page(client.get("/", headers={"host": "evil.example"}), 400, "could not be understood")
    assert "evil.example" not in page


def test_the_500_page_is_in_the_layout():
    request = RequestFactory().get("/")
    assert_layout_page(server_error(request), 500, "The dashboard hit an error", "server's log")


def test_a_locked_sign_in_is_429_in_the_layout(client, make_user, settings):
    from django.core.cache import cache

    settings.SIGN_IN_MAX_FAILURES = 2
    cache.clear()
    try:
        make_user("lena")
        for attempt in range(3):
            response = client.post(reverse("login"), {"username": "lena", "password": f"wrong-{attempt}"})
        assert response.status_code == 429
        page = response.content.decode()
        assert "Too many failed sign-ins" in page and "navbar-brand" in page
    finally:
        cache.clear()


def test_exempting_an_id_kaltura_does_not_know_says_so_plainly(client, make_user, kaltura_sim):
    client.force_login(make_user("lib"))
    response = client.post(reverse("exemption_add"), {"entry_id": "0_nosuchid"})
    assert response.status_code == 302
    texts = [str(message) for message in get_messages(response.wsgi_request)]
    assert texts == ["There is no entry 0_nosuchid in Kaltura: check the id."]
    make_entry("0_mirrored")  # in the mirror, gone from Kaltura
    response = client.post(reverse("exemption_remove", args=["0_mirrored"]))
    texts = [str(message) for message in get_messages(response.wsgi_request)]
    assert texts[-1] == "There is no entry 0_mirrored in Kaltura any more."
