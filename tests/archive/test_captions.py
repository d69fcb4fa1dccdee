"""Captions and the default thumbnail (issue 15): kept beside each copy with the sidecar, and put back by a
restore when Kaltura has lost them; through the simulator (the official client's caption plugin), moto's S3 and
a real RQ worker."""

from __future__ import annotations

import hashlib

import pytest
import requests
from django.conf import settings
from kaltura_sim.state import CAPTION_DFXP, CAPTION_SRT, CAPTION_WEBVTT
from KalturaClient import KalturaClient, KalturaConfiguration
from KalturaClient.Plugins.Caption import KalturaCaptionAsset, KalturaCaptionAssetFilter, KalturaCaptionType
from KalturaClient.Plugins.Core import KalturaSessionType, KalturaStringResource

from archive_app.archive import restores
from archive_app.archive.sidecar import read_sidecar
from archive_app.lib.kaltura import Kaltura
from archive_app.lib.storage import ArchiveStore
from archive_app.mirror import sync
from archive_app.models import ArchiveCopy, AuditEvent, Batch, Restore
from tests.archive.test_custody import OLD, run_batch
from tests.archive.test_restore import run_jobs, world  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db(transaction=True)

SRT = "1\n00:00:00,000 --> 00:00:02,000\nBonjour, ça va ?\n".encode()
VTT = b"WEBVTT\n\n00:00.000 --> 00:02.000\nHello\n"
DFXP = b'<?xml version="1.0"?><tt xmlns="http://www.w3.org/ns/ttml"><body><p>Hallo</p></body></tt>'


def _client(sim) -> KalturaClient:
    client = KalturaClient(KalturaConfiguration(sim.partner_id))
    client.config.serviceUrl = sim.url
    client.setKs(client.session.start(sim.admin_secret, "", KalturaSessionType.ADMIN, sim.partner_id))
    return client


def _captions(sim, entry_id: str) -> list:
    return _client(sim).caption.captionAsset.list(KalturaCaptionAssetFilter(entryIdEqual=entry_id)).objects


def _served(sim, caption_id: str) -> bytes:
    return requests.get(_client(sim).caption.captionAsset.getUrl(caption_id), timeout=10).content


def _captioned(sim, entry_id: str) -> dict[str, str]:
    return {
        "fr": sim.state.add_caption(entry_id, "French", "Français", CAPTION_SRT, SRT),
        "en": sim.state.add_caption(entry_id, "English", "English", CAPTION_WEBVTT, VTT, is_default=True),
        "de": sim.state.add_caption(entry_id, "German", "Deutsch", CAPTION_DFXP, DFXP),
    }


def test_the_simulator_serves_captions_through_the_official_client(kaltura_sim):
    client = _client(kaltura_sim)
    entry_id = kaltura_sim.state.add_entry(name="Captioned")
    service = client.caption.captionAsset
    added = service.add(entry_id, KalturaCaptionAsset(language="English", label="EN", format=KalturaCaptionType.SRT))
    assert added.status.getValue() == 0 and added.entryId == entry_id  # no content yet
    with_content = service.setContent(added.id, KalturaStringResource(content=SRT.decode()))
    assert with_content.status.getValue() == 2 and with_content.sizeInBytes == len(SRT)
    assert _served(kaltura_sim, added.id) == SRT
    second = kaltura_sim.state.add_caption(entry_id, "French", "FR", CAPTION_WEBVTT, VTT)
    service.setAsDefault(second)
    listed = {c.id: c for c in _captions(kaltura_sim, entry_id)}
    assert set(listed) == {added.id, second}
    assert [listed[added.id].isDefault.getValue(), listed[second].isDefault.getValue()] == [0, 1]
    assert listed[second].format.getValue() == KalturaCaptionType.WEBVTT
    assert listed[second].language.getValue() == "French"
    service.delete(added.id)
    assert [c.id for c in _captions(kaltura_sim, entry_id)] == [second]
    with pytest.raises(Exception, match="CAPTION_ASSET_ID_NOT_FOUND|not found"):
        service.get(added.id)
    # Some generated entries have captions; each entry's thumbnail has bytes of its own.
    assert any(c["status"] == 2 for c in kaltura_sim.state.captions.values() if c["entryId"] != entry_id)
    other = kaltura_sim.state.add_entry(name="Other")
    thumbnails = {requests.get(client.media.get(e).thumbnailUrl, timeout=10).content for e in (entry_id, other)}
    assert len(thumbnails) == 2 and all(t.startswith(b"\x89PNG") for t in thumbnails)


