"""University sign-in end to end: a real SAML IdP (pysaml2's server, tests/saml_idp.py) and a real OpenID
provider (oidc-provider-mock), each on loopback, through the browser."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import timedelta
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore

from archive_app.models import AuditEvent
from archive_app.roles import user_role
from tests.saml_idp import SamlIdp, make_key_pair
from tests.test_foundation import run_manage

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STAFF, ADMINS = "staff@example.edu", "archive-admins@example.edu"


@pytest.fixture
def role_values(settings):
    settings.SSO_LIBRARIAN_VALUES = [STAFF, "urn:mace:example.edu:entitlement:library"]
    settings.SSO_ADMIN_VALUES = [ADMINS]


@pytest.fixture
def make_saml_idp(tmp_path, settings, live_server, role_values):
    """An IdP that trusts our SP from its metadata URL; we read the IdP's metadata from its URL."""
    started = []

    def start():
        idp = SamlIdp(tmp_path, host=urlsplit(live_server.url).hostname)
        started.append(idp)
        settings.ARCHIVE_SITE_URL = live_server.url
        settings.SAML_IDP_METADATA = f"{idp.url}/metadata"
        idp.trust_sp(requests.get(f"{live_server.url}/sso/saml/metadata/", timeout=10).text)
        idp.users["jdoe"] = {
            "eduPersonPrincipalName": ["jdoe@example.edu"],
            "mail": ["jane.doe@example.edu"],
            "displayName": ["Jane Doe"],
            "isMemberOf": [STAFF],
        }
        return idp

    yield start
    for idp in started:
        idp.stop()


@pytest.fixture
def saml_idp(make_saml_idp):
    return make_saml_idp()


def saml_sign_in(page, idp, user="jdoe"):
    page.goto("/login/")
    page.get_by_test_id("saml_login").click()
    page.wait_for_url(f"{idp.url}/sso/redirect**")
    page.fill("#idp-user", user)
    page.click("text=Sign in at the IdP")


def sign_out(page):
    page.click("text=Sign out")
    page.wait_for_url("**/login/")


def events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_saml_first_sign_in_creates_the_user_with_the_mapped_role_and_the_idp_changes_it(page, saml_idp):
    saml_sign_in(page, saml_idp)
    page.wait_for_selector("[data-testid=signed-in-user]")
    assert page.get_by_test_id("signed-in-user").inner_text() == "jdoe@example.edu"
    user = User.objects.get(username="jdoe@example.edu")
    assert (user.email, user.get_full_name(), user_role(user), user.has_usable_password()) == (
        "jane.doe@example.edu",
        "Jane Doe",
        "librarian",
        False,
    )
    page.goto("/entries/")
    assert page.title() and page.get_by_test_id("no-role").count() == 0

    (sign_in,) = events("sign_in")
    assert sign_in.username == "jdoe@example.edu"
    assert sign_in.details["protocol"] == "saml" and sign_in.details["idp"] == f"{saml_idp.url}/metadata"
    assert sign_in.details["subject"]  # the NameID, never the assertion
    assert "Assertion" not in str(sign_in.details) and "Jane" not in str(sign_in.details)
    (granted,) = events("sso_role_granted")
    assert granted.details["role"] == "librarian"

    # The IdP drops the group: the next sign-in removes the role.
    sign_out(page)
    assert events("sign_out")[0].details["protocol"] == "saml"
    saml_idp.users["jdoe"]["isMemberOf"] = ["choir@example.edu"]
    saml_sign_in(page, saml_idp)
    page.wait_for_selector("[data-testid=no-role]")
    user.refresh_from_db()
    assert user_role(user) is None and not user.is_staff
    assert [event.details["role"] for event in events("sso_role_removed")] == ["librarian"]

    # Archive admins by entitlement and group: staff status follows.
    sign_out(page)
    saml_idp.users["jdoe"]["isMemberOf"] = [ADMINS]
    saml_idp.users["jdoe"]["displayName"] = ["Jane Doe-Smith"]
    saml_sign_in(page, saml_idp)
    page.wait_for_selector("[data-testid=signed-in-user]")
    user.refresh_from_db()
    assert (user_role(user), user.is_staff, user.get_full_name()) == ("admin", True, "Jane Doe-Smith")
    assert User.objects.filter(username="jdoe@example.edu").count() == 1


