"""The preservation report page and CSV (issue 15), on copies audited through the real fixity audit."""

from __future__ import annotations

import csv
import io

import pytest
from django.conf import settings
from django.urls import reverse

from archive_app.archive import fixity
from tests.archive.test_fixity import archive, world  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_report_counts_copies_checks_and_failures_per_class_and_gives_ndsa_levels(world, rq_queue, s3, client):  # noqa: F811
    copies = archive(world, rq_queue, 3)
    s3.delete_object(Bucket=settings.AWS_BUCKET, Key=copies[0].key, VersionId=copies[0].version_id)
    fixity.audit_fixity(execute=True)
    client.force_login(world[1])  # a librarian
    page = client.get(reverse("preservation_report")).content.decode()
    assert 'data-testid="class-STANDARD"' in page and "Integrity (fixity)" in page

    response = client.get(reverse("preservation_export"))
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    header, standard = rows[0], dict(zip(rows[0], rows[1], strict=True))
    assert header[0] == "storage_class" and standard["storage_class"] == "STANDARD"
    assert (standard["copies"], standard["audited"], standard["passed"], standard["failed"]) == ("3", "3", "2", "1")
    assert int(standard["bytes"]) == sum(copy.size_bytes for copy in copies)
    assert standard["rehashed_in_period"] == "3"  # just archived: the stream's hash is within the period
    ndsa = {row[0]: row for row in rows if row and row[0] in ("Storage", "Integrity (fixity)", "Metadata")}
    # A failed check keeps integrity below level 4, and the report says what is missing.
    assert int(ndsa["Integrity (fixity)"][1]) == 3 and "1 failed" in ndsa["Integrity (fixity)"][3]
    assert ndsa["Storage"][3]  # one copy only once replaced: always something missing
    # Every copy has its sidecar (the entry's metadata, captions, thumbnail): what the content is travels with it.
    assert int(ndsa["Metadata"][1]) == 2 and "sidecar" in ndsa["Metadata"][2]


def test_copies_without_a_sidecar_keep_metadata_at_level_one(world, rq_queue, client):  # noqa: F811
    from archive_app.models import ArchiveCopy

    archive(world, rq_queue, 2)
    ArchiveCopy.objects.filter(pk=ArchiveCopy.objects.first().pk).update(sidecar_key="", sidecar_version_id="")
    client.force_login(world[1])
    rows = list(csv.reader(io.StringIO(client.get(reverse("preservation_export")).content.decode())))
    metadata = next(row for row in rows if row and row[0] == "Metadata")
    assert metadata[1] == "1" and "1 of 2 copies have no sidecar" in metadata[3]


def test_never_audited_copies_keep_integrity_at_level_two(world, rq_queue, client):  # noqa: F811
    archive(world, rq_queue, 1)
    client.force_login(world[2])
    rows = list(csv.reader(io.StringIO(client.get(reverse("preservation_export")).content.decode())))
    integrity = next(row for row in rows if row and row[0] == "Integrity (fixity)")
    assert integrity[1] == "2" and "not audited" in integrity[3]