def test_the_sidecar_keeps_each_caption_and_the_thumbnail_as_kaltura_served_them(world, rq_queue, s3):  # noqa: F811
    sim, admin = world
    entry_id = sim.state.add_entry(name="Lecture with captions", createdAt=OLD)
    ids = _captioned(sim, entry_id)
    served = {caption_id: _served(sim, caption_id) for caption_id in ids.values()}
    thumbnail = requests.get(Kaltura.from_settings().get_entry(entry_id).thumbnail_url, timeout=10).content
    bare = sim.state.add_entry(name="Lecture without captions", createdAt=OLD)
    sync.sync_full(Kaltura.from_settings())
    run_batch(sim, rq_queue, admin, Batch.Action.ARCHIVE, [entry_id, bare])

    store = ArchiveStore.from_settings()
    copy = ArchiveCopy.objects.get(entry_id=entry_id)
    document = read_sidecar(store, copy)
    assert "captions" not in document["not_included"] and "thumbnail_bytes" not in document["not_included"]
    listed = {c["id"]: c for c in document["captions"]}
    assert set(listed) == set(ids.values())
    for caption_id, data in served.items():
        item = listed[caption_id]
        assert item["key"].startswith(f"{copy.key}/captions/{caption_id}.")
        version = {"VersionId": item["version_id"]} if item["version_id"] else {}
        stored = s3.get_object(Bucket=settings.AWS_BUCKET, Key=item["key"], **version)
        body = stored["Body"].read()
        assert body == data and item["bytes"] == len(data) and item["sha256"] == hashlib.sha256(data).hexdigest()
        assert stored["Metadata"]["sha256"] == item["sha256"]
    assert (listed[ids["en"]]["is_default"], listed[ids["fr"]]["is_default"]) == (True, False)
    assert listed[ids["en"]]["format_name"] == "WebVTT" and listed[ids["de"]]["format_name"] == "DFXP"
    assert (listed[ids["fr"]]["language"], listed[ids["fr"]]["label"]) == ("French", "Français")
    kept = document["thumbnail"]
    assert kept["key"] == f"{copy.key}/thumbnail.png" and kept["content_type"] == "image/png"
    assert s3.get_object(Bucket=settings.AWS_BUCKET, Key=kept["key"])["Body"].read() == thumbnail
    assert kept["sha256"] == hashlib.sha256(thumbnail).hexdigest()
    # Never written over.
    with pytest.raises(s3.exceptions.ClientError):
        s3.put_object(Bucket=settings.AWS_BUCKET, Key=kept["key"], Body=b"x", IfNoneMatch="*")
    # The side objects are not taken for entries' archive objects.
    assert set(store.list_objects()) == {entry_id, bare}

    # An entry without captions archives, its sidecar says so (an empty list, not "unknown").
    bare_document = read_sidecar(store, ArchiveCopy.objects.get(entry_id=bare))
    assert bare_document["captions"] == [] and bare_document["thumbnail"]["key"]