def test_each_sign_in_returns_to_the_page_that_asked_for_it(page, saml_idp, oidc_provider):
    page.goto("/entries/?unplayed_years=3")
    page.wait_for_url("**/login/?next=**")
    page.get_by_test_id("saml_login").click()
    page.fill("#idp-user", "jdoe")
    page.click("text=Sign in at the IdP")
    page.wait_for_url("**/entries/?unplayed_years=3")
    sign_out(page)
    page.goto("/health/")
    page.get_by_test_id("oidc_login").click()
    page.get_by_placeholder("sub").fill("alice")
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url("**/health/")


def test_saml_attribute_mapping_is_configurable(page, make_saml_idp, settings):
    settings.SAML_ATTRIBUTE_USERNAME, settings.SAML_ATTRIBUTE_NAME = "mail", "cn"
    settings.SAML_ROLE_ATTRIBUTES = ["eduPersonEntitlement"]
    saml_idp = make_saml_idp()  # our metadata asks for the attributes the mapping reads; the IdP releases those
    saml_idp.users["jdoe"].update(
        cn=["J. Doe"], eduPersonEntitlement=["urn:mace:example.edu:entitlement:library"], isMemberOf=[ADMINS]
    )
    saml_sign_in(page, saml_idp)
    page.wait_for_selector("[data-testid=signed-in-user]")
    user = User.objects.get()
    # isMemberOf is no longer read: the entitlement makes a librarian, not the admin group.
    assert (user.username, user.get_full_name(), user_role(user)) == ("jane.doe@example.edu", "J. Doe", "librarian")


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("tampered", "signature"),
        ("unsigned", "signature"),
        ("expired", "expired"),
        ("other-audience", "addressed to another service"),
        ("other-destination", "addressed to another service"),
    ],
)
def test_saml_refuses_a_bad_assertion_with_a_clear_page_and_an_audit_event(page, saml_idp, answer, reason):
    saml_idp.next_answer = answer
    saml_sign_in(page, saml_idp)
    refusal = page.get_by_test_id("sso-refused")
    refusal.wait_for()
    assert reason in refusal.inner_text()
    assert page.get_by_test_id("signed-in-user").count() == 0
    assert not User.objects.filter(username="jdoe@example.edu").exists()
    (event,) = events("sso_sign_in_refused")
    assert event.outcome == AuditEvent.Outcome.REFUSED and event.details["protocol"] == "saml"
    assert reason in event.message and "<" not in event.message
    assert events("sign_in") == []


def test_saml_refuses_a_replayed_assertion(page, browser, live_server, saml_idp):
    saml_sign_in(page, saml_idp)
    page.wait_for_selector("[data-testid=signed-in-user]")
    sign_out(page)
    page.goto(f"{saml_idp.url}/replay")  # the same signed answer, posted again by the same browser
    page.get_by_test_id("sso-refused").wait_for()
    # ... and by another browser that captured it (no sign-in of its own was started there).
    other = browser.new_context(base_url=live_server.url)
    try:
        stolen = other.new_page()
        stolen.goto(f"{saml_idp.url}/replay")
        stolen.get_by_test_id("sso-refused").wait_for()
        assert stolen.get_by_test_id("signed-in-user").count() == 0
    finally:
        other.close()
    assert len(events("sso_sign_in_refused")) == 2
    assert len(events("sign_in")) == 1


