"""One vocabulary for steps: every step the jobs run has a plain label; an unknown one still reads as words."""

from __future__ import annotations

import pytest
from django.urls import reverse

from archive_app.archive import batches, restores
from archive_app.web import wording


def test_every_step_the_jobs_run_has_a_plain_label():
    for name in [*batches.STEPS, *restores.STEPS]:
        assert name in wording.STEP_LABELS, f"step {name!r} has no label in archive_app/web/wording.py"
        assert "_" not in wording.step_label(name)


def test_labels_carry_the_sizes_of_their_step():
    assert wording.step_label("copy", copy_bytes=int(1.2 * 1024**3)) == "Copy original to S3 (1.2\xa0GB)"
    assert wording.step_label("copy") == "Copy original to S3"  # no size known: no "(0 bytes)"
    assert wording.step_label("tag_replaced", freed_bytes=5 * 1024**2) == "Tag it replaced (5.0\xa0MB freed)"
    assert wording.step_label("replace_content", copy_bytes=10) == "Swap in the placeholder"
    assert wording.plan_labels(["copy", "verify"], copy_bytes=2048) == [
        "Copy original to S3 (2.0\xa0KB)",
        "Check the copy (size and SHA-256)",
    ]


def test_an_unknown_name_reads_as_its_words():
    assert wording.step_label("skip_tiny_images") == "Skip tiny images"
    assert wording.action_label("policy_run") == "Policy run"
    assert wording.action_label("copy") == "Copy original to S3"
    assert wording.action_label("preview_archive_replace") == "Preview: archive and replace"


@pytest.mark.django_db
def test_the_audit_log_and_restores_show_names_beside_ids_and_plain_actions(client, make_user):
    from archive_app import audit
    from archive_app.models import Restore
    from tests.factories import make_entry

    make_entry("1_named001", name="Organic chemistry, week 3")
    audit.record("tag_archived", entry_id="1_named001", dry_run=False)
    Restore.objects.create(entry_id="1_named001", status=Restore.Status.FAILED, error="no copy")
    client.force_login(make_user("boss", role="admin"))
    log = client.get(reverse("audit_log")).content.decode()
    assert "Organic chemistry, week 3" in log
    assert 'Tag it archived <code class="small text-muted">tag_archived</code>' in log
    restores_page = client.get(reverse("restore_list")).content.decode()
    assert "1_named001</a> <span>Organic chemistry, week 3</span>" in restores_page
