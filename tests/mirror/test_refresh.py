"""sync.refresh_entries: a job's entry read from Kaltura again when it finishes, and never a job's failure."""

from __future__ import annotations

import pytest

from archive_app.lib.kaltura import Kaltura
from archive_app.mirror import sync
from archive_app.models import Entry, Flavor

pytestmark = pytest.mark.django_db(transaction=True)


def test_refresh_reads_entries_and_flavors_and_marks_deleted_ones_gone(kaltura_sim):
    state = kaltura_sim.state
    kept, vanished = state.add_entry(name="Before"), state.add_entry(name="Doomed")
    sync.sync_full(Kaltura.from_settings())
    state.set_tags(kept, "archived_to_s3")
    state.delete_entry(vanished)
    assert sync.refresh_entries([kept, vanished], Kaltura.from_settings()) == 2
    assert Entry.objects.get(pk=kept).archive_state == "archived" and Entry.objects.get(pk=vanished).gone
    live = {flavor.id for flavor in Kaltura.from_settings().flavors(kept)}
    assert set(Flavor.objects.filter(entry_id=kept).values_list("id", flat=True)) == live


def test_a_refresh_that_cannot_reach_kaltura_is_logged_and_changes_nothing(kaltura_sim, settings, caplog):
    entry_id = kaltura_sim.state.add_entry(name="Before")
    sync.sync_full(Kaltura.from_settings())
    settings.KALTURA_PARTNERID = None  # not configured: the job that calls it must not fail for the mirror's sake
    assert sync.refresh_entries([entry_id]) == 0
    assert "could not refresh the mirror" in caplog.text
    assert Entry.objects.get(pk=entry_id).name == "Before"