def test_saml_signed_and_encrypted_assertions_with_our_certificate(page, make_saml_idp, settings, tmp_path):
    settings.SAML_SP_KEY_FILE, settings.SAML_SP_CERT_FILE = map(str, make_key_pair(tmp_path, "sp"))
    idp = make_saml_idp()  # registers our metadata, now with our certificate
    idp.next_answer = "encrypted"
    saml_sign_in(page, idp)
    page.wait_for_selector("[data-testid=signed-in-user]")
    assert "EncryptedAssertion" in idp.last_answer_xml
    assert "jdoe@example.edu" not in idp.last_answer_xml  # only the IdP and we can read it
    assert user_role(User.objects.get(username="jdoe@example.edu")) == "librarian"


def test_saml_assertion_is_accepted_once_even_when_its_request_is_still_outstanding(client, saml_idp):
    """Two posts of one answer racing each other both find their request outstanding (it is removed only
    after the first succeeds): the assertion id, kept in Redis, lets one through."""
    start = client.get("/sso/saml/login/")
    query = {key: values[0] for key, values in parse_qs(urlsplit(start["Location"]).query).items()}
    answer_page = requests.post(f"{saml_idp.url}/sso/login", data={**query, "user": "jdoe"}, timeout=10).text
    saml_response = re.search(r'name="SAMLResponse" value="([^"]+)"', answer_page).group(1)
    saml_session = SessionStore(client.cookies["saml_session"].value)
    outstanding = dict(saml_session.items())  # what the racing second request read

    first = client.post("/sso/saml/acs/", {"SAMLResponse": saml_response, "RelayState": "/"})
    assert first.status_code == 302 and "_auth_user_id" in client.session
    saml_session.update(outstanding)
    saml_session.save()
    second = client.post("/sso/saml/acs/", {"SAMLResponse": saml_response, "RelayState": "/"})
    assert second.status_code == 403
    assert b"already used once" in second.content
    assert len(events("sign_in")) == 1 and len(events("sso_sign_in_refused")) == 1


HOSTILE_ANSWERS = [
    "",
    "not base64 at all \x00",
    base64.b64encode(b"<samlp:Response xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol'/>").decode(),
    base64.b64encode(b"<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><x>&e;</x>").decode(),
    base64.b64encode(b"<a>" * 50_000).decode(),
    "1' OR '1'='1",
]


@pytest.mark.parametrize("answer", HOSTILE_ANSWERS, ids=range(len(HOSTILE_ANSWERS)))
def test_hostile_saml_answers_are_refused_cleanly(client, saml_idp, answer):
    client.get("/sso/saml/login/")  # a sign-in under way, so only the answer itself is wrong
    response = client.post("/sso/saml/acs/", {"SAMLResponse": answer, "RelayState": "/\x00"})
    assert response.status_code in (400, 403) and b"Traceback" not in response.content
    assert b"root:" not in response.content
    assert "_auth_user_id" not in client.session and not User.objects.exists()


@pytest.mark.parametrize(
    "query", ["code=x&state=", "state=x", "code=%00&state=%00", "error=" + "x" * 5000, "code=1' OR '1'='1&state=1"]
)
def test_hostile_oidc_callbacks_are_refused_cleanly(client, oidc_provider, query):
    client.get("/sso/oidc/login/")
    response = client.get(f"/sso/oidc/callback/?{query}")
    # 400: a NUL byte is refused before any view (archive_app.web.security.refuse_nul_bytes).
    assert response.status_code in (400, 403) and b"Traceback" not in response.content
    assert "_auth_user_id" not in client.session and not User.objects.exists()
    refusals = events("sso_sign_in_refused")
    assert len(refusals) == (response.status_code == 403) and all(len(event.message) < 300 for event in refusals)


