"""What the simulator holds for the sidecar: co-editors (entitledUsersEdit / entitledUsersPublish), the custom
metadata plugin (metadata_metadataprofile, metadata_metadata) and uploaded thumbnails, driven over HTTP by the
official client's Core and Metadata plugins."""

from __future__ import annotations

import io

import pytest
import requests
from kaltura_sim import start_in_thread
from KalturaClient import KalturaClient, KalturaConfiguration
from KalturaClient.exceptions import KalturaException
from KalturaClient.Plugins.Core import KalturaBaseEntry, KalturaMediaEntry, KalturaSessionType
from KalturaClient.Plugins.Metadata import (
    KalturaMetadata,
    KalturaMetadataFilter,
    KalturaMetadataListResponse,
    KalturaMetadataObjectType,
    KalturaMetadataProfile,
    KalturaMetadataProfileFilter,
    KalturaMetadataProfileListResponse,
)

ENTRY = KalturaMetadataObjectType.ENTRY


@pytest.fixture(scope="module")
def sim():
    simulator = start_in_thread(entries=300, seed=7, content_scale=1e-4)
    yield simulator
    simulator.stop()


@pytest.fixture
def client(sim):
    sim.state.metadata_plugin = True
    client = KalturaClient(KalturaConfiguration(sim.url))
    client.setKs(client.session.start(sim.admin_secret, "sim-tests", KalturaSessionType.ADMIN, sim.partner_id))
    yield client
    sim.state.metadata_plugin = True


def error_of(call, *args):
    with pytest.raises(KalturaException) as raised:
        call(*args)
    return raised.value


def test_co_editors_are_held_normalised_and_checked_like_kaltura(sim, client):
    generated = [e for e in sim.state.all_entries() if e["entitledUsersEdit"]]
    assert generated, "the generator gives some entries co-editors"
    entry = client.baseEntry.get(generated[0]["id"])
    assert entry.entitledUsersEdit == generated[0]["entitledUsersEdit"] and "," in entry.entitledUsersEdit
    assert entry.entitledUsersPublish == generated[0]["entitledUsersPublish"]

    first, second = sorted(sim.state.users)[:2]
    target = sim.state.add_entry(name="Co-edited lecture")
    update = KalturaMediaEntry()
    update.entitledUsersEdit = f" {first} ,{second},{first}"  # trimmed, once each, joined with ","
    update.entitledUsersPublish = second
    updated = client.media.update(target, update)
    assert (updated.entitledUsersEdit, updated.entitledUsersPublish) == (f"{first},{second}", second)
    listed = client.media.get(target)
    assert (listed.entitledUsersEdit, listed.entitledUsersPublish, listed.entitledUsersView) == (
        f"{first},{second}",
        second,
        "",
    )

    # An id that is no user of the partner is refused, and nothing changes.
    wrong = KalturaBaseEntry()
    wrong.entitledUsersEdit = f"{first},nobody-such"
    assert error_of(client.baseEntry.update, target, wrong).code == "INVALID_USER_ID"
    assert client.baseEntry.get(target).entitledUsersEdit == f"{first},{second}"
    cleared = KalturaBaseEntry()
    cleared.entitledUsersEdit = ""
    assert client.baseEntry.update(target, cleared).entitledUsersEdit == ""


