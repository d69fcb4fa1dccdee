"""Self-describing copies (issue 15): the sidecar beside each copy round-trips the entry as Kaltura had it at
archive time (simulator through the real client, moto's S3, a real worker), is versioned, and is never
overwritten."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.conf import settings

from archive_app.archive.sidecar import NOT_INCLUDED, SCHEMA, read_sidecar, sidecar_key
from archive_app.lib.kaltura import Kaltura
from archive_app.lib.storage import ArchiveStore
from archive_app.mirror import sync
from archive_app.models import ArchiveCopy, Batch, Category
from tests.archive.test_custody import OLD, owner_replaces, run_batch
from tests.archive.test_fixity import world  # noqa: F401  (the fixture: a versioned bucket)

pytestmark = pytest.mark.django_db(transaction=True)


def _iso(epoch) -> str | None:
    return datetime.fromtimestamp(int(epoch), tz=UTC).isoformat() if epoch else None


def test_the_sidecar_round_trips_the_entry_at_archive_time(world, rq_queue, s3):  # noqa: F811
    sim, librarian, _ = world
    # Two categories, one deep in the tree: the sidecar names each by its full path.
    deepest = max(sim.state.categories.values(), key=lambda category: category["fullIds"].count(">"))
    category_ids = [next(iter(sim.state.categories)), deepest["id"]]
    entry_id = sim.state.add_entry(
        name="Lecture on fixity",
        description="Why bits rot.\nAnd how.",
        createdAt=OLD,
        tags="history, preservation",
        plays=7,
        duration=3600,
        category_ids=category_ids,
    )
    sync.sync_full(Kaltura.from_settings())
    at_archive = dict(sim.state.get_entry(entry_id))
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


def test_new_content_gets_its_own_sidecar_and_the_first_one_stays(world, rq_queue, s3):  # noqa: F811
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
