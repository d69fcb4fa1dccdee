"""Who may open what: every URL of the project × every role, written down as data.

A URL pattern missing from the matrix fails `test_every_url_is_in_the_matrix`: a new view must say here
who may use it. Roles: anonymous, signed in without a role ("none"), librarian, archive admin.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from archive_app import audit
from archive_app.models import ArchivePolicy, AuditEvent, Batch, Category, ExcludedCategory, LegalHold, Restore
from archive_app.roles import archive_admin_required
from tests.factories import make_entry

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "none", "librarian", "admin"]
ENTRY_ID = "1_rolesent"

# Outcomes: a status code, or where a redirect goes.
LOGIN = "→ /login/"
ADMIN_LOGIN = "→ /admin/login/"


def _row(anonymous, none, librarian, admin) -> dict:
    return dict(zip(ROLES, [anonymous, none, librarian, admin], strict=True))


EVERYONE = _row(200, 200, 200, 200)
SIGNED_IN = _row(LOGIN, 200, 200, 200)
LIBRARIANS = _row(LOGIN, 403, 200, 200)  # librarians and archive admins
ADMINS = _row(LOGIN, 403, 403, 200)  # archive admins only
POST_ONLY = _row(LOGIN, 405, 405, 405)  # GET on a view that changes something
# Django's admin: staff only; signed-in users without staff status are sent to its own sign-in page.
ADMIN_INDEX = _row(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200)
DJANGO_ADMIN = _row(LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 200)
ADMIN_READ_ONLY = _row(LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, 403)  # audit events: no add, change or delete


# URL name -> (path arguments, expected GET outcome per role). Names are the project's own, unnamespaced.
MATRIX: dict[str, tuple[list, dict]] = {
    "login": ([], EVERYONE),
    "logout": ([], POST_ONLY),  # Django's LogoutView; signing out by POST is tested below
    "home": ([], SIGNED_IN),  # without a role: a page saying so
    "entry_list": ([], LIBRARIANS),
    "entry_export": (["csv"], LIBRARIANS),
    "entry_detail": ([ENTRY_ID], LIBRARIANS),
    "entry_legal_hold": ([ENTRY_ID], POST_ONLY),
    "entry_selection": ([], POST_ONLY),
    "health": ([], LIBRARIANS),
    "preservation_report": ([], LIBRARIANS),
    "preservation_export": ([], LIBRARIANS),
    "batch_list": ([], LIBRARIANS),
    "batch_create": ([], POST_ONLY),
    "batch_detail": (["<batch>"], LIBRARIANS),
    "batch_confirm": (["<batch>"], LIBRARIANS),
    "batch_approve": (["<batch>"], POST_ONLY),
    "batch_cancel": (["<batch>"], POST_ONLY),
    "batch_retry": (["<batch>"], POST_ONLY),
    "restore_list": ([], ADMINS),
    "restore_new": ([], ADMINS),
    "restore_create": ([], POST_ONLY),
    "restore_detail": (["<restore>"], ADMINS),
    "restore_retry": (["<restore>"], POST_ONLY),
    "restore_cancel": (["<restore>"], POST_ONLY),
    "policy_list": ([], LIBRARIANS),
    "policy_create": ([], LIBRARIANS),
    "policy_edit": (["<policy>"], LIBRARIANS),
    "policy_delete": (["<policy>"], POST_ONLY),
    "exemption_list": ([], LIBRARIANS),
    "exemption_add": ([], POST_ONLY),
    "exemption_remove": ([ENTRY_ID], POST_ONLY),
    "category_exclude": ([], POST_ONLY),
    "category_include": (["<category>"], POST_ONLY),
    # The owner's keep page: no sign-in (the signed link is the credential, posted from the link's "#" part).
    "keep_entries": ([], EVERYONE),
    "audit_log": ([], LIBRARIANS),  # e-mail and IP addresses masked for librarians (test_audit_log)
    "audit_export": ([], LIBRARIANS),
    # For load balancers, without signing in; 503 here because no worker or scheduler runs (test_healthz).
    "healthz": ([], _row(503, 503, 503, 503)),
    # University sign-in: no sign-in needed; 404 here because no IdP is configured (tests/web/test_sso.py
    # runs them against real local IdPs). The assertion consumer only takes the IdP's POST.
    "saml_metadata": ([], _row(404, 404, 404, 404)),
    "saml_login": ([], _row(404, 404, 404, 404)),
    "saml_acs": ([], _row(405, 405, 405, 405)),
    "oidc_login": ([], _row(404, 404, 404, 404)),
    "oidc_callback": ([], _row(404, 404, 404, 404)),
}

# Included apps, by namespace: sample URLs of each (every view of django_rq is also checked for the guard).
NAMESPACES: dict[str, list[tuple[str, dict]]] = {
    "django_rq": [
        ("/rq/", ADMINS),
        ("/rq/queues/0/", ADMINS),
        ("/rq/queues/0/failed/", ADMINS),
        ("/rq/workers/0/", ADMINS),
        ("/rq/stats.json", ADMINS),
    ],
    "admin": [
        ("/admin/", ADMIN_INDEX),
        ("/admin/auth/user/", DJANGO_ADMIN),
        ("/admin/auth/user/<librarian>/change/", DJANGO_ADMIN),
        ("/admin/auth/user/<superuser>/change/", DJANGO_ADMIN),  # read-only for archive admins: still 200
        ("/admin/archive_app/entry/", DJANGO_ADMIN),
        ("/admin/archive_app/auditevent/", DJANGO_ADMIN),
        ("/admin/archive_app/auditevent/<event>/change/", DJANGO_ADMIN),  # shown read-only
        ("/admin/archive_app/auditevent/add/", ADMIN_READ_ONLY),
        ("/admin/archive_app/auditevent/<event>/delete/", ADMIN_READ_ONLY),
    ],
}


def _walk(patterns, namespace=None):
    """(namespace, pattern) for every URL pattern; a namespaced include is reported once as itself."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace:
                yield pattern.namespace, pattern
            else:
                yield from _walk(pattern.url_patterns, namespace)
        else:
            yield namespace, pattern