def test_metadata_profiles_and_values_list_like_the_plugin(sim, client):
    profiles = client.metadata.metadataProfile.list(KalturaMetadataProfileFilter(metadataObjectTypeEqual=ENTRY))
    assert isinstance(profiles, KalturaMetadataProfileListResponse) and profiles.totalCount >= 1
    course = next(p for p in profiles.objects if p.systemName == "CourseInfo")
    assert isinstance(course, KalturaMetadataProfile) and "<xsd:schema" in course.xsd
    assert course.metadataObjectType.getValue() == ENTRY and course.version == 1

    generated = next(iter(sim.state.metadata.values()))
    answer = client.metadata.metadata.list(
        KalturaMetadataFilter(objectIdEqual=generated["objectId"], metadataObjectTypeEqual=ENTRY)
    )
    assert isinstance(answer, KalturaMetadataListResponse) and answer.totalCount == 1
    [values] = answer.objects
    assert isinstance(values, KalturaMetadata)
    assert (values.metadataProfileId, values.objectId, values.xml) == (
        course.id,
        generated["objectId"],
        generated["xml"],
    )
    assert values.xml.startswith("<metadata><CourseCode>")  # XML text, escaped on the wire and back

    # Values added through the plugin, then updated: the version moves on, the old value is not listed.
    entry_id = sim.state.add_entry(name="Metadata lecture")
    empty = client.metadata.metadata.list(KalturaMetadataFilter(objectIdEqual=entry_id, metadataObjectTypeEqual=ENTRY))
    assert empty.totalCount == 0 and not empty.objects
    xml = "<metadata><CourseCode>HIS 101</CourseCode><Term>Fall 2015</Term><Instructor>a &amp; b</Instructor>"
    xml += "</metadata>"
    added = client.metadata.metadata.add(course.id, ENTRY, entry_id, xml)
    assert (added.version, added.xml, added.status.getValue()) == (1, xml, 1)
    assert error_of(client.metadata.metadata.add, course.id, ENTRY, entry_id, xml).code == "METADATA_ALREADY_EXISTS"
    assert error_of(client.metadata.metadata.add, course.id, ENTRY, entry_id + "x", xml).code == (
        "INVALID_METADATA_OBJECT"
    )
    other = sim.state.add_entry(name="Badly described lecture")
    assert error_of(client.metadata.metadata.add, course.id, ENTRY, other, "<metadata>").code == (
        "INVALID_METADATA_DATA"
    )
    changed = xml.replace("Fall 2015", "Spring 2016")
    assert client.metadata.metadata.update(added.id, changed).version == 2
    assert error_of(client.metadata.metadata.update, added.id, changed, 1).code == "INVALID_METADATA_VERSION"
    [now] = client.metadata.metadata.list(KalturaMetadataFilter(objectIdIn=f"{entry_id},0_none")).objects
    assert (now.id, now.version, now.xml) == (added.id, 2, changed)
    client.metadata.metadata.delete(added.id)
    assert client.metadata.metadata.list(KalturaMetadataFilter(objectIdEqual=entry_id)).totalCount == 0
    assert error_of(client.metadata.metadata.get, added.id).code == "METADATA_NOT_FOUND"


def test_a_partner_without_the_plugin_is_refused_with_kalturas_error(sim, client):
    sim.state.metadata_plugin = False
    for call, args in (
        (client.metadata.metadataProfile.list, (KalturaMetadataProfileFilter(metadataObjectTypeEqual=ENTRY),)),
        (client.metadata.metadata.list, (KalturaMetadataFilter(objectIdEqual="0_any"),)),
    ):
        refused = error_of(call, *args)
        assert (refused.code, refused.message) == ("FEATURE_FORBIDDEN", "The usage of feature [metadata] is forbidden")
    # In a multirequest only the plugin's calls fail; the entry still comes back.
    entry_id = next(iter(sim.state.entries))
    client.startMultiRequest()
    client.baseEntry.get(entry_id)
    client.metadata.metadata.list(KalturaMetadataFilter(objectIdEqual=entry_id))
    entry, refused = client.doMultiRequest()
    assert entry.id == entry_id and isinstance(refused, KalturaException) and refused.code == "FEATURE_FORBIDDEN"


def test_an_uploaded_image_becomes_the_entry_thumbnail(sim, client):
    entry_id = sim.state.add_entry(name="Thumbnailed lecture")
    before = client.media.get(entry_id).thumbnailUrl
    image = b"\x89PNG\r\n\x1a\n" + b"an uploaded thumbnail" * 10
    upload = io.BytesIO(image)
    upload.name = "thumb.png"  # the client names the multipart part after it
    updated = client.media.updateThumbnailJpeg(entry_id, upload)
    assert updated.thumbnailUrl != before  # a new thumbnail version
    answer = requests.get(updated.thumbnailUrl, timeout=10)
    assert answer.content == image and answer.headers["Content-Type"] == "image/png"
    assert requests.get(before, timeout=10).content != image  # the earlier version stays as it was