def test_an_idp_cannot_sign_in_as_a_break_glass_account(page, saml_idp, settings, make_user):
    settings.SSO_BREAK_GLASS_USERS = ["jdoe@example.edu"]
    make_user("jdoe@example.edu", role="admin")
    saml_sign_in(page, saml_idp)
    refusal = page.get_by_test_id("sso-refused")
    refusal.wait_for()
    assert "break-glass" in refusal.inner_text()
    (event,) = events("sso_sign_in_refused")
    assert event.username == "jdoe@example.edu" and event.details["subject"]


def test_an_idp_cannot_take_over_a_local_account_of_the_same_name(page, saml_idp, make_user):
    local = make_user("jdoe@example.edu", role=None)
    saml_sign_in(page, saml_idp)
    page.get_by_test_id("sso-refused").wait_for()
    assert "local account with a password" in page.get_by_test_id("sso-refused").inner_text()
    local.refresh_from_db()
    assert user_role(local) is None and local.check_password(local.raw_password)
    # Once an admin removes the password, the IdP's sign-in takes the account over, with the mapped role.
    local.set_unusable_password()
    local.save()
    saml_sign_in(page, saml_idp)
    page.wait_for_selector("[data-testid=signed-in-user]")
    local.refresh_from_db()
    assert user_role(local) == "librarian"


def test_sp_metadata_is_served_at_a_stable_url_for_the_idp_admins(client, settings, tmp_path, live_server):
    settings.ARCHIVE_SITE_URL = "https://archive.example.edu"
    idp = SamlIdp(tmp_path)
    try:
        (tmp_path / "idp.xml").write_text(idp.metadata_xml())
        settings.SAML_IDP_METADATA = str(tmp_path / "idp.xml")  # IdP metadata from a file
        settings.SAML_SP_KEY_FILE, settings.SAML_SP_CERT_FILE = map(str, make_key_pair(tmp_path, "sp"))
        response = client.get("/sso/saml/metadata/")
    finally:
        idp.stop()
    assert response.status_code == 200 and response["Content-Type"].startswith("text/xml")
    xml = response.content.decode()
    assert 'entityID="https://archive.example.edu/sso/saml/metadata/"' in xml
    assert 'Location="https://archive.example.edu/sso/saml/acs/"' in xml
    assert 'WantAssertionsSigned="true"' in xml and 'AuthnRequestsSigned="true"' in xml
    cert_body = "".join((tmp_path / "sp.pem").read_text().splitlines()[1:-1])
    assert cert_body in xml.replace("\n", "")


# --- OpenID Connect -------------------------------------------------------------------------------


@pytest.fixture
def make_oidc_provider(settings, live_server, role_values):
    import oidc_provider_mock

    started = []

    def start(**options):
        server = oidc_provider_mock.run_server_in_thread(require_nonce=True, **options)
        started.append(server)
        url = f"http://{urlsplit(live_server.url).hostname}:{server.__enter__().server_port}"
        settings.OIDC_ISSUER, settings.OIDC_CLIENT_ID = url, "kaltura-archive"
        settings.OIDC_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET = "test-client-secret-1234"
        settings.OIDC_RP_CLIENT_ID = "kaltura-archive"
        return url

    yield start
    for server in started:
        server.__exit__(None, None, None)


@pytest.fixture
def oidc_provider(make_oidc_provider):
    url = make_oidc_provider()
    set_claims(url, "alice", groups=[STAFF])
    return url


def set_claims(url, sub, **claims):
    claims = {"email": f"{sub}@example.edu", "name": f"{sub.title()} Example", **claims}
    assert requests.put(f"{url}/users/{quote(sub)}", json=claims, timeout=10).status_code == 204


def oidc_sign_in(page, provider, sub="alice"):
    page.goto("/login/")
    page.get_by_test_id("oidc_login").click()
    page.wait_for_url(f"{provider}/oauth2/authorize**")
    page.get_by_placeholder("sub").fill(sub)
    page.get_by_role("button", name="Authorize").click()