def test_every_url_is_in_the_matrix():
    names, namespaces = set(), set()
    for namespace, pattern in _walk(get_resolver().url_patterns):
        if namespace:
            namespaces.add(namespace)
        else:
            assert pattern.name, f"URL pattern {pattern.pattern} has no name: name it and add it to MATRIX"
            names.add(pattern.name)
    assert names - MATRIX.keys() == set(), "views missing from tests/web/test_roles.py MATRIX"
    assert MATRIX.keys() - names == set(), "MATRIX names URLs that no longer exist"
    assert namespaces == NAMESPACES.keys()


def test_every_rq_dashboard_view_is_for_archive_admins_only():
    rq = next(resolver for namespace, resolver in _walk(get_resolver().url_patterns) if namespace == "django_rq")
    views = [pattern for pattern in rq.url_patterns if isinstance(pattern, URLPattern)]
    assert len(views) >= 20
    unguarded = [str(view.pattern) for view in views if not getattr(view.callback, "archive_admin_only", False)]
    assert unguarded == []
    assert archive_admin_required(lambda request: None).archive_admin_only


@pytest.fixture
def world(make_user, django_user_model):
    users = {
        "none": make_user("nobody", role=None),
        "librarian": make_user("lib", role="librarian"),
        "admin": make_user("boss", role="admin"),
    }
    superuser = django_user_model.objects.create_superuser("root", password="x-long-password")
    make_entry(ENTRY_ID)
    batch = Batch.objects.create(action=Batch.Action.ARCHIVE, created_by=users["librarian"])
    event = audit.record("preview_archive", user=users["librarian"], entry_id=ENTRY_ID, batch=batch, dry_run=True)
    restore = Restore.objects.create(
        entry_id=ENTRY_ID, source=Restore.Source.MANUAL, requested_by=users["admin"], status=Restore.Status.FAILED
    )
    policy = ArchivePolicy.objects.create(
        name="old lectures", filter_query="unplayed_years=3", next_run_at=timezone.now(), created_by=users["librarian"]
    )
    category = Category.objects.create(id=77, name="Lectures", full_name="Lectures", full_ids="77")
    placeholders = {
        "<restore>": str(restore.pk),
        "<policy>": str(policy.pk),
        "<category>": str(category.pk),
        "<batch>": str(batch.pk),
        "<event>": str(event.pk),
        "<librarian>": str(users["librarian"].pk),
        "<superuser>": str(superuser.pk),
    }
    return users, placeholders


def _outcome(response):
    if response.status_code == 302:
        target = urlsplit(response["Location"]).path
        return f"→ {target}"
    return response.status_code


def _fill(text: str, placeholders: dict) -> str:
    for key, value in placeholders.items():
        text = text.replace(key, value)
    return text


@pytest.mark.parametrize("role", ROLES)
def test_role_matrix(client, world, role, kaltura_sim, s3, rq_queue):
    """Every URL for one role; all differences are listed at once. (The simulator and S3 make the
    Health page answer 200: it reads live state; rq_queue empties Redis, so /healthz sees no worker.)"""
    users, placeholders = world
    if role != "anonymous":
        client.force_login(users[role])
    expected, actual = {}, {}
    for name, (args, row) in MATRIX.items():
        url = reverse(name, args=[_fill(str(arg), placeholders) for arg in args])
        expected[url], actual[url] = row[role], _outcome(client.get(url))
    for sample, row in (sample for samples in NAMESPACES.values() for sample in samples):
        url = _fill(sample, placeholders)
        expected[url], actual[url] = row[role], _outcome(client.get(url))
    assert {url: got for url, got in actual.items() if got != expected[url]} == {}


