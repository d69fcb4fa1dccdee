"""Owner notices: one e-mail per owner, signed keep links, and the batch running after the notice period."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import signing
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from archive_app.archive import batches
from archive_app.models import ArchiveCopy, AuditEvent, Batch, BatchItem, BatchNotice, OwnerNotice
from archive_app.scheduling import notices, policies
from tests.policy_world import keep_token_from, keep_with_link, make_policy, open_keep_link, run_jobs, tags_of

pytestmark = pytest.mark.django_db(transaction=True)


def approved_policy_batch(world, rq_queue, settings, **policy_fields) -> Batch:
    """A policy's batch, approved by a librarian, with the notices sent by the real worker."""
    result = policies.policy_run(make_policy(world, **policy_fields), execute=True)
    batch = Batch.objects.get(pk=result["batch"])
    batches.batch_approve(batch, user=world.librarian)
    run_jobs(rq_queue)
    return Batch.objects.get(pk=batch.pk)


def message_to(mailoutbox, address):
    [message] = [m for m in mailoutbox if m.to == [address]]
    return message


def test_owners_get_exactly_one_message_each_listing_their_entries(policy_world, rq_queue, settings, mailoutbox):
    world = policy_world
    batch = approved_policy_batch(world, rq_queue, settings)
    # Held: approved, but nothing queued to run until the notice period ends.
    assert batch.status == Batch.Status.APPROVED
    assert set(batch.items.values_list("status", flat=True)) == {"pending"}
    notice = BatchNotice.objects.get(batch=batch)
    assert notice.notices_sent_at is not None
    assert timedelta(days=13, hours=23) < notice.runs_after - timezone.now() <= timedelta(days=14)

    assert sorted(m.to[0] for m in mailoutbox) == ["alice@example.edu", "bob@example.edu"]
    alice, bob = message_to(mailoutbox, "alice@example.edu"), message_to(mailoutbox, "bob@example.edu")
    for entry_id in world.entries["alice"]:
        assert entry_id in alice.body and entry_id not in bob.body
    assert world.entries["bob"][0] in bob.body and world.entries["bob"][0] not in alice.body
    assert "2 of your Kaltura videos will be archived on" in alice.subject
    assert f"{timezone.localtime(notice.runs_after):%d %B %Y}" in alice.subject
    assert "the video, its link and embeds keep working" in alice.body
    assert "/keep/#" in alice.body and keep_token_from(alice) != keep_token_from(bob)

    # Owners without an address are recorded, and shown on the batch page.
    statuses = dict(OwnerNotice.objects.filter(batch=batch).values_list("owner_id", "status"))
    assert statuses == {"alice": "sent", "bob": "sent", "carol": "missing", "ghost": "missing"}
    assert AuditEvent.objects.filter(action="owner_notice", batch=batch, outcome="ok").count() == 2

    # Rerunning the job (a retry, a second worker, the scheduler's resend) sends nothing twice.
    notices.send_notices(batch.pk)
    notices.enqueue_send_notices(batch.pk)
    run_jobs(rq_queue)
    call_command("run_policies", "--execute")
    assert len(mailoutbox) == 2

    client = Client()
    client.force_login(world.librarian)
    page = client.get(reverse("batch_detail", args=[batch.pk])).content.decode()
    assert 'data-testid="unreached-owners"' in page
    assert "no Kaltura user ghost" in page and "the Kaltura user has no e-mail address" in page


def test_archive_and_replace_notice_explains_the_placeholder(policy_world, rq_queue, settings, mailoutbox):
    approved_policy_batch(policy_world, rq_queue, settings, action="archive_replace")
    body = message_to(mailoutbox, "bob@example.edu").body
    assert "link, embeds, captions and categories keep working" in body
    assert "the original comes back within a day" in body


def test_an_address_that_is_no_address_is_recorded_as_missing(policy_world, rq_queue, settings, mailoutbox):
    policy_world.sim.state.add_user("bob", email="bob@@nowhere")
    batch = approved_policy_batch(policy_world, rq_queue, settings)
    bob = OwnerNotice.objects.get(batch=batch, owner_id="bob")
    assert bob.status == "missing" and "not an e-mail address" in bob.error
    assert [m.to for m in mailoutbox] == [["alice@example.edu"]]


def test_over_smtp_a_refused_address_is_recorded_and_a_down_server_is_retried(policy_world, rq_queue, settings):
    from tests.services import free_port
    from tests.smtp_server import SMTPServer

    world = policy_world
    world.sim.state.add_user("bob", email="bob@bounce.example.edu")
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 5
    # The mail server is down when the notices first go out: nothing is lost, the period has not started.
    result = policies.policy_run(make_policy(world), execute=True)
    batch = Batch.objects.get(pk=result["batch"])
    batches.batch_approve(batch, user=world.librarian)
    with pytest.raises(notices.NoticeError, match="mail server"):
        notices.send_notices(batch.pk)
    assert OwnerNotice.objects.get(batch=batch, owner_id="alice").status == "pending"
    assert BatchNotice.objects.get(pk=batch.pk).notices_sent_at is None
    assert notices.resend_unfinished() == [batch.pk]

    # Days later the server is back: nobody has been told a date yet, so the period starts now.
    BatchNotice.objects.filter(pk=batch.pk).update(runs_after=timezone.now() - timedelta(days=1))
    server = SMTPServer()
    try:
        settings.EMAIL_PORT = server.port
        notices.send_notices(batch.pk)
    finally:
        server.stop()
    assert [recipients for recipients, _ in server.messages] == [["alice@example.edu"]]
    bob = OwnerNotice.objects.get(batch=batch, owner_id="bob")
    assert bob.status == "refused" and "bob@bounce.example.edu" in bob.error
    notice = BatchNotice.objects.get(pk=batch.pk)
    assert notice.notices_sent_at is not None
    assert notice.runs_after > timezone.now() + timedelta(days=13)
    client = Client()
    client.force_login(world.librarian)
    page = client.get(reverse("batch_detail", args=[batch.pk])).content.decode()
    assert "address refused (bounced)" in page and "bob@bounce.example.edu" in page


def test_the_keep_link_exempts_only_that_owners_entries_once(client, policy_world, rq_queue, settings, mailoutbox):
    world = policy_world
    batch = approved_policy_batch(world, rq_queue, settings)
    token = keep_token_from(message_to(mailoutbox, "alice@example.edu"))
    alice_first, alice_second = world.entries["alice"]
    bobs = world.entries["bob"][0]

    assert client.get("/keep/").status_code == 200  # the page the link opens: it holds no token
    page = open_keep_link(client, token)  # no sign-in
    assert page.status_code == 200
    text = page.content.decode()
    assert alice_first in text and alice_second in text and bobs not in text
    assert f'name="token" value="{token}"' in text  # the form posts it on; it never becomes an address

    # Asking for nothing changes nothing and leaves the link usable.
    assert "Nothing was changed" in keep_with_link(client, token, []).content.decode()
    # An entry handed to someone else since the notice is no longer alice's to keep; bob's never was.
    world.sim.state.entries[alice_second]["userId"] = "bob"
    response = keep_with_link(client, token, [alice_first, alice_second, bobs])
    assert response.status_code == 200 and "Kept 1 video" in response.content.decode()
    assert "archive_exempt" in tags_of(world, alice_first)
    assert "archive_exempt" not in tags_of(world, alice_second) and "archive_exempt" not in tags_of(world, bobs)
    items = dict(batch.items.values_list("entry_id", "status"))
    assert items[alice_first] == "skipped" and items[alice_second] == "pending" and items[bobs] == "pending"
    event = AuditEvent.objects.get(action="owner_keep")
    assert event.username == "owner:alice" and event.entry_id == alice_first and event.batch_id == batch.pk
    assert AuditEvent.objects.get(action="exempt_entry").username == "owner:alice"

    # The link has done its work: it shows what was kept, and keeps nothing more.
    world.sim.state.entries[alice_second]["userId"] = "alice"
    again = open_keep_link(client, token).content.decode()
    assert 'data-testid="kept"' in again and 'data-testid="keep-used"' in again and 'type="checkbox"' not in again
    refused = keep_with_link(client, token, [alice_second])
    assert refused.status_code == 410 and "used already" in refused.content.decode()
    assert "archive_exempt" not in tags_of(world, alice_second)
    assert AuditEvent.objects.filter(action="owner_keep").count() == 1
    # The CSRF check stands, as on every form.
    assert Client(enforce_csrf_checks=True).post("/keep/", {"token": token}).status_code == 403


def test_the_keep_link_expires_with_the_notice_period(client, policy_world, rq_queue, settings, mailoutbox):
    world = policy_world
    batch = approved_policy_batch(world, rq_queue, settings)
    token = keep_token_from(message_to(mailoutbox, "alice@example.edu"))
    BatchNotice.objects.filter(pk=batch.pk).update(runs_after=timezone.now() - timedelta(seconds=1))
    expired = open_keep_link(client, token)
    assert expired.status_code == 410 and "expired" in expired.content.decode()
    assert keep_with_link(client, token, world.entries["alice"]).status_code == 410
    assert all("archive_exempt" not in tags_of(world, entry_id) for entry_id in world.all_entries())


def test_the_keep_link_expires_after_its_maximum_age(client, policy_world, rq_queue, settings, mailoutbox):
    """Even when the notice period is longer (the policy's is 14 days here)."""
    world = policy_world
    settings.ARCHIVE_KEEP_LINK_MAX_DAYS = 3
    batch = approved_policy_batch(world, rq_queue, settings)
    message = message_to(mailoutbox, "alice@example.edu")
    token = keep_token_from(message)
    until = timezone.localtime(timezone.now() + timedelta(days=3))
    assert f"open this link before {until.day} {until:%B %Y}" in message.body
    assert notices.read_keep_token(token, now=timezone.now() + timedelta(days=2)) == (batch.pk, "alice")
    with pytest.raises(notices.KeepLinkExpired):
        notices.read_keep_token(token, now=timezone.now() + timedelta(days=3, minutes=1))
    assert notices.keep_window_open(BatchNotice.objects.get(pk=batch.pk), now=timezone.now() + timedelta(days=4))
    # As the page sees it: a link whose end has passed is refused, whatever the batch.
    past = notices.keep_token(batch.pk, "alice", timezone.now() - timedelta(seconds=1))
    assert open_keep_link(client, past).status_code == 410
    assert keep_with_link(client, past, world.entries["alice"]).status_code == 410
    assert not OwnerNotice.objects.exclude(keep_used_at=None).exists()


def test_a_forged_or_altered_link_is_refused(client, policy_world, rq_queue, settings, mailoutbox):
    world = policy_world
    batch = approved_policy_batch(world, rq_queue, settings)
    token = keep_token_from(message_to(mailoutbox, "alice@example.edu"))

    altered = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    # The payload changed to bob's, keeping alice's signature.
    payload, _, signature = token.rpartition(":")
    far = int((timezone.now() + timedelta(days=30)).timestamp())
    bobs = {"b": batch.pk, "o": "bob", "x": far}
    bobs_payload = signing.dumps(bobs, salt=notices.KEEP_SALT, compress=True).rpartition(":")
    swapped = f"{bobs_payload[0]}:{signature}"
    forged = signing.dumps(bobs, key="not-the-secret-key", salt=notices.KEEP_SALT)
    other_salt = signing.dumps(bobs, salt="something.else")
    no_expiry = signing.dumps({"b": batch.pk, "o": "bob"}, salt=notices.KEEP_SALT, compress=True)  # the old links'
    for bad in (altered, swapped, forged, other_salt, no_expiry, "nonsense", token[:20], ""):
        response = open_keep_link(client, bad)
        assert response.status_code == 400, bad
        assert "not valid" in response.content.decode()
        assert keep_with_link(client, bad, world.entries["bob"]).status_code == 400
    assert not AuditEvent.objects.filter(action="owner_keep").exists()
    assert all("archive_exempt" not in tags_of(world, e) for e in world.all_entries())
    # A genuine signature for an owner who got no notice for this batch finds nothing.
    stranger = notices.keep_token(batch.pk, "mallory", timezone.now() + timedelta(days=1))
    assert open_keep_link(client, stranger).status_code == 404


def test_the_batch_runs_after_the_notice_period_without_the_kept_entries(
    client, policy_world, rq_queue, settings, mailoutbox, capsys
):
    world = policy_world
    batch = approved_policy_batch(world, rq_queue, settings)
    kept = world.entries["alice"][0]
    keep_with_link(client, keep_token_from(message_to(mailoutbox, "alice@example.edu")), [kept])
    # A librarian exempts another entry by hand during the period: the fresh preview drops it too.
    world.sim.state.set_tags(world.entries["bob"][0], "forgotten, archive_exempt")

    # Not yet: the scheduler leaves it alone while the period lasts.
    call_command("run_policies", "--execute")
    assert Batch.objects.get(pk=batch.pk).status == Batch.Status.APPROVED
    assert rq_queue.count == 0

    BatchNotice.objects.filter(pk=batch.pk).update(runs_after=timezone.now() - timedelta(seconds=1))
    call_command("run_policies")  # the dry run names it and changes nothing
    assert "notice period over; would be previewed and queued" in capsys.readouterr().out
    assert Batch.objects.get(pk=batch.pk).status == Batch.Status.APPROVED

    call_command("run_policies", "--execute")
    assert f"batch {batch.pk}: notice period over; 3 entries queued" in capsys.readouterr().out
    run_jobs(rq_queue)

    archived = set(ArchiveCopy.objects.values_list("entry_id", flat=True))
    expected = set(world.all_entries()) - {kept, world.entries["bob"][0]}
    assert archived == expected
    for entry_id in expected:
        assert "archived_to_s3" in tags_of(world, entry_id)
    assert "archived_to_s3" not in tags_of(world, kept)
    items = {item.entry_id: item for item in BatchItem.objects.filter(batch=batch)}
    assert items[kept].status == "skipped" and items[kept].skip_reason == notices.KEPT_REASON
    assert items[world.entries["bob"][0]].skip_reason == "exempt (tag archive_exempt)"
    assert Batch.objects.get(pk=batch.pk).status == Batch.Status.DONE
    assert BatchNotice.objects.get(pk=batch.pk).released_at is not None
    assert AuditEvent.objects.filter(action="batch_release", batch=batch, dry_run=False).count() == 1

    # Released once only.
    call_command("run_policies", "--execute")
    assert AuditEvent.objects.filter(action="batch_release", batch=batch, dry_run=False).count() == 1


def test_cancelling_a_held_batch_stops_it_and_its_links(client, policy_world, rq_queue, settings, mailoutbox):
    world = policy_world
    batch = approved_policy_batch(world, rq_queue, settings)
    batches.batch_cancel(batch, user=world.librarian)
    assert Batch.objects.get(pk=batch.pk).status == Batch.Status.CANCELLED
    assert open_keep_link(client, keep_token_from(message_to(mailoutbox, "alice@example.edu"))).status_code == 410
    BatchNotice.objects.filter(pk=batch.pk).update(runs_after=timezone.now() - timedelta(seconds=1))
    call_command("run_policies", "--execute")
    assert rq_queue.count == 0 and not ArchiveCopy.objects.exists()


@pytest.mark.browser
def test_an_owner_follows_the_keep_link_from_the_email_and_keeps_a_video(
    page, live_server, policy_world, rq_queue, settings, mailoutbox
):
    world = policy_world
    settings.ARCHIVE_SITE_URL = live_server.url
    approved_policy_batch(world, rq_queue, settings)
    message = message_to(mailoutbox, "alice@example.edu")
    link = next(word for word in message.body.split() if word.startswith(live_server.url + "/keep/"))
    wanted, other = world.entries["alice"]

    token = link.split("#", 1)[1]
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(link)  # straight from the e-mail, not signed in
    page.wait_for_selector("[data-testid=keep-form]")
    assert page.locator("[data-testid=signed-in-user]").count() == 0
    page.check(f"#keep-{wanted}")
    page.click("text=Keep the ticked videos")
    page.wait_for_selector(f"tr[data-entry='{wanted}'] [data-testid=kept]")
    assert page.locator(f"tr[data-entry='{other}'] input[type=checkbox]").count() == 0  # the link works once
    assert "Kept 1 video" in page.content()
    # The token went in request bodies only: no address the server (or its access log) saw holds it.
    assert requested and not [url for url in requested if token in url]
    assert token not in page.url and page.evaluate("window.location.hash") == ""
    assert "archive_exempt" in tags_of(world, wanted) and "archive_exempt" not in tags_of(world, other)


def test_a_second_approval_is_needed_before_owners_are_warned(policy_world, rq_queue, settings, make_user, mailoutbox):
    world = policy_world
    settings.ARCHIVE_REQUIRE_SECOND_APPROVAL = True
    batch = Batch.objects.get(pk=policies.policy_run(make_policy(world), execute=True)["batch"])
    client = Client()
    client.force_login(world.librarian)
    page = client.get(reverse("batch_detail", args=[batch.pk])).content.decode()
    assert "Approve: warn the owners, run 5 entries in 14 days" in page
    batches.batch_approve(batch, user=world.librarian)
    run_jobs(rq_queue)
    assert not mailoutbox and Batch.objects.get(pk=batch.pk).status == Batch.Status.DRAFT
    batches.batch_approve(batch, user=make_user("second", "librarian"))
    run_jobs(rq_queue)
    assert len(mailoutbox) == 2 and Batch.objects.get(pk=batch.pk).status == Batch.Status.APPROVED


def test_email_settings_come_from_the_environment(tmp_path):
    from tests.test_foundation import run_manage

    password = tmp_path / "smtp-password"
    password.write_text("s3cret-smtp-password\n")
    script = (
        "from django.conf import settings as s; "
        "print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_USE_TLS, s.EMAIL_HOST_PASSWORD, "
        "s.DEFAULT_FROM_EMAIL)"
    )
    env = {
        "DJANGO_SECRET_KEY": "x" * 60,
        "EMAIL_HOST": "smtp.example.edu",
        "EMAIL_PORT": "587",
        "EMAIL_USE_TLS": "1",
        "EMAIL_HOST_PASSWORD_FILE": str(password),
        "DEFAULT_FROM_EMAIL": "archive@example.edu",
    }
    result = run_manage("shell", "--no-imports", "-c", script, env=env)
    assert result.stdout.split() == [
        "django.core.mail.backends.smtp.EmailBackend",
        "smtp.example.edu",
        "587",
        "True",
        "s3cret-smtp-password",
        "archive@example.edu",
    ]
    debug = run_manage("shell", "--no-imports", "-c", script, env={"DJANGO_DEBUG": "1"})
    assert debug.stdout.startswith("django.core.mail.backends.console.EmailBackend")
    both = run_manage("check", env={**env, "EMAIL_USE_SSL": "1"})
    assert both.returncode != 0 and "EMAIL_USE_TLS or EMAIL_USE_SSL, not both" in both.stderr