def test_oidc_first_sign_in_creates_the_user_and_the_groups_claim_changes_the_role(page, oidc_provider, settings):
    authorize_urls = []
    page.on(
        "request", lambda request: authorize_urls.append(request.url) if "/oauth2/authorize" in request.url else None
    )
    oidc_sign_in(page, oidc_provider)
    page.wait_for_selector("[data-testid=signed-in-user]")
    user = User.objects.get(username="alice")
    assert (user.email, user.get_full_name(), user_role(user)) == ("alice@example.edu", "Alice Example", "librarian")
    (sign_in,) = events("sign_in")
    assert sign_in.details == {"protocol": "oidc", "idp": oidc_provider, "subject": "alice"}

    # PKCE: the browser carried only the S256 challenge of the verifier that stayed in our session.
    query = parse_qs(urlsplit(authorize_urls[0]).query)
    assert query["code_challenge_method"] == ["S256"] and "code_verifier" not in query
    assert query["nonce"] and query["scope"] == ["openid email profile"]

    sign_out(page)
    set_claims(oidc_provider, "alice", groups=[ADMINS])
    oidc_sign_in(page, oidc_provider)
    page.wait_for_selector("[data-testid=signed-in-user]")
    user.refresh_from_db()
    assert user_role(user) == "admin" and user.is_staff
    sign_out(page)
    set_claims(oidc_provider, "alice")  # no groups claim at all
    oidc_sign_in(page, oidc_provider)
    page.wait_for_selector("[data-testid=no-role]")
    assert [event.details["role"] for event in events("sso_role_removed")] == ["librarian", "admin"]
    assert [event.details["role"] for event in events("sso_role_granted")] == ["librarian", "admin"]


def test_oidc_username_and_role_claims_are_configurable(page, oidc_provider, settings):
    settings.OIDC_USERNAME_CLAIM, settings.OIDC_ROLE_CLAIM = "email", "roles"
    set_claims(oidc_provider, "f81d4fae-7dec", email="bob@example.edu", roles=ADMINS, groups=[STAFF])
    oidc_sign_in(page, oidc_provider, sub="f81d4fae-7dec")
    page.wait_for_selector("[data-testid=signed-in-user]")
    user = User.objects.get()
    assert (user.username, user_role(user)) == ("bob@example.edu", "admin")  # a claim of one string counts too
    assert events("sign_in")[0].details["subject"] == "f81d4fae-7dec"


def test_oidc_pkce_challenge_matches_the_verifier_kept_in_the_session(client, oidc_provider):
    response = client.get("/sso/oidc/login/")
    assert response.status_code == 302
    query = parse_qs(urlsplit(response["Location"]).query)
    states = SessionStore(client.session.session_key)["oidc_states"]
    verifier = states[query["state"][0]]["code_verifier"]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert query["code_challenge"] == [challenge]
    assert response["Location"].startswith(f"{oidc_provider}/oauth2/authorize?")  # from discovery


def test_oidc_refuses_an_expired_id_token(page, make_oidc_provider):
    provider = make_oidc_provider(access_token_max_age=timedelta(seconds=-120))
    set_claims(provider, "alice", groups=[STAFF])
    oidc_sign_in(page, provider)
    refusal = page.get_by_test_id("sso-refused")
    refusal.wait_for()
    assert "expired" in refusal.inner_text()
    assert not User.objects.filter(username="alice").exists()
    (event,) = events("sso_sign_in_refused")
    assert event.details["protocol"] == "oidc"


def test_oidc_refuses_an_answer_to_a_sign_in_this_browser_never_started(page, oidc_provider):
    oidc_sign_in(page, oidc_provider)
    page.wait_for_selector("[data-testid=signed-in-user]")
    sign_out(page)
    page.goto("/sso/oidc/callback/?code=stolen-code&state=guessed-state")
    refusal = page.get_by_test_id("sso-refused")
    refusal.wait_for()
    assert "no sign-in started" in refusal.inner_text()
    assert len(events("sso_sign_in_refused")) == 1