# --- The views that change something, by POST -------------------------------------------


POST_EXPECTED = _row(LOGIN, 403, "allowed", "allowed")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("view", ["batch_approve", "batch_cancel", "batch_retry"])
def test_batch_actions_by_role(client, world, role, view):
    users, placeholders = world
    batch = Batch.objects.get()
    if role != "anonymous":
        client.force_login(users[role])
    events_before = AuditEvent.objects.count()
    response = client.post(reverse(view, args=[batch.pk]), {"confirmed": "yes"} if view == "batch_approve" else {})
    batch.refresh_from_db()
    if POST_EXPECTED[role] == "allowed":
        assert _outcome(response) == f"→ {reverse('batch_detail', args=[batch.pk])}"
        if view != "batch_retry":  # nothing failed, so a retry has nothing to do and records nothing
            event = AuditEvent.objects.order_by("-id").first()
            assert (event.action, event.username) == (view, users[role].username)
    else:
        assert _outcome(response) == POST_EXPECTED[role]
        assert batch.status == Batch.Status.DRAFT and batch.approved_by is None
        assert AuditEvent.objects.count() == events_before


@pytest.mark.parametrize("role", ROLES)
def test_batch_create_by_role(client, world, role):
    users, _ = world
    if role != "anonymous":
        client.force_login(users[role])
    count = Batch.objects.count()
    # A selection of nothing: the allowed roles get past the gate and are told it is empty.
    response = client.post(reverse("batch_create"), {"action": "archive", "filter_query": "ids=1_nosuchent"})
    if POST_EXPECTED[role] == "allowed":
        assert _outcome(response) == "→ /entries/"
    else:
        assert _outcome(response) == POST_EXPECTED[role]
    assert Batch.objects.count() == count


# The other views that change something: who gets past the gate. Each POST is one a permitted user could make;
# what it does is tested with its feature (test_restore_pages, test_policies, test_notices).
GATED_POSTS = {
    "entry_legal_hold": ([ENTRY_ID], {"action": "place", "reason": "subpoena 42"}, ADMINS),
    "restore_create": ([], {"entry_id": ENTRY_ID, "tier": "Standard"}, ADMINS),
    "restore_retry": (["<restore>"], {}, ADMINS),
    "restore_cancel": (["<restore>"], {}, ADMINS),
    "policy_create": ([], {"name": "x"}, LIBRARIANS),
    "policy_edit": (["<policy>"], {"name": "x"}, LIBRARIANS),
    "policy_delete": (["<policy>"], {}, LIBRARIANS),
    "exemption_add": ([], {"entry_id": "not an id"}, LIBRARIANS),
    "exemption_remove": ([ENTRY_ID], {}, LIBRARIANS),
    "category_exclude": ([], {"category_id": "<category>"}, LIBRARIANS),
    "category_include": (["<category>"], {}, LIBRARIANS),
}


def _gated_state():
    return (
        list(Restore.objects.values_list("id", "status")),
        list(ArchivePolicy.objects.values_list("id", "name")),
        list(ExcludedCategory.objects.values_list("category_id", flat=True)),
        list(LegalHold.objects.values_list("entry_id", flat=True)),
        AuditEvent.objects.count(),
    )


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("view", sorted(GATED_POSTS))
def test_other_posts_by_role(client, world, role, view):
    users, placeholders = world
    args, data, row = GATED_POSTS[view]
    if role != "anonymous":
        client.force_login(users[role])
    before = _gated_state()
    url = reverse(view, args=[_fill(str(arg), placeholders) for arg in args])
    response = client.post(url, {key: _fill(value, placeholders) for key, value in data.items()})
    if row[role] == 200:
        assert _outcome(response) not in (403, LOGIN, 405)
    else:
        assert _outcome(response) == row[role]
        assert _gated_state() == before


@pytest.mark.parametrize("role", ["none", "librarian", "admin"])
def test_sign_out_by_post(client, world, role):
    users, _ = world
    client.force_login(users[role])
    assert _outcome(client.post(reverse("logout"))) == LOGIN
    assert _outcome(client.get(reverse("home"))) == LOGIN


