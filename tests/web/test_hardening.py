"""Hardening: CSRF and POST-only state changes, `check --deploy`, the CSP, sign-in throttling, secrets."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, include, path, reverse
from rq import SimpleWorker
from rq.job import Job

from archive_app.lib.kaltura import Kaltura, KalturaError
from archive_app.lib.redaction import redact
from archive_app.lib.storage import ArchiveStore, StorageError
from archive_app.mirror import sync
from archive_app.models import AuditEvent, Batch, BatchItem, Entry
from tests.conftest import TEST_BUCKET
from tests.test_foundation import run_manage

ROOT = Path(__file__).resolve().parents[2]
BATCH = "<batch id>"

# Every URL of the project with the methods that it answers (the admin and django-rq protect their own).
# A state change is POST only. test_every_url_is_listed fails for a URL missing here: add one line.
ROUTES = {
    "home": ({"GET"}, {}),
    "entry_list": ({"GET"}, {}),
    "entry_export": ({"GET"}, {"fmt": "csv"}),
    "entry_detail": ({"GET"}, {"entry_id": "1_abcd1234"}),
    "entry_legal_hold": ({"POST"}, {"entry_id": "1_abcd1234"}),
    "entry_selection": ({"POST"}, {}),
    "health": ({"GET"}, {}),
    "preservation_report": ({"GET"}, {}),
    "preservation_export": ({"GET"}, {}),
    "batch_list": ({"GET"}, {}),
    "batch_create": ({"POST"}, {}),
    "batch_detail": ({"GET"}, {"batch_id": BATCH}),
    "batch_confirm": ({"GET"}, {"batch_id": BATCH}),
    "batch_approve": ({"POST"}, {"batch_id": BATCH}),
    "batch_cancel": ({"POST"}, {"batch_id": BATCH}),
    "batch_retry": ({"POST"}, {"batch_id": BATCH}),
    "restore_list": ({"GET"}, {}),
    "restore_new": ({"GET"}, {}),
    "restore_create": ({"POST"}, {}),
    "restore_detail": ({"GET"}, {"restore_id": 1}),
    "restore_retry": ({"POST"}, {"restore_id": 1}),
    "restore_cancel": ({"POST"}, {"restore_id": 1}),
    "policy_list": ({"GET"}, {}),
    "policy_create": ({"GET", "POST"}, {}),
    "policy_edit": ({"GET", "POST"}, {"policy_id": 1}),
    "policy_delete": ({"POST"}, {"policy_id": 1}),
    "exemption_list": ({"GET"}, {}),
    "exemption_add": ({"POST"}, {}),
    "exemption_remove": ({"POST"}, {"entry_id": "1_abcd1234"}),
    "category_exclude": ({"POST"}, {}),
    "category_include": ({"POST"}, {"category_id": 1}),
    "keep_entries": ({"GET", "POST"}, {}),
    "audit_log": ({"GET"}, {}),
    "audit_export": ({"GET"}, {}),
    "healthz": ({"GET"}, {}),
    "login": ({"GET", "POST"}, {}),
    "logout": ({"POST"}, {}),
    "saml_metadata": ({"GET"}, {}),
    "saml_login": ({"GET"}, {}),
    "saml_acs": ({"POST"}, {}),
    "oidc_login": ({"GET"}, {}),
    "oidc_callback": ({"GET"}, {}),
}
# POSTs that cannot carry our CSRF token: the IdP's page posts the signed assertion, whose signature and
# InResponseTo (a request this browser started) are the proof instead (tests/web/test_sso.py refuses forgeries).
CSRF_EXEMPT = {"saml_acs"}
# What a POST to each sends: valid data, so only the missing CSRF token can refuse it.
POST_DATA = {
    "batch_create": {"action": "archive", "filter_query": ""},
    "entry_selection": {"op": "clear"},
    "batch_approve": {"confirmed": "yes"},
    "login": {"username": "admin", "password": "correct-horse-battery"},
}


def project_url_names(patterns=None) -> set[str]:
    names = set()
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            module = getattr(pattern.urlconf_module, "__name__", "")
            if pattern.namespace in ("admin", "django_rq") or module.startswith("django_rq"):
                continue
            names |= project_url_names(pattern.url_patterns)
        elif isinstance(pattern, URLPattern) and pattern.name:
            names.add(pattern.name)
    return names


@pytest.fixture
def admin(make_user):
    return make_user("admin", role="admin")


@pytest.fixture
def draft_batch(admin, db):
    batch = Batch.objects.create(action=Batch.Action.ARCHIVE, created_by=admin)
    BatchItem.objects.create(batch=batch, entry_id="1_abcd1234", planned_steps=["copy"])
    return batch


def url_of(name: str, batch: Batch) -> str:
    kwargs = {key: batch.pk if value == BATCH else value for key, value in ROUTES[name][1].items()}
    return reverse(name, kwargs=kwargs)


def database_state():
    return (
        Entry.objects.count(),
        list(Batch.objects.values_list("id", "status", "approved_by_id")),
        list(BatchItem.objects.values_list("id", "status")),
        AuditEvent.objects.count(),
    )


def test_every_url_is_listed():
    assert project_url_names() == set(ROUTES)


@pytest.mark.parametrize(
    "name", sorted(name for name, (methods, _) in ROUTES.items() if "POST" in methods and name not in CSRF_EXEMPT)
)
def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(name, admin, draft_batch):
    client = Client(enforce_csrf_checks=True)
    if name != "login":
        client.force_login(admin)
    before = database_state()
    response = client.post(url_of(name, draft_batch), POST_DATA.get(name, {}))
    assert response.status_code == 403
    assert database_state() == before
    assert ("_auth_user_id" in client.session) == (name != "login")  # neither signed in nor out


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_each_url_answers_only_its_methods(name, client, admin, draft_batch):
    client.force_login(admin)
    allowed = ROUTES[name][0]
    url = url_of(name, draft_batch)
    before = database_state()
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        if method not in allowed:
            assert getattr(client, method.lower())(url).status_code == 405, method
    assert database_state() == before


# --- check --deploy -------------------------------------------------------------------

PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "archive.example.edu",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://archive.example.edu",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
    "KALTURA_PARTNERID": "12345",
    "KALTURA_SECRET": secrets.token_hex(16),
    "KALTURA_USERID": "kaltura-archive",
    "AWS_BUCKET": "archive-bucket",
    # Nothing listens there: the bucket's versioning cannot be read (an Info, not a warning), and no test
    # ever reaches AWS itself.
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_MAX_ATTEMPTS": "1",
    "ARCHIVE_SITE_URL": "https://archive.example.edu",
    "EMAIL_HOST": "smtp.example.edu",
}


def test_deploy_check_is_clean_with_production_settings(moto_server, s3):
    s3.put_bucket_versioning(Bucket=TEST_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    env = {**PRODUCTION_ENV, "AWS_ENDPOINT_URL": moto_server.url, "AWS_BUCKET": TEST_BUCKET}
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stderr
    # Only what moto cannot offer is said (no Object Lock, delete rights unrestricted): information, not warnings.
    output = result.stdout + result.stderr
    assert "WARNINGS:" not in output and "ERRORS:" not in output
    assert output.count("archive.I007") == 2 and "no Object Lock" in output


def test_deploy_check_reports_an_unversioned_bucket(moto_server, s3):
    env = {**PRODUCTION_ENV, "AWS_ENDPOINT_URL": moto_server.url, "AWS_BUCKET": TEST_BUCKET}
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 1
    assert "archive.W005" in result.stderr and f"{TEST_BUCKET} has no versioning" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "warning"),
    [
        ("DJANGO_SECURE_HSTS_SECONDS", "0", "security.W004"),
        ("DJANGO_SECURE_SSL_REDIRECT", "0", "security.W008"),
        ("DJANGO_SECURE_COOKIES", "0", "security.W012"),
    ],
)
def test_deploy_check_names_each_weakened_setting(variable, value, warning):
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env={**PRODUCTION_ENV, variable: value})
    assert result.returncode == 1
    assert warning in result.stderr


# --- Content-Security-Policy ----------------------------------------------------------------


def test_every_response_carries_a_csp_without_inline_script(client, admin, settings):
    settings.KALTURA_SERVICE_URL = "https://www.kaltura.com"
    settings.CSP_IMG_SOURCES = ["https://thumbs.example.edu"]
    policies = [client.get(reverse("login"))["Content-Security-Policy"]]
    client.force_login(admin)
    policies += [client.get(reverse(name))["Content-Security-Policy"] for name in ("home", "entry_list")]
    for policy in policies:
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["script-src"] == "'self'"
        assert directives["style-src"] == "'self'"
        assert "unsafe" not in policy
        assert directives["img-src"].split() == [
            "'self'",
            "data:",
            "https://www.kaltura.com",
            "https://*.kaltura.com",
            "https://thumbs.example.edu",
        ]


# An inline script, a handler attribute or a style attribute: all refused by the CSP.
INLINE_CODE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+\s*=|\sstyle\s*=", re.IGNORECASE)


@pytest.mark.parametrize("template", sorted(p.relative_to(ROOT) for p in (ROOT / "templates").rglob("*.html")), ids=str)
def test_templates_have_no_inline_script_or_style(template):
    assert not INLINE_CODE.findall((ROOT / template).read_text())


@pytest.fixture
def old_entries(kaltura_sim, s3, rq_queue, settings):
    settings.KALTURA_RETRY_DELAYS = (0.01,)
    settings.ARCHIVE_REPLACEMENT_WAIT_SECONDS = 20
    old = int((datetime.now(tz=UTC) - timedelta(days=6 * 365)).timestamp())
    ids = [kaltura_sim.state.add_entry(name=f"Old seminar {n}", createdAt=old, tags="forgotten") for n in range(2)]
    sync.sync_full(Kaltura.from_settings())
    return ids


CSP_LISTENER = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_pages_load_without_csp_violations_and_htmx_progress_works(page, sign_in, make_user, old_entries, rq_queue):
    console = []
    page.on("console", lambda message: console.append(message.text))
    page.add_init_script(CSP_LISTENER)
    sign_in(make_user("lena"))

    def no_violations(where: str) -> None:
        reported = page.evaluate("window.cspViolations")
        refused = [text for text in console if "Content Security Policy" in text]
        assert not reported and not refused, (where, reported, refused)

    for url in ("/", "/entries/?tags=forgotten", f"/entries/{old_entries[0]}/", "/batches/"):
        page.goto(url)
        page.wait_for_load_state("load")
        no_violations(url)
    assert page.evaluate("typeof htmx") == "object"
    assert page.evaluate("htmx.config.includeIndicatorStyles") is False

    page.goto(f"/entries/{old_entries[0]}/")
    thumbnail = page.locator("img.entry-thumbnail")
    assert thumbnail.count() == 1
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle())

    page.goto("/entries/?tags=forgotten")
    page.select_option("select[name=action]", "archive")
    page.click("[data-testid=preview-filter]")
    page.click("text=Approve and run 2 entries")
    page.click("[data-testid=confirm-approve]")
    page.wait_for_selector("[data-testid=batch-progress][data-status=running]")
    SimpleWorker([rq_queue], connection=rq_queue.connection).work(burst=True)
    # htmx polls the progress partial and swaps it in; app.js sizes the bar from data-percent.
    page.wait_for_selector("[data-testid=batch-progress][data-status=done]", timeout=20_000)
    assert page.locator(".progress-bar").evaluate("(bar) => bar.style.width") == "100%"
    no_violations("batch page after htmx swaps")


@pytest.mark.browser
def test_the_admin_works_under_the_csp(page, sign_in, make_user):
    console = []
    page.on("console", lambda message: console.append(message.text))
    page.add_init_script(CSP_LISTENER)
    sign_in(make_user("boss", role="admin"))
    for url in ("/admin/", "/admin/auth/user/", "/admin/archive_app/entry/"):
        page.goto(url)
        page.wait_for_load_state("load")
        assert page.evaluate("window.cspViolations") == [], url
    assert not [text for text in console if "Content Security Policy" in text]


@pytest.mark.browser
def test_a_filter_too_long_for_a_url_is_refused_in_the_page_and_the_ids_are_kept(page, sign_in, make_user):
    sign_in(make_user("lena"))
    page.goto("/entries/")
    ids = " ".join(f"1_{n:08d}" for n in range(2000))
    page.locator("details:has(textarea[name=ids])").evaluate("(details) => details.open = true")
    page.fill("textarea[name=ids]", ids)
    page.locator("form.filter-form button[type=submit]").first.click()
    alert = page.get_by_test_id("filter-too-long")
    assert "too long for a web address" in alert.inner_text()
    assert page.url.endswith("/entries/")  # not sent
    assert page.input_value("textarea[name=ids]") == ids


# --- Sign-in throttling ------------------------------------------------------------------------


@pytest.fixture
def throttle(settings, db):
    settings.SIGN_IN_MAX_FAILURES = 3
    settings.SIGN_IN_MAX_FAILURES_PER_IP = 5
    settings.SIGN_IN_LOCKOUT_SECONDS = 60
    cache.clear()
    yield settings
    cache.clear()  # the counts live in the shared Redis: leave none for other tests


def sign_in_post(client, username, password, **headers):
    return client.post(reverse("login"), {"username": username, "password": password}, headers=headers)


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_failures_lock_the_username_even_for_the_right_password(client, make_user, throttle, caplog):
    user = make_user("lena")
    for attempt in range(3):
        response = sign_in_post(client, "lena", f"wrong-password-{attempt}")
        assert response.status_code == 200 and "didn&#x27;t match" in response.content.decode()
    response = sign_in_post(client, "lena", user.raw_password)
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()
    assert not signed_in(client)
    event = AuditEvent.objects.get(action="sign_in_locked")
    assert event.username == "lena" and event.outcome == AuditEvent.Outcome.REFUSED
    stored = json.dumps([event.message, event.details]) + caplog.text
    assert "wrong-password" not in stored and user.raw_password not in stored
    assert "sign-in refused" in caplog.text


def test_a_locked_username_does_not_lock_others_until_the_address_limit(client, make_user, throttle):
    make_user("lena")
    other = make_user("otto")
    for _ in range(3):
        sign_in_post(client, "lena", "wrong")
    assert sign_in_post(client, "otto", other.raw_password).status_code == 302
    client.logout()
    sign_in_post(client, "nobody-1", "wrong")
    sign_in_post(client, "nobody-2", "wrong")  # five failures from this address
    assert sign_in_post(client, "otto", other.raw_password).status_code == 429
    assert AuditEvent.objects.filter(action="sign_in_locked", details__locked="address").count() == 1


def test_the_lock_ends_when_the_window_passes(client, make_user, throttle):
    throttle.SIGN_IN_LOCKOUT_SECONDS = 1
    user = make_user("lena")
    for _ in range(3):
        sign_in_post(client, "lena", "wrong")
    assert sign_in_post(client, "lena", user.raw_password).status_code == 429
    time.sleep(1.1)
    assert sign_in_post(client, "lena", user.raw_password).status_code == 302


def test_a_successful_sign_in_resets_the_username_count(client, make_user, throttle):
    user = make_user("lena")
    for _ in range(2):
        sign_in_post(client, "lena", "wrong")
    assert sign_in_post(client, "lena", user.raw_password).status_code == 302
    client.logout()
    for _ in range(2):
        sign_in_post(client, "LENA", "wrong")  # the count ignores case, as sign-in names are typed
    assert sign_in_post(client, "lena", user.raw_password).status_code == 302


def test_behind_a_proxy_addresses_come_from_its_header(client, make_user, throttle):
    throttle.CLIENT_IP_HEADER = "X-Forwarded-For"
    user = make_user("lena")
    for n in range(5):
        # The client's own entries come first; only the proxy's last one counts.
        sign_in_post(client, f"nobody-{n}", "wrong", x_forwarded_for=f"10.9.9.{n}, 10.0.0.1")
    assert sign_in_post(client, "lena", user.raw_password, x_forwarded_for="10.0.0.1").status_code == 429
    assert sign_in_post(client, "lena", user.raw_password, x_forwarded_for="10.0.0.2").status_code == 302


def test_the_admin_sign_in_is_throttled_too(client, make_user, throttle):
    admin = make_user("boss", role="admin")
    for _ in range(3):
        client.post("/admin/login/", {"username": "boss", "password": "wrong"})
    response = client.post("/admin/login/", {"username": "boss", "password": admin.raw_password})
    assert "Too many failed sign-ins" in response.content.decode()
    assert not signed_in(client)


# --- Secrets ---------------------------------------------------------------------------------

AWS_SECRET = "aws-secret-key-for-the-tests-" + secrets.token_hex(8)


def kaltura_session(kaltura: Kaltura) -> str:
    kaltura._start_session()
    return kaltura._client.getKs()


def test_kaltura_errors_never_carry_the_session_or_the_secret(kaltura_sim, settings):
    kaltura = Kaltura.from_settings()
    ks = kaltura_session(kaltura)
    assert ks.startswith("djJ8")
    entry_id = next(iter(kaltura_sim.state.entries))
    kaltura_sim.state.inject_fault(
        "kaltura_error",
        service="media",
        action="get",
        code="SERVICE_FORBIDDEN",
        message=f"ks {ks} of partner secret {settings.KALTURA_SECRET} refused",
    )
    with pytest.raises(KalturaError) as raised:
        kaltura.get_entry(entry_id)
    text = str(raised.value)
    assert ks not in text and settings.KALTURA_SECRET not in text
    assert "<ks>" in text and "<secret>" in text


def test_s3_errors_never_carry_the_keys(s3, settings, caplog):
    settings.AWS_SECRET_ACCESS_KEY = AWS_SECRET
    settings.AWS_ACCESS_KEY_ID = "AKIATESTACCESSKEY123"
    settings.AWS_BUCKET = "no-such-bucket"
    with pytest.raises(StorageError) as raised:
        ArchiveStore.from_settings().open_stream("1_abcd1234")
    assert raised.value.code == "NoSuchBucket"
    assert AWS_SECRET not in str(raised.value) + caplog.text
    # Whatever text reaches a StorageError (a botocore message, a download URL) loses the keys.
    error = StorageError(f"signing with {settings.AWS_ACCESS_KEY_ID}/{AWS_SECRET} failed")
    assert AWS_SECRET not in str(error) and settings.AWS_ACCESS_KEY_ID not in str(error)


def boom(request):
    raise RuntimeError(f"failed with {django_settings.KALTURA_SECRET} and {django_settings.AWS_SECRET_ACCESS_KEY}")


urlpatterns = [path("boom/", login_not_required(boom)), path("", include("kaltura_archive.urls"))]


def test_a_500_page_and_its_log_show_no_secret(client, settings, caplog):
    settings.ROOT_URLCONF = __name__
    settings.DEBUG = False
    settings.KALTURA_SECRET = "kaltura-admin-secret-" + secrets.token_hex(8)
    settings.AWS_SECRET_ACCESS_KEY = AWS_SECRET
    client.raise_request_exception = False
    response = client.get("/boom/")
    assert response.status_code == 500
    page = response.content.decode()
    assert settings.KALTURA_SECRET not in page and AWS_SECRET not in page
    assert "Internal Server Error: /boom/" in caplog.text
    assert "RuntimeError: failed with <secret> and <secret>" in caplog.text
    assert settings.KALTURA_SECRET not in caplog.text and AWS_SECRET not in caplog.text


def session_forms(v2: str, partner_id: int, secret: str) -> dict[str, str]:
    """Every way a Kaltura session can reach a message: v1 (made by the official client's own
    generateSession) and v2, bare, URL-encoded (once and twice), in a URL path and in a query."""
    from KalturaClient import KalturaClient

    v1 = KalturaClient.generateSession(secret, "owner@example.edu", 2, partner_id, 86400, "disableentitlement")
    forms = {}
    for version, ks in (("v1", v1.decode()), ("v2", v2)):
        forms[version] = ks
        forms[f"{version} URL-encoded"] = quote(ks, safe="")
        forms[f"{version} URL-encoded twice"] = quote(quote(ks, safe=""), safe="")
        forms[f"{version} in a path"] = f"https://cdnapisec.kaltura.com/p/{partner_id}/ks/{ks}/flavorId/0_abcd1234"
        forms[f"{version} in a query"] = f"https://cdnapisec.kaltura.com/api_v3/?ks={quote(ks, safe='')}&format=1"
    return forms


def session_leaks(text: str, forms: dict[str, str]) -> list[str]:
    """The forms whose session (or a piece of it long enough to matter) is still in the text."""
    sessions = [forms["v1"], forms["v2"]]
    pieces = [piece for ks in sessions for piece in (ks, quote(ks, safe=""), ks[10:40], ks[-30:])]
    return [piece for piece in pieces if piece in text]


@pytest.mark.django_db(transaction=True)
def test_failed_jobs_show_no_secret_in_messages_audit_rq_or_logs(
    client, make_user, old_entries, rq_queue, kaltura_sim, settings, caplog
):
    settings.AWS_SECRET_ACCESS_KEY = AWS_SECRET
    ks = kaltura_session(Kaltura.from_settings())
    forms = session_forms(ks, kaltura_sim.partner_id, kaltura_sim.admin_secret)
    secrets_shown = [settings.KALTURA_SECRET, AWS_SECRET]
    # A transient error: the item fails, and the job fails too so that RQ retries it later.
    kaltura_sim.state.inject_fault(
        "kaltura_error",
        count=100,
        service="flavorAsset",
        action="getUrl",
        message="; ".join(f"{name}: {form}" for name, form in forms.items())
        + f"; secret {settings.KALTURA_SECRET}; aws {AWS_SECRET}",
    )
    client.force_login(make_user("boss", role="admin"))
    client.post(reverse("batch_create"), {"action": "archive", "filter_query": "tags=forgotten"})
    batch = Batch.objects.get()
    client.post(reverse("batch_approve", args=[batch.pk]), {"confirmed": "yes"})
    jobs = rq_queue.get_jobs()
    assert len(jobs) == 2
    for job in jobs:  # ids in, nothing else
        assert job.args == (job.args[0], job.args[1]) and isinstance(job.args[0], int) and not job.kwargs
        job.retries_left = 0  # fail for good now, so RQ keeps the exception for its dashboard
        job.save()
    SimpleWorker([rq_queue], connection=rq_queue.connection).work(burst=True)

    assert set(batch.items.values_list("status", flat=True)) == {"failed"}
    texts = {"logs": caplog.text}
    texts["item messages"] = json.dumps(list(batch.items.values_list("message", flat=True)))
    texts["audit events"] = json.dumps([[event.message, event.details] for event in AuditEvent.objects.all()])
    for job in jobs:
        job = Job.fetch(job.id, connection=rq_queue.connection)
        result = job.latest_result()
        assert result is not None and "KalturaError" in result.exc_string
        texts[f"RQ job {job.id}"] = " ".join([repr(job.args), repr(job.kwargs), job.description, result.exc_string])
        page = client.get(reverse("django_rq:job_detail", args=[0, job.id]))
        assert page.status_code == 200
        texts[f"RQ page of {job.id}"] = page.content.decode()
    stored = {name: text for name, text in texts.items() if name != "logs" and "page" not in name}
    assert all(text.count("<ks>") >= len(forms) for text in stored.values())
    assert "v1 in a path: https://cdnapisec.kaltura.com/p/" in texts["item messages"]  # the rest of the text stays
    for name, text in texts.items():
        assert session_leaks(text, forms) == [], name
        for secret in secrets_shown:
            assert secret not in text, name


def test_redaction_covers_every_configured_secret(settings):
    settings.KALTURA_SECRET = "k" * 32
    settings.AWS_ACCESS_KEY_ID = "AKIA" + "A" * 16
    settings.AWS_SECRET_ACCESS_KEY = AWS_SECRET
    settings.SECRET_KEY = "django-signing-key-" + "x" * 40
    text = " ".join([settings.KALTURA_SECRET, settings.AWS_ACCESS_KEY_ID, AWS_SECRET, settings.SECRET_KEY])
    assert redact(text + " djJ8MTIzfGFiYw==") == " ".join(["<secret>"] * 4) + " <ks>"


@pytest.mark.parametrize("attempt", range(20))  # random sessions: any base64 character anywhere
def test_every_form_of_a_kaltura_session_is_redacted_and_the_text_around_it_kept(attempt):
    v2 = "djJ8" + base64.urlsafe_b64encode(b"1234567|" + secrets.token_bytes(90 + attempt % 3)).decode()
    forms = session_forms(v2, 1234567, "partner-admin-secret")
    for name, form in forms.items():
        for text in (f"failed: {form}.", f'Invalid KS "{form}", Error "-1,INVALID_STR"', f'{{"ks": "{form}", "x": 1}}'):
            clean = redact(text)
            assert session_leaks(clean, forms) == [], (name, clean)
            assert "<ks>" in clean and clean.startswith(text.split(form)[0]), name


def test_text_that_merely_looks_like_base64_is_kept():
    text = "copied 0_abcd1234 (MDAwMDAwMDAwMDAw, sha256 " + "a" * 64 + ") thanks: tasks=3"
    assert redact(text) == text


@pytest.mark.parametrize(
    "url", ["/admin/archive_app/entry/1_abcd%00/change/", "/admin/auth/user/?q=a%00", "/entries/%00/"]
)
def test_a_nul_byte_in_the_address_is_a_400_even_where_no_form_checks(client, admin, url):
    admin.is_superuser = True
    admin.save()
    client.force_login(admin)
    assert client.get(url).status_code == 400


# --- Refusals in the log ---------------------------------------------------------------------


@contextmanager
def console_output():
    """What every console handler of the logging tree prints, as it would reach the terminal."""
    import io
    import logging

    handlers = set(logging.root.handlers)
    for logger in logging.Logger.manager.loggerDict.values():
        handlers |= set(getattr(logger, "handlers", []))
    output = io.StringIO()
    streams = [(handler, handler.setStream(output)) for handler in handlers if type(handler) is logging.StreamHandler]
    try:
        yield output
    finally:
        for handler, stream in streams:
            handler.setStream(stream)


@pytest.mark.parametrize("debug", [False, True])
def test_a_403_is_logged_once_on_one_line_with_user_path_and_reason(client, make_user, settings, debug):
    settings.DEBUG = debug  # Django's own console handler printed it a second time with DEBUG on
    client.force_login(make_user("nobody", role=None))
    with console_output() as output:
        assert client.get("/entries/?q=%0Aforged").status_code == 403
    lines = [line for line in output.getvalue().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "403 forbidden: user nobody, GET /entries/: permission denied (entry_list)" in lines[0]


def test_a_csrf_refusal_is_one_line_too(make_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("lib", role="librarian"))
    with console_output() as output:
        assert client.post(reverse("batch_create"), {"action": "archive"}).status_code == 403
    lines = [line for line in output.getvalue().splitlines() if line.strip()]
    assert len(lines) == 1 and "403 forbidden: user lib, POST /batches/new/: CSRF check failed: " in lines[0], lines


def test_a_path_cannot_forge_a_log_line(client, make_user):
    client.force_login(make_user("nobody", role=None))
    with console_output() as output:
        client.get("/entries/%0A2026-01-01 INFO forged line/")
    assert len([line for line in output.getvalue().splitlines() if line.strip()]) == 1