def test_oidc_refuses_when_the_person_denies_at_the_provider(page, oidc_provider):
    page.goto("/login/")
    page.get_by_test_id("oidc_login").click()
    page.get_by_role("button", name="Deny").click()
    page.get_by_test_id("sso-refused").wait_for()
    assert page.get_by_test_id("signed-in-user").count() == 0
    assert len(events("sso_sign_in_refused")) == 1


def test_oidc_sign_in_says_so_when_the_provider_cannot_be_reached(client, settings, role_values):
    from tests.services import free_port

    settings.OIDC_ISSUER, settings.OIDC_CLIENT_ID = f"http://127.0.0.1:{free_port()}", "kaltura-archive"
    response = client.get("/sso/oidc/login/")
    assert response.status_code == 502
    assert b"cannot be reached" in response.content
    (event,) = events("sso_sign_in_refused")
    assert event.details["idp"] == settings.OIDC_ISSUER


# --- Local sign-in off ---------------------------------------------------------------------------


def test_local_sign_in_off_refuses_local_passwords_except_break_glass(
    page, settings, make_user, sign_in, oidc_provider
):
    settings.SSO_LOCAL_SIGN_IN = False
    settings.SSO_BREAK_GLASS_USERS = ["breakglass"]
    librarian = make_user("lena", role="librarian")
    page.goto("/login/")
    assert page.get_by_test_id("oidc_login").is_visible()
    page.fill("#id_username", librarian.username)
    page.fill("#id_password", librarian.raw_password)
    page.click("button[type=submit]")
    error = page.get_by_test_id("sign-in-error")
    assert "turned off" in error.inner_text()
    assert page.get_by_test_id("signed-in-user").count() == 0

    # The Django admin's own sign-in refuses it too.
    admin = make_user("boss", role="admin")
    page.goto("/admin/login/")
    page.fill("#id_username", admin.username)
    page.fill("#id_password", admin.raw_password)
    page.click("input[type=submit]")
    assert "/admin/login/" in page.url

    sign_in(make_user("breakglass", role="admin"))
    assert page.get_by_test_id("signed-in-user").inner_text() == "breakglass"
    assert [event.username for event in events("sign_in")] == ["breakglass"]
    assert events("sign_in")[0].details == {"protocol": "local"}


# --- check --deploy ------------------------------------------------------------------------------


@pytest.fixture
def sso_production_env(tmp_path):
    from tests.web.test_hardening import PRODUCTION_ENV

    key, cert = make_key_pair(tmp_path, "sp")
    (tmp_path / "idp.xml").write_text("<EntityDescriptor/>")
    return {
        **PRODUCTION_ENV,
        "SAML_IDP_METADATA": str(tmp_path / "idp.xml"),
        "SAML_SP_KEY_FILE": str(key),
        "SAML_SP_CERT_FILE": str(cert),
        "OIDC_ISSUER": "https://login.example.edu",
        "OIDC_CLIENT_ID": "kaltura-archive",
        "SSO_LOCAL_SIGN_IN": "0",
        "SSO_BREAK_GLASS_USERS": "breakglass",
    }


def test_deploy_check_is_clean_with_university_sign_in_configured(sso_production_env):
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=sso_production_env)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("changes", "warning"),
    [
        ({"SAML_WANT_ASSERTIONS_SIGNED": "0"}, "archive.W201"),
        ({"SAML_SP_CERT_FILE": ""}, "archive.W202"),
        ({"SAML_SP_KEY_FILE": "/nonexistent/sp.key"}, "archive.W202"),
        ({"ARCHIVE_SITE_URL": "http://archive.example.edu"}, "archive.W203"),
        ({"OIDC_ISSUER": "http://login.example.edu"}, "archive.W204"),
    ],
)
def test_deploy_check_warns_about_weak_sign_in_settings(sso_production_env, changes, warning):
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env={**sso_production_env, **changes})
    assert result.returncode == 1
    assert warning in result.stderr