def test_archive_admins_cannot_change_or_delete_audit_events_in_the_admin(client, world):
    users, placeholders = world
    client.force_login(users["admin"])
    event = AuditEvent.objects.get()
    change = f"/admin/archive_app/auditevent/{event.pk}/change/"
    page = client.get(change).content.decode()
    assert "preview_archive" in page and 'name="_save"' not in page
    assert client.post(change, {"action": "changed", "outcome": "ok"}).status_code == 403
    assert client.post(f"/admin/archive_app/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    listing = "/admin/archive_app/auditevent/"
    response = client.post(listing, {"action": "delete_selected", "_selected_action": [event.pk]})
    assert response.status_code in (200, 302)
    assert AuditEvent.objects.get().action == "preview_archive"


def test_archive_admins_manage_users_but_not_superusers(client, world, django_user_model):
    users, placeholders = world
    client.force_login(users["admin"])
    superuser = django_user_model.objects.get(username="root")
    response = client.post(
        f"/admin/auth/user/{superuser.pk}/change/", {"username": "root", "is_active": ""}, follow=False
    )
    assert response.status_code == 403
    superuser.refresh_from_db()
    assert superuser.is_active

    # Making a librarian an archive admin in the admin gives staff status with the role.
    from django.contrib.auth.models import Group

    admins = Group.objects.get(name="Archive admins")
    librarian = users["librarian"]
    form = client.get(f"/admin/auth/user/{librarian.pk}/change/").content.decode()
    assert 'name="is_superuser"' not in form and 'name="user_permissions"' not in form
    response = client.post(
        f"/admin/auth/user/{librarian.pk}/change/",
        {
            "username": "lib",
            "is_active": "on",
            "groups": [admins.pk],
            "last_login_0": "",
            "last_login_1": "",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "is_superuser": "on",  # not on the form for them: ignored
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    librarian.refresh_from_db()
    assert librarian.is_staff and not librarian.is_superuser
    client.force_login(librarian)
    assert client.get("/admin/").status_code == 200
    assert client.get("/rq/").status_code == 200


def _database_rows() -> dict:
    """Every row of every table, except sessions (signing in writes one) and dry-run audit events (a page
    that previews, such as Restore a video, records its dry run: rule 4)."""
    from django.apps import apps
    from django.contrib.sessions.models import Session

    rows = {}
    for model in apps.get_models():
        if model is Session or not model._meta.managed:  # django-rq's dashboard "model" has no table
            continue
        queryset = model.objects.filter(dry_run=False) if model is AuditEvent else model.objects.all()
        rows[model._meta.label] = list(queryset.order_by("pk").values())
    return rows


@pytest.mark.parametrize("role", ["librarian", "admin"])
def test_no_page_writes_on_get(client, world, role, kaltura_sim, s3, rq_queue):
    users, placeholders = world
    client.force_login(users[role])
    Batch.objects.update(status=Batch.Status.RUNNING)
    batch = Batch.objects.get()
    batch.items.create(entry_id=ENTRY_ID, status="running", heartbeat_at=timezone.now() - timezone.timedelta(days=2))
    before = _database_rows()
    for name, (args, _) in MATRIX.items():
        client.get(reverse(name, args=[_fill(str(arg), placeholders) for arg in args]))
        client.get(reverse(name, args=[_fill(str(arg), placeholders) for arg in args]), HTTP_HX_REQUEST="true")
    for sample, _ in (sample for samples in NAMESPACES.values() for sample in samples):
        client.get(_fill(sample, placeholders))
    assert _database_rows() == before


# --- Personal data in the audit log, by role ---------------------------------------------

OWNER_EMAIL, CLIENT_IP = "owner.person@example.edu", "203.0.113.45"
# What each role gets from the audit log and its export: refused, addresses masked, or in full.
AUDIT_PERSONAL_DATA = _row(LOGIN, 403, "masked", "full")


@pytest.mark.parametrize("role", ROLES)
def test_audit_log_personal_data_by_role(client, world, role):
    users, _ = world
    audit.record("owner_notice", dry_run=False, message=f"sent to {OWNER_EMAIL}", details={"email": OWNER_EMAIL})
    audit.record("sign_in_locked", username=OWNER_EMAIL, dry_run=False, details={"address": CLIENT_IP})
    if role != "anonymous":
        client.force_login(users[role])
    page, export = client.get(reverse("audit_log")), client.get(reverse("audit_export"))
    expected = AUDIT_PERSONAL_DATA[role]
    if expected in (LOGIN, 403):
        assert (_outcome(page), _outcome(export)) == (expected, expected)
        return
    texts = [page.content.decode(), b"".join(export.streaming_content).decode()]
    for text in texts:
        if expected == "full":
            assert OWNER_EMAIL in text and CLIENT_IP in text
        else:
            assert OWNER_EMAIL not in text and CLIENT_IP not in text
            assert "o***@example.edu" in text and "203.0.*.*" in text
