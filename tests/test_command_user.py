"""Who did it, on the command line: `--user` must name an active user holding the role the action needs,
and every event a command writes names the operating-system user and host that ran it."""

from __future__ import annotations

import getpass
import socket
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from archive_app.lib.kaltura import Kaltura
from archive_app.mirror import sync
from archive_app.models import AuditEvent, Batch, Restore

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = {"via": "command line", "os_user": getpass.getuser(), "host": socket.gethostname()}


@pytest.fixture
def old_entry(kaltura_sim, s3, rq_queue, settings, make_user):
    settings.KALTURA_RETRY_DELAYS = (0.01,)
    old = int((datetime.now(tz=UTC) - timedelta(days=5 * 365)).timestamp())
    entry_id = kaltura_sim.state.add_entry(name="Old lecture", createdAt=old)
    sync.sync_full(Kaltura.from_settings())
    make_user("lib", role="librarian")
    make_user("ada", role="admin")
    make_user("newcomer", role=None)
    return entry_id


def _state():
    return (
        Batch.objects.count(),
        Restore.objects.count(),
        AuditEvent.objects.count(),
        sorted(User.objects.values_list("username", flat=True)),
    )


@pytest.mark.parametrize(
    ("command", "user", "refusal"),
    [
        ("archive_entries", "newcomer", "--user newcomer: does not hold the Librarians role"),
        ("replace_entries", "newcomer", "--user newcomer: does not hold the Librarians role"),
        ("archive_entries", "someone-else", "--user someone-else: no active user"),
        ("restore_entries", "lib", "--user lib: does not hold the Archive admins role"),
        ("restore_entries", "ghost", "--user ghost: no active user"),
    ],
)
@pytest.mark.parametrize("execute", [True, False])
def test_a_user_without_the_role_is_refused_and_nothing_is_done(old_entry, command, user, refusal, execute):
    before = _state()
    args = [command, f"--id={old_entry}", "--user", user, *(["--execute", "--no-wait"] if execute else [])]
    with pytest.raises(CommandError, match=refusal):
        call_command(*args)
    assert _state() == before  # no batch, no restore, no event, and no user made up on the way


def test_an_inactive_user_is_refused(old_entry):
    User.objects.filter(username="lib").update(is_active=False)
    with pytest.raises(CommandError, match="no active user"):
        call_command("archive_entries", f"--id={old_entry}", "--user", "lib", "--execute", "--no-wait")
    assert not Batch.objects.exists()


def test_a_librarian_approves_and_the_events_name_the_os_user_and_host(old_entry, rq_queue):
    call_command("archive_entries", f"--id={old_entry}", "--user", "lib", "--execute", "--no-wait")
    batch = Batch.objects.get()
    assert batch.approved_by.username == "lib"
    events = list(AuditEvent.objects.filter(batch=batch))
    assert {event.action for event in events} >= {"preview_archive", "batch_create", "batch_approve"}
    assert {event.username for event in events} == {"lib"}
    # The batch preview's events too, though they are bulk-written (batches.preview_events).
    for event in events:
        assert {key: event.details.get(key) for key in ORIGIN} == ORIGIN, event.action


def test_the_default_cli_user_may_run_and_is_told_apart_by_os_user_and_host(old_entry, rq_queue):
    call_command("archive_entries", f"--id={old_entry}")  # dry run
    preview = AuditEvent.objects.get(action="preview_archive")
    assert preview.username == "cli" and {key: preview.details[key] for key in ORIGIN} == ORIGIN
    call_command("archive_entries", f"--id={old_entry}", "--execute", "--no-wait")
    approve = AuditEvent.objects.get(action="batch_approve")
    assert approve.username == "cli" and {key: approve.details[key] for key in ORIGIN} == ORIGIN


def test_an_archive_admin_restores_and_the_preview_names_the_os_user(old_entry):
    call_command("restore_entries", f"--id={old_entry}", "--user", "ada")  # dry run: nothing archived yet
    event = AuditEvent.objects.get(entry_id=old_entry)
    assert event.username == "ada" and event.details["os_user"] == ORIGIN["os_user"]


def test_events_outside_a_command_carry_no_origin(old_entry, make_user):
    from archive_app import audit

    event = audit.record("preview_archive", user=User.objects.get(username="lib"), dry_run=True)
    assert "os_user" not in event.details


def test_giving_a_role_on_the_command_line_is_audited_with_the_os_user_and_host(db):
    from io import StringIO

    call_command("create_user", "jsmith", "--role", "librarian", stdout=StringIO())
    call_command("create_user", "jsmith", "--role", "admin", "--keep-password", stdout=StringIO())
    events = list(AuditEvent.objects.filter(action="user_role").order_by("id"))
    assert [(e.details["user"], e.details["role"], e.details["created"]) for e in events] == [
        ("jsmith", "librarian", True),
        ("jsmith", "admin", False),
    ]
    for event in events:
        assert event.username == "cli" and not event.dry_run
        assert {key: event.details[key] for key in ORIGIN} == ORIGIN
        assert "password" not in str(event.details)


def test_preview_events_are_redacted_like_every_other_event(kaltura_sim, s3, rq_queue, settings, make_user):
    """Preview events are bulk-written, yet as audit.record writes: a Kaltura text quoting a session (here the
    parent entry id a skip reason names) is redacted, on the command line's dry run and in a batch preview."""
    from io import StringIO

    from archive_app.archive import batches

    settings.KALTURA_RETRY_DELAYS = (0.01,)
    ks = kaltura_sim.state.start_session(kaltura_sim.admin_secret, "someone", 2, kaltura_sim.partner_id, 0, "")
    old = int((datetime.now(tz=UTC) - timedelta(days=5 * 365)).timestamp())
    entry_id = kaltura_sim.state.add_entry(name="Second stream", createdAt=old)
    sync.sync_full(Kaltura.from_settings())
    # Only live state carries it (the previews read Kaltura, not the mirror, whose id columns are 32 wide).
    kaltura_sim.state.entries[entry_id]["parentEntryId"] = ks
    librarian = make_user("lib", role="librarian")

    out = StringIO()
    call_command("archive_entries", f"--id={entry_id}", "--user", "lib", stdout=out)  # dry run
    assert "secondary stream of multi-stream entry" in out.getvalue() and ks[:20] not in out.getvalue()
    batch = batches.batch_create(user=librarian, action=Batch.Action.ARCHIVE, entry_ids=[entry_id], preview=True)
    events = list(AuditEvent.objects.filter(action="preview_archive", entry_id=entry_id))
    assert len(events) == 2 and {event.batch_id for event in events} == {None, batch.pk}
    for event in events:
        assert event.outcome == AuditEvent.Outcome.SKIPPED
        assert "secondary stream of multi-stream entry" in event.message
        assert event.details["skip_reason"].startswith("secondary stream of multi-stream entry")
        assert ks[:20] not in event.message and ks[:20] not in str(event.details)
    command_event, batch_event = sorted(events, key=lambda event: event.batch_id is not None)
    assert {key: command_event.details.get(key) for key in ORIGIN} == ORIGIN
    assert "os_user" not in batch_event.details  # outside a command: no origin made up