def test_a_caption_without_content_is_listed_not_kept(world, rq_queue, s3):  # noqa: F811
    sim, admin = world
    entry_id = sim.state.add_entry(name="Half captioned", createdAt=OLD)
    empty = sim.state.add_caption(entry_id, "Spanish", "Español", CAPTION_SRT)  # added, never given content
    sync.sync_full(Kaltura.from_settings())
    run_batch(sim, rq_queue, admin, Batch.Action.ARCHIVE, [entry_id])
    copy = ArchiveCopy.objects.get(entry_id=entry_id)
    [item] = read_sidecar(ArchiveStore.from_settings(), copy)["captions"]
    assert item["id"] == empty and item["key"] is None and item["missing"] == "no content in Kaltura"
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=settings.AWS_BUCKET, Prefix=f"{copy.key}/captions/").get("Contents", [])
    ]
    assert keys == []


def _restore(sim, rq_queue, admin, entry_id: str) -> Restore:
    restore, _ = restores.restore_request(entry_id=entry_id, tier="Bulk", source=Restore.Source.MANUAL, user=admin)
    run_jobs(rq_queue)
    restore.refresh_from_db()
    return restore


def _by_language(sim, entry_id: str) -> dict[tuple[str, str], list]:
    found: dict[tuple[str, str], list] = {}
    for caption in _captions(sim, entry_id):
        found.setdefault((caption.language.getValue(), caption.label), []).append(caption)
    return found


def test_a_restore_puts_back_the_captions_kaltura_lost_and_leaves_the_others(world, rq_queue):  # noqa: F811
    sim, admin = world
    [entry_id], originals = _placeholder_with_captions(sim, rq_queue, admin)
    ids = originals["captions"]
    # After the archive: the French caption is deleted, the German one deleted and added again with its content
    # under another label (same bytes: Kaltura still has it), the English one edited (kept as it is now).
    client = _client(sim)
    client.caption.captionAsset.delete(ids["fr"])
    client.caption.captionAsset.delete(ids["de"])
    german_again = sim.state.add_caption(entry_id, "German", "Deutsch (neu)", CAPTION_DFXP, DFXP)
    edited = b"WEBVTT\n\n00:00.000 --> 00:02.000\nHello, edited\n"
    sim.state.set_caption_content(ids["en"], edited)
    sim.state.reset_counters()

    restore = _restore(sim, rq_queue, admin, entry_id)
    assert restore.status == Restore.Status.DONE, restore.error
    found = _by_language(sim, entry_id)
    assert {key: len(value) for key, value in found.items()} == {
        ("English", "English"): 1,
        ("German", "Deutsch (neu)"): 1,
        ("French", "Français"): 1,
    }
    [french] = found[("French", "Français")]
    assert french.id != ids["fr"] and french.status.getValue() == 2
    assert french.format.getValue() == KalturaCaptionType.SRT
    assert _served(sim, french.id) == SRT
    assert _served(sim, ids["en"]) == edited  # left alone
    assert found[("German", "Deutsch (neu)")][0].id == german_again
    assert sim.state.counters.get("caption_captionasset.add") == 1
    event = AuditEvent.objects.get(entry_id=entry_id, action="restore_captions")
    assert [c["language"] for c in event.details["captions_restored"]] == ["French"]
    assert {c["id"] for c in event.details["captions_kept"]} == {ids["en"], ids["de"]}
    # The restored entry's original is the archived one.
    assert sim.state.original_bytes_sha256(entry_id) == originals["sha256"]


