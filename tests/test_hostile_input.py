"""Random and hostile values at every form, filter, URL and command-line option.

Huge numbers, negative years, unknown statuses, unicode, NUL bytes, SQL-looking text and
20,000-id lists. Each must end in a form error, a 4xx or a clear non-zero exit (a
CommandError: "CommandError: <message>" and exit status 1), never a 500 or a traceback,
and change nothing.

To cover a new page or form, add one line to WEB_FORMS (or PATH_PARAMETERS for a value in
the URL's path); a new management command of archive_app is covered without any line,
its options read from its own parser.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import CommandError
from django.urls import reverse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from archive_app.mirror.filters import EntryFilterSet
from archive_app.models import ArchivePolicy, AuditEvent, Batch, BatchItem, Entry, ExcludedCategory, Restore
from archive_app.web.security import SignInForm
from tests.factories import YEAR, make_category, make_entry

ROOT = Path(__file__).resolve().parent.parent
FILTER_FIELDS = tuple(EntryFilterSet.base_filters)
MANY_IDS = " ".join(f"1_{n:08d}" for n in range(20_000))
SQL = [
    "1' OR '1'='1",
    "'; DROP TABLE archive_app_entry; --",
    "1); DELETE FROM auth_user; --",
    '" OR ""="',
    "%' UNION SELECT password FROM auth_user --",
]
AWKWARD = [
    "",
    " ",
    "\x00",
    "NaN",
    "-Infinity",
    "1e999",
    "0x1F",
    "-2024",
    "-0001-01-01",
    "0000-00-00",
    "9999-99-99",
    "2024-02-30",
    "READY",
    "DELETED",
    "99",
    "-3",
    "archived ",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "%00",
    "²",
    "٣",
    "𝟗",
    "☃" * 300,
    "9" * 5000,
    str(2**63),
    str(-(2**63) - 1),
    MANY_IDS,
]
hostile_text = st.one_of(
    st.sampled_from(SQL + AWKWARD),
    st.text(max_size=60),  # any unicode: combining marks, right-to-left, emoji, control characters
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.floats().map(str),
)
# A value, or several values for one name (?status=2&status=x), or far too many.
hostile_value = st.one_of(hostile_text, st.lists(hostile_text, max_size=3), st.just(["2"] * 1500))
hostile_query = st.one_of(
    st.dictionaries(st.sampled_from(FILTER_FIELDS), hostile_value, max_size=4).map(
        lambda data: urlencode(data, doseq=True)
    ),
    hostile_text,
)
# Fields whose values need a shape of their own to reach past the first check.
FIELD_VALUES = {
    "action": st.one_of(st.sampled_from(Batch.Action.values), hostile_text),
    "filter_query": hostile_query,
}
BATCH = "<batch id>"


@dataclass(frozen=True)
class WebForm:
    url_name: str
    fields: tuple[str, ...]
    method: str = "get"
    url_kwargs: dict = field(default_factory=dict)
    signed_in: bool = True


# One line per form or page that takes input.
WEB_FORMS = [
    WebForm("entry_list", (*FILTER_FIELDS, "page")),
    WebForm("entry_export", FILTER_FIELDS, url_kwargs={"fmt": "csv"}),
    WebForm("health", FILTER_FIELDS),
    WebForm("batch_list", ("page",)),
    WebForm("batch_detail", ("page",), url_kwargs={"batch_id": BATCH}),
    WebForm("batch_create", ("action", "filter_query", "source"), method="post"),
    WebForm("entry_selection", ("op", "shown", "checked", "back", "filter_query"), method="post"),
    WebForm("batch_approve", ("confirmed",), method="post", url_kwargs={"batch_id": BATCH}),
    WebForm("login", (*SignInForm.base_fields, "next"), method="post", signed_in=False),
    WebForm("audit_log", ("user", "action", "entry", "batch", "since", "until", "outcome", "mode", "page")),
    WebForm("audit_export", ("user", "action", "entry", "batch", "since", "until", "outcome", "mode")),
    WebForm("restore_list", ("page", "status")),
    WebForm("restore_new", ("entry_id", "tier")),
    WebForm("restore_create", ("entry_id", "tier"), method="post"),
    WebForm(
        "policy_create",
        (
            "name",
            "action",
            "schedule",
            "notice_days",
            "next_run_at",
            "confirm_share",
            *(f"filter-{name}" for name in FILTER_FIELDS),
            "filter-foo",
        ),
        method="post",
    ),
    WebForm("exemption_add", ("entry_id", "reason"), method="post"),
    WebForm("category_exclude", ("category_id", "reason"), method="post"),
    WebForm("keep_entries", ("token", "action", "keep"), method="post", signed_in=False),
    # University sign-in with no IdP configured (404); tests/web/test_sso.py sends hostile answers to configured ones.
    WebForm("saml_acs", ("SAMLResponse", "RelayState"), method="post", signed_in=False),
    WebForm("saml_login", ("next", "idp"), signed_in=False),
    WebForm("oidc_callback", ("code", "state", "error"), signed_in=False),
    WebForm("oidc_login", ("next",), signed_in=False),
]
# (url name, path parameter, method): hostile text typed into the address.
PATH_PARAMETERS = [
    ("entry_detail", "entry_id", "get"),
    ("batch_detail", "batch_id", "get"),
    ("batch_confirm", "batch_id", "get"),
    ("batch_approve", "batch_id", "post"),
    ("batch_cancel", "batch_id", "post"),
    ("batch_retry", "batch_id", "post"),
    ("restore_detail", "restore_id", "get"),
    ("restore_retry", "restore_id", "post"),
    ("policy_edit", "policy_id", "get"),
    ("exemption_remove", "entry_id", "post"),
]
HYPOTHESIS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


def database_state() -> tuple:
    return (
        list(Entry.objects.order_by("id").values_list("id", "archive_state", "tags")),
        list(Batch.objects.order_by("id").values_list("id", "status", "approved_by_id")),
        list(BatchItem.objects.order_by("id").values_list("id", "status")),
        AuditEvent.objects.count(),
        list(User.objects.order_by("id").values_list("id", "username", "password", "email", "is_staff")),
        list(ArchivePolicy.objects.values_list("id", "name", "filter_query")),
        list(ExcludedCategory.objects.values_list("category_id", flat=True)),
        list(Restore.objects.values_list("id", "status")),
    )


@pytest.fixture
def mirror(db, make_user, settings):
    """A few entries, categories and a draft batch; Kaltura and S3 not configured, so nothing can act."""
    settings.KALTURA_PARTNERID = None
    settings.AWS_BUCKET = ""
    lectures = make_category(10, "Lectures")
    make_category(11, "Biology", lectures)
    now = make_entry("1_abcd1234", name="Old", tags="lecture", categories=[lectures]).created_at
    make_entry("1_efgh5678", name="=1+1", created_at=now - 6 * YEAR, tags="archived_to_s3")
    admin = make_user("admin", role="admin")
    batch = Batch.objects.create(action=Batch.Action.ARCHIVE, created_by=admin)
    BatchItem.objects.create(batch=batch, entry_id="1_abcd1234", planned_steps=["copy"])
    return admin, batch


def assert_refused_cleanly(response) -> None:
    assert response.status_code < 500, response.status_code
    if not getattr(response, "streaming", False):
        assert b"Traceback" not in response.content


# Values put in every field at once, besides the random ones.
EVERYWHERE = {"many ids": MANY_IDS, "nul": "1_abcd1234\x00", "sql": SQL[1]}


@pytest.mark.parametrize("form", WEB_FORMS, ids=lambda form: f"{form.method} {form.url_name}")
@HYPOTHESIS
@given(data=st.data())
@example(data="many ids")
@example(data="nul")  # PostgreSQL refuses NUL in any query: it must be stopped before one
@example(data="sql")
def test_hostile_form_values_are_refused_and_change_nothing(form, data, client, mirror):
    admin, batch = mirror
    if isinstance(data, str):
        values = {name: EVERYWHERE[data] for name in form.fields if name != "action"} | {"action": "archive"}
    else:
        strategies = {name: FIELD_VALUES.get(name, hostile_value) for name in form.fields}
        values = data.draw(st.fixed_dictionaries({}, optional=strategies))
    cache.clear()  # no sign-in lockout carried from one example to the next
    client.logout()
    if form.signed_in:
        client.force_login(admin)
    url = reverse(form.url_name, kwargs={k: batch.pk if v == BATCH else v for k, v in form.url_kwargs.items()})
    before = database_state()
    response = getattr(client, form.method)(url, values)
    assert_refused_cleanly(response)
    assert database_state() == before


@pytest.mark.parametrize(("url_name", "parameter", "method"), PATH_PARAMETERS)
@HYPOTHESIS
@given(value=hostile_text)
@example(value="1_abcd1234\x00")
@example(value="x" * 5000)
@example(value="..")
def test_hostile_values_in_the_path_are_a_404(url_name, parameter, method, value, client, mirror):
    admin, _ = mirror
    client.force_login(admin)
    url = reverse(url_name, kwargs={parameter: 987654321}).replace("987654321", quote(value, safe="") or "%20")
    before = database_state()
    response = getattr(client, method)(url)
    assert_refused_cleanly(response)
    assert response.status_code in (400, 404)
    assert database_state() == before


# --- Management commands --------------------------------------------------------------------------

# Django's own options (settings module, traceback, colours) and standard input, which the tests do not have.
SKIPPED_OPTIONS = {"help", "version", "verbosity", "settings", "pythonpath", "traceback", "no_color", "force_color"}
SKIPPED_OPTIONS |= {"skip_checks", "password_stdin"}
# Commands that exist to change things: a success may change the database; a refusal may not.
CHANGES_ON_SUCCESS = {"create_user", "demo_users"}
PROJECT_COMMANDS = sorted(name for name, app in get_commands().items() if app == "archive_app")


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "ids.txt").write_text(MANY_IDS.replace(" ", "\n"))
    (folder / "binary").write_bytes(bytes(range(256)) * 10)
    (folder / "sql.txt").write_text("\n".join(SQL))
    return [str(folder / name) for name in ("ids.txt", "binary", "sql.txt", "missing")] + ["/", "/dev/null"]


def command_argv(name: str, files: list[str]):
    """A strategy of argument lists for the command, built from its own parser."""
    parser = load_command_class("archive_app", name).create_parser("manage.py", name)
    actions = [action for action in parser._actions if action.dest not in SKIPPED_OPTIONS]

    def value_for(action):
        if action.dest.endswith("file"):
            return st.sampled_from(files)
        if action.choices:
            return st.one_of(st.sampled_from(sorted(action.choices)), hostile_text)
        return hostile_text

    def tokens(action):
        if not action.option_strings:
            return value_for(action).map(lambda value: [value])
        option = action.option_strings[-1]
        if action.nargs == 0:  # a flag
            return st.just([option])
        return value_for(action).map(lambda value: [f"{option}={value}"])

    required = [action for action in actions if action.required or not action.option_strings]
    optional = [action for action in actions if action not in required]
    chosen = st.lists(st.sampled_from(optional), max_size=4, unique_by=id) if optional else st.just([])
    return chosen.flatmap(
        lambda picked: st.tuples(*(tokens(action) for action in required + picked)).map(
            lambda parts: [token for part in parts for token in part]
        )
    )


@pytest.mark.parametrize("name", PROJECT_COMMANDS)
@HYPOTHESIS
@given(data=st.data())
def test_hostile_command_options_exit_with_a_message_and_change_nothing(name, data, mirror, hostile_files):
    argv = data.draw(command_argv(name, hostile_files))
    before = database_state()
    stdout, stderr = StringIO(), StringIO()
    try:
        call_command(name, *argv, stdout=stdout, stderr=stderr)
    except CommandError as error:  # what manage.py prints as one line, exiting with status 1
        assert str(error).strip()
    else:
        if name in CHANGES_ON_SUCCESS:
            return
    assert database_state() == before


@pytest.mark.parametrize("name", PROJECT_COMMANDS)
def test_unknown_options_are_refused(name, mirror):
    with pytest.raises(CommandError, match="unrecognized arguments|are required"):
        call_command(name, "--drop-database")


# Each refused with a message naming what was wrong.
REFUSALS = [
    (["count_entries", "--plays-lt=-5"], "--plays-lt"),
    (["count_entries", "--tag=lecture\x00"], "--tag"),  # NUL: PostgreSQL would refuse the query
    (["archive_entries", "--user=cli\x00"], "--user"),
    (["count_entries", "--created-from=0000-00-00", "--status=EXPLODED"], "--status"),
    (["list_entries", "--max-entries=²"], "--max-entries"),
    (["list_entries", f"--max-entries={10**30}"], "--max-entries"),
    (["list_entries", "--format=xml"], "invalid choice"),
    (["archive_entries", "--user=' OR 1=1 --", "--never-played"], "--user"),
    (["archive_entries", "--max-entries=0"], "--max-entries"),
    (["replace_entries", "--unplayed-for=-3"], "--unplayed-for"),
    (["health_check", "--id=1_abcd1234; DROP TABLE x"], "--id"),
    (["create_user", "robert'); DROP TABLE auth_user;--", "--role=librarian"], "username"),
    (["create_user", "bob", "--role=librarian", "--email=not an address"], "--email"),
    (["create_user", "bob", "--role=superuser"], "invalid choice"),
]


@pytest.mark.parametrize(("argv", "named"), REFUSALS, ids=lambda value: str(value)[:40])
def test_named_refusals(argv, named, mirror):
    before = database_state()
    with pytest.raises(CommandError, match=named):
        call_command(*argv, stdout=StringIO(), stderr=StringIO())
    assert database_state() == before


# Through manage.py itself: the exit status and what reaches the terminal. The database has no tables,
# so each value must be refused before any query.
EXITS = [
    (["list_entries", "--max-entries=²"], 1, "CommandError: --max-entries"),
    (["create_user", "robert'); DROP TABLE auth_user;--", "--role=librarian"], 1, "CommandError: username"),
    (["list_entries", "--format=xml"], 2, "invalid choice"),
]


@pytest.mark.parametrize(("argv", "status", "named"), EXITS, ids=lambda value: str(value)[:40])
def test_manage_py_exits_non_zero_with_one_message(argv, status, named, tmp_path):
    environment = {"PATH": "/usr/bin:/bin", "DJANGO_SECRET_KEY": "x", "DATABASE_URL": f"sqlite:///{tmp_path}/empty.db"}
    result = subprocess.run(
        [sys.executable, "manage.py", *argv], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == status, result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr
