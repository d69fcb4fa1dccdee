"""Policies: saved filters that make batches for approval on a schedule; exemptions and excluded categories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from archive_app.archive import batches
from archive_app.lib.kaltura import Kaltura
from archive_app.mirror import selectors, sync
from archive_app.models import ArchivePolicy, AuditEvent, Batch, BatchNotice, Category, Entry, ExcludedCategory
from archive_app.scheduling import policies
from tests.policy_world import make_policy, run_jobs, tags_of

# --- pure helpers ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_filter_is_stored_normalised_and_validated():
    assert policies.normalise_filter("?unplayed_years=3&page=4&tags=&state=initial&state=archived") == (
        "state=initial&state=archived&unplayed_years=3"
    )
    with pytest.raises(selectors.InvalidSelection, match="unplayed_years"):
        policies.normalise_filter("unplayed_years=lots")
    with pytest.raises(ValueError, match="no condition"):
        policies.normalise_filter("page=2&sort=name")
    # A state or a search alone still selects most of the library.
    with pytest.raises(ValueError, match="no condition"):
        policies.normalise_filter("state=initial&q=lecture")
    # The typo: an unknown field was ignored, and the policy selected every entry.
    with pytest.raises(selectors.InvalidSelection, match="Not a filter.*'foo'"):
        policies.normalise_filter("foo=bar&&&")
    with pytest.raises(selectors.InvalidSelection, match="'unplayed_yeras'"):
        policies.normalise_filter("unplayed_yeras=3")


def test_the_next_run_follows_the_schedule_and_skips_missed_runs():
    jan31 = datetime(2026, 1, 31, 3, 0, tzinfo=UTC)
    assert policies.next_run_after(jan31, "monthly", jan31) == datetime(2026, 2, 28, 3, 0, tzinfo=UTC)
    assert policies.next_run_after(jan31, "quarterly", jan31) == datetime(2026, 4, 30, 3, 0, tzinfo=UTC)
    assert policies.next_run_after(jan31, "weekly", jan31) == jan31 + timedelta(days=7)
    # A scheduler that was down for five months makes one batch, then waits for the next slot.
    later = datetime(2026, 6, 15, tzinfo=UTC)
    assert policies.next_run_after(jan31, "monthly", later) == datetime(2026, 6, 28, 3, 0, tzinfo=UTC)


# --- the schedule -----------------------------------------------------------------------

pytestmark_db = pytest.mark.django_db(transaction=True)


@pytestmark_db
def test_a_due_policy_makes_a_draft_batch_for_approval_and_only_on_schedule(policy_world, capsys, rq_queue):
    world = policy_world
    due = make_policy(world)
    not_due = make_policy(world, name="Later", next_run_at=timezone.now() + timedelta(days=3))

    # The default is a dry run: it says what it would select and makes nothing.
    call_command("run_policies")
    out = capsys.readouterr().out
    assert "policy 'Forgotten lectures': 5 entries" in out and "dry run" in out
    assert "Later" not in out
    assert not Batch.objects.exists()
    assert AuditEvent.objects.filter(action="policy_run", dry_run=True).count() == 1

    call_command("run_policies", "--execute")
    batch = Batch.objects.get()
    assert batch.status == Batch.Status.DRAFT and batch.approved_by is None  # never an unapproved action
    assert batch.created_by.username == policies.SCHEDULER_USERNAME and not batch.created_by.is_active
    assert batch.action == "archive" and batch.filter_query == "tags=forgotten"
    assert set(batch.items.values_list("entry_id", flat=True)) == set(world.all_entries())
    # Previewed on live state, as every batch is before a librarian sees it.
    assert all(item.planned_steps for item in batch.items.all())
    assert BatchNotice.objects.get(batch=batch).notice_days == 14
    assert rq_queue.count == 0, "nothing is queued before a librarian approves"
    due.refresh_from_db()
    assert due.next_run_at > timezone.now() + timedelta(days=27) and due.last_run_at is not None

    # Run again at once: nothing is due, nothing more is made.
    call_command("run_policies", "--execute")
    assert "no policy is due" in capsys.readouterr().out
    assert Batch.objects.count() == 1
    assert not_due.batches.count() == 0

    # Another policy over the same entries leaves those already waiting in a batch to it.
    policies.policy_run(not_due, execute=True)
    assert Batch.objects.count() == 1
    batches.batch_cancel(batch, user=world.librarian)
    not_due.refresh_from_db()
    result = policies.policy_run(not_due, execute=True)
    assert result["entries"] == 5 and Batch.objects.get(pk=result["batch"]).items.count() == 5


@pytestmark_db
def test_a_policy_batch_is_capped_at_the_batch_size(policy_world, settings):
    settings.ARCHIVE_MAX_BATCH_SIZE = 3
    result = policies.policy_run(make_policy(policy_world), execute=True)
    assert result["capped"] and result["entries"] == 3
    assert Batch.objects.get().items.count() == 3


@pytestmark_db
def test_a_policy_without_notice_runs_on_approval_like_any_batch(policy_world, rq_queue):
    world = policy_world
    result = policies.policy_run(make_policy(world, notice_days=0), execute=True)
    batch = Batch.objects.get(pk=result["batch"])
    batches.batch_approve(batch, user=world.librarian)
    assert Batch.objects.get(pk=batch.pk).status == Batch.Status.RUNNING
    assert rq_queue.count == 5


@pytestmark_db
def test_a_failed_preview_discards_the_batch_and_retries_next_tick(policy_world):
    world = policy_world
    policy = make_policy(world)
    before = policy.next_run_at
    world.sim.state.inject_fault("kaltura_error", count=50, service="media", action="list", code="SERVICE_FORBIDDEN")
    result = policies.policy_run(policy, execute=True)
    assert "SERVICE_FORBIDDEN" in result["error"]
    assert Batch.objects.get().status == Batch.Status.CANCELLED
    policy.refresh_from_db()
    assert policy.next_run_at == before


# --- pages ------------------------------------------------------------------------------


@pytestmark_db
def test_librarians_create_edit_and_delete_policies(client, policy_world, make_user):
    world = policy_world
    client.force_login(world.librarian)
    response = client.get(reverse("policy_create") + "?filter=%3Ftags%3Dforgotten%26page%3D2")
    # The Entries page's filter arrives in the same filter form, filled in.
    assert 'name="filter-tags" id="id_filter-tags" value="forgotten"' in response.content.decode()
    data = {
        "name": "Old lectures",
        "filter-tags": "forgotten",
        "action": "archive_replace",
        "schedule": "quarterly",
        "notice_days": "21",
        "enabled": "on",
        "next_run_at": "2027-01-01 03:00",
        "confirm_share": "yes",  # the world's five entries are all forgotten: the whole library
    }
    response = client.post(reverse("policy_create"), data)
    assert response.status_code == 302
    policy = ArchivePolicy.objects.get()
    assert policy.filter_query == "tags=forgotten" and policy.notice_days == 21 and policy.created_by == world.librarian
    assert AuditEvent.objects.filter(action="policy_create", username="lib").exists()
    assert 'data-testid="save-policy-form"' in client.get(reverse("entry_list") + "?tags=forgotten").content.decode()
    listing = client.get(reverse("policy_list")).content.decode()
    assert "Old lectures" in listing and ">5<" in listing  # what it selects now

    bad = client.post(reverse("policy_edit", args=[policy.pk]), {**data, "filter-unplayed_years": "lots"})
    assert bad.status_code == 200 and "not valid" in bad.content.decode()
    too_long = client.post(reverse("policy_edit", args=[policy.pk]), {**data, "notice_days": "999"})
    assert "At most 365" in too_long.content.decode()
    policy.refresh_from_db()
    assert policy.filter_query == "tags=forgotten"

    assert client.get(reverse("policy_delete", args=[policy.pk])).status_code == 405
    assert client.post(reverse("policy_delete", args=[policy.pk])).status_code == 302
    assert not ArchivePolicy.objects.exists()
    assert AuditEvent.objects.filter(action="policy_delete").exists()

    client.force_login(make_user("nobody", role=None))
    assert client.get(reverse("policy_list")).status_code == 403
    assert client.post(reverse("policy_create"), data).status_code == 403
    assert client.get(reverse("exemption_list")).status_code == 403


# --- exemptions -------------------------------------------------------------------------


@pytestmark_db
def test_an_excluded_category_takes_in_its_subcategories_at_preview_and_execution(policy_world, rq_queue):
    world = policy_world
    child = Category.objects.filter(depth=1).first()
    parent = Category.objects.get(id=child.parent_id)
    state = world.sim.state
    old = int((datetime.now(tz=UTC) - timedelta(days=6 * 365)).timestamp())
    in_child = state.add_entry(name="In a sub-category", createdAt=old, category_ids=[child.id])
    sync.sync_full(Kaltura.from_settings())
    batch = batches.batch_create(user=world.librarian, action="archive", entry_ids=[in_child])
    assert not batches.batch_preview(batch, user=world.librarian)[in_child].skipped

    ExcludedCategory.objects.create(category_id=parent.id)
    again = batches.batch_create(user=world.librarian, action="archive", entry_ids=[in_child])
    plan = batches.batch_preview(again, user=world.librarian)[in_child]
    assert plan.skip_reason == f"exempt (category {child.id})"
    # The job re-reads it too: the first batch, previewed before the exclusion, skips at execution.
    batches.batch_approve(batch, user=world.librarian)
    run_jobs(rq_queue)
    item = batch.items.get()
    assert item.status == "skipped" and item.message == f"exempt (category {child.id})"


@pytestmark_db
def test_exemptions_page_manages_exempt_entries_and_excluded_categories(client, policy_world, settings):
    world = policy_world
    settings.ARCHIVE_EXEMPT_CATEGORY_IDS = []
    client.force_login(world.librarian)
    entry_id = world.entries["bob"][0]
    client.post(reverse("exemption_add"), {"entry_id": entry_id, "reason": "course still running"})
    assert "archive_exempt" in tags_of(world, entry_id) and "forgotten" in tags_of(world, entry_id)
    page = client.get(reverse("exemption_list")).content.decode()
    assert f'data-entry="{entry_id}"' in page
    event = AuditEvent.objects.get(action="exempt_entry")
    assert event.username == "lib" and event.entry_id == entry_id and event.message == "course still running"

    client.post(reverse("exemption_remove", args=[entry_id]))
    assert "archive_exempt" not in tags_of(world, entry_id)
    assert f'data-entry="{entry_id}"' not in client.get(reverse("exemption_list")).content.decode()

    response = client.post(reverse("exemption_add"), {"entry_id": "not an id"}, follow=True)
    assert "is not a Kaltura entry id" in response.content.decode()

    category = Category.objects.filter(depth=0).first()
    client.post(reverse("category_exclude"), {"category_id": category.id, "reason": "medical school"})
    assert ExcludedCategory.objects.filter(category_id=category.id).exists()
    page = client.get(reverse("exemption_list")).content.decode()
    assert f'data-category="{category.id}"' in page
    response = client.post(reverse("category_exclude"), {"category_id": "999999"}, follow=True)
    assert "no category 999999" in response.content.decode()
    client.post(reverse("category_include", args=[category.id]))
    assert not ExcludedCategory.objects.exists()
    assert client.get(reverse("category_include", args=[category.id])).status_code == 405


@pytestmark_db
def test_a_policy_filter_with_a_typo_or_no_condition_or_too_wide_is_refused(client, policy_world, settings):
    world = policy_world
    client.force_login(world.librarian)
    policy = {
        "name": "Typo",
        "action": "archive",
        "schedule": "monthly",
        "notice_days": "14",
        "next_run_at": "2027-01-01 03:00",
    }

    def refused(**filter_fields) -> str:
        response = client.post(reverse("policy_create"), {**policy, **filter_fields})
        assert response.status_code == 200 and not ArchivePolicy.objects.exists()
        return response.content.decode()

    # The typo came through the address; a tampered form field is refused the same way.
    assert (
        "Not a filter (a typo?): &#x27;foo&#x27;"
        in client.get(reverse("policy_create") + "?filter=foo%3Dbar%26%26%26").content.decode()
    )
    assert "Not a filter (a typo?): &#x27;foo&#x27;" in refused(**{"filter-foo": "bar", "filter-tags": "forgotten"})
    assert "no condition of age, plays, category, tag or ids" in refused()
    assert "no condition" in refused(**{"filter-state": "initial"})
    # The five forgotten entries: just above the share, so saving needs the tick; one entry does not.
    library = Entry.objects.filter(gone=False).count()
    settings.ARCHIVE_POLICY_MAX_SHARE = 4.5 / library
    page = refused(**{"filter-tags": "forgotten"})
    assert f"selects 5 of the library&#x27;s {library:,} entries" in page and 'name="confirm_share"' in page
    one = world.entries["alice"][0]
    assert client.post(reverse("policy_create"), {**policy, "filter-ids": one}).status_code == 302
    assert ArchivePolicy.objects.get().filter_query == f"ids={one}"


@pytestmark_db
def test_a_stored_policy_with_a_typo_or_no_condition_makes_no_batch(policy_world):
    """Saved before the form refused them: the scheduler reports the filter instead of selecting everything."""
    for query in ("foo=bar", "state=initial"):
        result = policies.policy_run(make_policy(policy_world, name=query, filter_query=query), execute=True)
        assert "no longer valid" in result["error"] and "batch" not in result
    assert not Batch.objects.exists()
