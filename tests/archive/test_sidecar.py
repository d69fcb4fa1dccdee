"""Self-describing copies (issue 15): the sidecar beside each copy round-trips the entry as Kaltura had it at
archive time (simulator through the real client, moto's S3, a real worker), is versioned, and is never
overwritten."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.urls import reverse

from archive_app.archive.sidecar import NOT_INCLUDED, SCHEMA, read_sidecar, sidecar_key
from archive_app.lib.kaltura import Kaltura
from archive_app.lib.storage import ArchiveStore
from archive_app.mirror import sync
from archive_app.models import ArchiveCopy, Batch, BatchItem, Category
from tests.archive.test_custody import OLD, owner_replaces, run_batch
from tests.archive.test_fixity import world  # noqa: F401  (the fixture: a versioned bucket)

pytestmark = pytest.mark.django_db(transaction=True)
RIGHTS_XSD = (
    '<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema"><xsd:element name="metadata"><xsd:complexType>'
    '<xsd:sequence><xsd:element name="License" type="xsd:string"/></xsd:sequence></xsd:complexType>'
    "</xsd:element></xsd:schema>"
)


def _iso(epoch) -> str | None:
    return datetime.fromtimestamp(int(epoch), tz=UTC).isoformat() if epoch else None


def test_the_sidecar_round_trips_the_entry_at_archive_time(world, rq_queue, s3):  # noqa: F811
    sim, librarian, _ = world
    # Two categories, one deep in the tree: the sidecar names each by its full path.
    deepest = max(sim.state.categories.values(), key=lambda category: category["fullIds"].count(">"))
    category_ids = [next(iter(sim.state.categories)), deepest["id"]]
    owner, editor, publisher = sorted(sim.state.users)[:3]
    entry_id = sim.state.add_entry(
        name="Lecture on fixity",
        description="Why bits rot.\nAnd how.",
        createdAt=OLD,
        tags="history, preservation",
        plays=7,
        duration=3600,
        category_ids=category_ids,
        userId=owner,
        entitledUsersEdit=f"{editor},{publisher}",
        entitledUsersPublish=publisher,
    )
    # Custom metadata of two profiles: the generated course schema and one of the partner's own.
    course = next(p for p in sim.state.metadata_profiles.values() if p["systemName"] == "CourseInfo")
    rights = sim.state.add_metadata_profile("Rights", "RightsInfo", RIGHTS_XSD)
    sim.state.set_metadata(course["id"], entry_id, "<metadata><CourseCode>HIS 210</CourseCode></metadata>")
    sim.state.set_metadata(rights, entry_id, "<metadata><License>CC BY &amp; NC</License></metadata>")
    sync.sync_full(Kaltura.from_settings())
    at_archive = dict(sim.state.get_entry(entry_id))
    metadata_then = [dict(m) for m in sim.state.entry_metadata(entry_id)]
    flavors_then = Kaltura.from_settings().flavors(entry_id)
    run_batch(sim, rq_queue, librarian, Batch.Action.ARCHIVE, [entry_id])
    copy = ArchiveCopy.objects.get(entry_id=entry_id)
    assert copy.sidecar_key == sidecar_key(copy.key) and copy.sidecar_version_id

    document = read_sidecar(ArchiveStore.from_settings(), copy)
    assert document["schema"] == SCHEMA and document["not_included"] == NOT_INCLUDED
    entry = document["entry"]
    assert entry["id"] == entry_id
    assert entry["name"] == at_archive["name"] and entry["description"] == at_archive["description"]
    assert entry["tags"] == [t.strip() for t in at_archive["tags"].split(",") if t.strip()]
    assert entry["owner_id"] == at_archive.get("userId", "") and entry["creator_id"] == at_archive.get("creatorId", "")
    assert entry["owner_id"] == owner
    assert entry["co_editors"] == at_archive["entitledUsersEdit"].split(",") == [editor, publisher]
    assert entry["co_publishers"] == at_archive["entitledUsersPublish"].split(",") == [publisher]
    assert entry["co_viewers"] == []
    custom = document["custom_metadata"]
    assert custom["available"] is True and custom["missing"] == ""
    assert [(v["id"], v["profile_id"], v["version"], v["xml"]) for v in custom["values"]] == [
        (m["id"], m["metadataProfileId"], m["version"], m["xml"]) for m in metadata_then
    ]
    assert [v["profile_system_name"] for v in custom["values"]] == ["CourseInfo", "RightsInfo"]
    profiles = {p["id"]: p for p in custom["profiles"]}
    assert profiles[rights]["xsd"] == RIGHTS_XSD and profiles[course["id"]]["xsd"] == course["xsd"]
    assert profiles[rights]["name"] == "Rights" and set(profiles) == {course["id"], rights}
    assert entry["created_at"] == _iso(at_archive["createdAt"])
    assert entry["last_played_at"] == _iso(at_archive.get("lastPlayedAt"))
    assert entry["plays"] == int(at_archive.get("plays") or 0) == 7
    assert entry["duration"] == int(at_archive.get("duration") or 0)
    wanted = [int(c) for c in str(at_archive.get("categoriesIds") or "").split(",") if c.strip()]
    assert [c["id"] for c in entry["categories"]] == wanted and len(wanted) == 2
    assert ">" in entry["categories"][1]["full_name"]
    for category in entry["categories"]:
        assert category["full_name"] == Category.objects.get(id=category["id"]).full_name
    assert [f["id"] for f in document["flavors"]] == [f.id for f in flavors_then]
    assert [f["bytes"] for f in document["flavors"]] == [f.size_bytes for f in flavors_then]
    original = document["original"]
    assert (original["key"], original["version_id"], original["sha256"], original["bytes"]) == (
        copy.key,
        copy.version_id,
        copy.sha256,
        copy.size_bytes,
    )

    # Stored beside the copy, readable without a restore, and never written over.
    head = s3.head_object(Bucket=settings.AWS_BUCKET, Key=copy.sidecar_key)
    assert head["ContentType"] == "application/json" and head.get("StorageClass", "STANDARD") == "STANDARD"
    with pytest.raises(s3.exceptions.ClientError):
        s3.put_object(Bucket=settings.AWS_BUCKET, Key=copy.sidecar_key, Body=b"{}", IfNoneMatch="*")
    # The sidecar is not taken for an entry's archive object by the bucket listing.
    assert set(ArchiveStore.from_settings().list_objects()) == {entry_id}


def test_new_content_gets_its_own_sidecar_and_the_first_one_stays(world, rq_queue, s3, client):  # noqa: F811
    sim, librarian, _ = world
    entry_id = sim.state.add_entry(name="First name", createdAt=OLD)
    sync.sync_full(Kaltura.from_settings())
    run_batch(sim, rq_queue, librarian, Batch.Action.ARCHIVE, [entry_id])
    first = ArchiveCopy.objects.get(entry_id=entry_id)
    owner_replaces(sim, entry_id, b"new lecture bytes " * 500)
    sync.sync_full(Kaltura.from_settings())
    run_batch(sim, rq_queue, librarian, Batch.Action.ARCHIVE, [entry_id])
    second = ArchiveCopy.objects.filter(entry_id=entry_id).exclude(id=first.id).get()
    store = ArchiveStore.from_settings()
    assert second.sidecar_key != first.sidecar_key
    assert read_sidecar(store, first)["original"]["sha256"] == first.sha256
    assert read_sidecar(store, second)["original"]["sha256"] == second.sha256
    versions = s3.list_object_versions(Bucket=settings.AWS_BUCKET, Prefix=first.sidecar_key)["Versions"]
    assert [v["VersionId"] for v in versions if v["Key"] == first.sidecar_key] == [first.sidecar_version_id]
    json.dumps(read_sidecar(store, second))  # plain JSON all through

    # The entry page lists both S3 copies, newest first, each with its version and its sidecar.
    client.force_login(librarian)
    page = client.get(reverse("entry_detail", args=[entry_id])).content.decode()
    table = page[page.index('data-testid="archive-copies"') :]
    rows = table.split('data-testid="archive-copy-row"')[1:]
    assert len(rows) == 2 and "Every S3 copy of this entry (2)" in page
    for row, copy in zip(rows, (second, first), strict=True):
        assert f"s3://{copy.bucket}/{copy.key}</code>" in row and copy.version_id in row
        assert copy.sha256 in row and copy.sidecar_key in row and f"flavor <code>{copy.flavor_id}</code>" in row


def test_a_partner_without_the_metadata_plugin_still_archives_and_the_sidecar_says_so(world, rq_queue, s3):  # noqa: F811
    sim, librarian, _ = world
    described = sim.state.add_entry(name="Plain lecture", createdAt=OLD)
    sync.sync_full(Kaltura.from_settings())
    run_batch(sim, rq_queue, librarian, Batch.Action.ARCHIVE, [described])
    store = ArchiveStore.from_settings()
    plain = read_sidecar(store, ArchiveCopy.objects.get(entry_id=described))["custom_metadata"]
    # The plugin answered: this entry has no custom metadata.
    assert (plain["available"], plain["values"], plain["profiles"]) == (True, [], [])

    sim.state.metadata_plugin = False
    entry_id = sim.state.add_entry(name="Lecture of a partner without the plugin", createdAt=OLD)
    sync.sync_full(Kaltura.from_settings())
    batch = run_batch(sim, rq_queue, librarian, Batch.Action.ARCHIVE, [entry_id])
    assert [item.status for item in batch.items.all()] == [BatchItem.Status.DONE]
    copy = ArchiveCopy.objects.get(entry_id=entry_id)
    custom = read_sidecar(store, copy)["custom_metadata"]
    # Not available is not "none": the reader is told why, in Kaltura's words.
    assert custom["available"] is False and custom["values"] is None and custom["profiles"] is None
    assert "FEATURE_FORBIDDEN" in custom["missing"] and "[metadata] is forbidden" in custom["missing"]
    assert sim.state.subrequest_counters["metadata_metadata.list"] >= 1  # asked through the plugin, and refused