def test_a_rerun_after_a_crash_adds_no_caption_twice(world, rq_queue):  # noqa: F811
    sim, admin = world
    [entry_id], originals = _placeholder_with_captions(sim, rq_queue, admin)
    ids = originals["captions"]
    for caption_id in ids.values():
        sim.state.delete_caption(caption_id)
    # The first run adds the first caption, then Kaltura refuses its content: the restore fails there.
    sim.state.inject_fault(
        "kaltura_error", count=1, service="caption_captionasset", action="setContent", code="SOMETHING_BROKE"
    )
    restore = _restore(sim, rq_queue, admin, entry_id)
    assert restore.status == Restore.Status.FAILED and "SOMETHING_BROKE" in restore.error
    assert len(_captions(sim, entry_id)) == 1  # added, without content

    restores.restore_retry(restore, user=admin)
    run_jobs(rq_queue)
    restore.refresh_from_db()
    assert restore.status == Restore.Status.DONE, restore.error
    found = _by_language(sim, entry_id)
    assert sorted(found) == [("English", "English"), ("French", "Français"), ("German", "Deutsch")]
    assert all(len(value) == 1 and value[0].status.getValue() == 2 for value in found.values())
    assert _served(sim, found[("French", "Français")][0].id) == SRT
    assert _served(sim, found[("German", "Deutsch")][0].id) == DFXP
    assert [c.isDefault.getValue() for c in found[("English", "English")]] == [1]

    # The step once more, on the restored entry: nothing is added.
    adds = sim.state.counters.get("caption_captionasset.add", 0)
    from archive_app.archive.sidecar import restore_captions

    again = restore_captions(
        ArchiveStore.from_settings(),
        Kaltura.from_settings(),
        ArchiveCopy.objects.get(entry_id=entry_id),
        {},
        lambda added: None,
    )
    assert again["captions_restored"] == [] and len(again["captions_kept"]) == 3
    assert sim.state.counters.get("caption_captionasset.add", 0) == adds


def _placeholder_with_captions(sim, rq_queue, admin):
    """One captioned entry, archived and replaced by the real batch path."""
    entry_id = sim.state.add_entry(name="Old captioned lecture", createdAt=OLD, duration=830)
    captions = _captioned(sim, entry_id)
    sha256 = sim.state.original_bytes_sha256(entry_id)
    sync.sync_full(Kaltura.from_settings())
    run_batch(sim, rq_queue, admin, Batch.Action.ARCHIVE_REPLACE, [entry_id])
    assert "flavors_deleted" in sim.state.get_entry(entry_id)["tags"]
    return [entry_id], {"captions": captions, "sha256": sha256}


def test_a_rerun_after_a_crash_before_the_sidecar_keeps_the_captions_first_written(world, rq_queue, s3):  # noqa: F811
    """A crash after the captions and thumbnail were written, before the sidecar: the rerun lists the objects
    already there (same versions, same hashes), even if Kaltura's caption changed meanwhile."""
    from archive_app.archive.sidecar import sidecar_key, write_sidecar
    from archive_app.archive.workflow import read_live_state

    sim, admin = world
    entry_id = sim.state.add_entry(name="Crashed mid-sidecar", createdAt=OLD)
    ids = _captioned(sim, entry_id)
    sync.sync_full(Kaltura.from_settings())
    run_batch(sim, rq_queue, admin, Batch.Action.ARCHIVE, [entry_id])
    store, kaltura = ArchiveStore.from_settings(), Kaltura.from_settings()
    copy = ArchiveCopy.objects.get(entry_id=entry_id)
    first = read_sidecar(store, copy)
    # As if the sidecar itself had never been written (this test bucket has no Object Lock).
    s3.delete_object(Bucket=settings.AWS_BUCKET, Key=sidecar_key(copy.key))
    sim.state.set_caption_content(ids["fr"], b"1\n00:00:00,000 --> 00:00:01,000\nchanged since\n")
    details = write_sidecar(store, kaltura, read_live_state(entry_id, kaltura, store), copy)
    assert details["sidecar_written"] and details["captions_kept"] == 3
    again = read_sidecar(store, ArchiveCopy.objects.get(id=copy.id))
    assert [(c["key"], c["version_id"], c["sha256"]) for c in again["captions"]] == [
        (c["key"], c["version_id"], c["sha256"]) for c in first["captions"]
    ]
    french = next(c for c in again["captions"] if c["id"] == ids["fr"])
    assert s3.get_object(Bucket=settings.AWS_BUCKET, Key=french["key"])["Body"].read() == SRT
