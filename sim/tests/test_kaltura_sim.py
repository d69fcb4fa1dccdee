"""The Kaltura simulator, driven over HTTP by the official KalturaApiClient (never mocked)."""

from __future__ import annotations

import collections
import hashlib
import http.client
import io
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
from kaltura_sim import SimState, start_in_thread
from KalturaClient import KalturaClient, KalturaConfiguration
from KalturaClient.Base import KalturaParams
from KalturaClient.exceptions import KalturaClientException, KalturaException
from KalturaClient.Plugins.Core import (
    KalturaBaseEntryFilter,
    KalturaBaseEntryListResponse,
    KalturaCategoryEntryFilter,
    KalturaCategoryFilter,
    KalturaDetachedResponseProfile,
    KalturaFilterPager,
    KalturaFlavorAssetFilter,
    KalturaMediaEntry,
    KalturaMediaEntryFilter,
    KalturaMediaListResponse,
    KalturaResponseProfileType,
    KalturaSessionType,
    KalturaUploadedFileTokenResource,
    KalturaUploadToken,
)

SIM_ROOT = Path(__file__).resolve().parents[1]
# A short real MP4 (a copy of Kaltura Archive's placeholder), so the duration parser meets real boxes.
SHORT_MP4 = SIM_ROOT / "tests" / "data" / "short.mp4"
ALL_STATUSES = "-2,-1,0,1,2,3,4,5,6,7"
READY, DELETED, NO_CONTENT, PRECONVERT = 2, 3, 7, 1


# --- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim():
    # A long conversion delay: tests finish conversions with complete_conversions() when they want to.
    simulator = start_in_thread(entries=2000, seed=11, content_scale=1e-4, conversion_delay=3600)
    yield simulator
    simulator.stop()


@pytest.fixture(scope="module")
def big_sim():
    started = time.process_time()
    simulator = start_in_thread(entries=10_500, seed=5, content_scale=1e-4)
    simulator.startup_cpu_seconds = time.process_time() - started
    yield simulator
    simulator.stop()


@pytest.fixture
def state(sim):
    """The module simulator's state, with faults cleared after the test."""
    yield sim.state
    sim.state.clear_faults()


def connect(sim, *, ks_type=KalturaSessionType.ADMIN, expiry=86400, user="sim-tests"):
    client = KalturaClient(KalturaConfiguration(sim.url))
    client.setKs(client.session.start(sim.admin_secret, user, ks_type, sim.partner_id, expiry))
    return client


@pytest.fixture
def client(sim):
    return connect(sim)


_claimed: set[str] = set()


def has_ready_original(flavors):
    return any(f["isOriginal"] and f["status"] == READY for f in flavors)


def pick(sim, predicate=None):
    """An entry no other test has used, READY with a READY original unless `predicate` says otherwise."""
    for entry in sim.state.all_entries():
        if entry["id"] in _claimed:
            continue
        flavors = sim.state.get_flavors(entry["id"])
        if predicate is None:
            ok = entry["status"] == READY and entry["mediaType"] == 1 and has_ready_original(flavors)
            ok = ok and not entry["parentEntryId"] and "flavors_deleted" not in entry["tags"]
        else:
            ok = predicate(entry, flavors)
        if ok:
            _claimed.add(entry["id"])
            return entry
    pytest.fail("no entry matches")


def error_of(call, *args):
    with pytest.raises(KalturaException) as raised:
        call(*args)
    return raised.value


def upload_bytes(client, data: bytes, chunks: int = 1) -> str:
    token = client.uploadToken.add(KalturaUploadToken(fileName="video.mp4", fileSize=len(data)))
    step = -(-len(data) // chunks)
    for index in range(chunks):
        piece = data[index * step : (index + 1) * step]
        final = index == chunks - 1
        client.uploadToken.upload(token.id, io.BytesIO(piece), index > 0, final, index * step if index else -1)
    return token.id


def original_of(client, entry_id):
    flavors = client.flavorAsset.list(KalturaFlavorAssetFilter(entryIdEqual=entry_id)).objects
    return next(f for f in flavors if f.isOriginal)


def download(url: str, headers=None) -> requests.Response:
    response = requests.get(url, headers=headers or {}, timeout=30)
    assert response.status_code in (200, 206), response.status_code
    return response


def ready_entries(sim):
    return [e for e in sim.state.all_entries() if e["status"] == READY]


# --- sessions -------------------------------------------------------------------------------------


def test_session_start_with_the_admin_secret_returns_a_working_ks(sim):
    client = KalturaClient(KalturaConfiguration(sim.url))
    ks = client.session.start(sim.admin_secret, "someone", KalturaSessionType.ADMIN, sim.partner_id)
    assert ks.startswith("djJ8")  # base64 of "v2|", like a real v2 KS
    client.setKs(ks)
    assert client.media.list().totalCount > 0


def test_session_start_with_a_wrong_secret_or_partner_fails(sim):
    client = KalturaClient(KalturaConfiguration(sim.url))
    error = error_of(client.session.start, "wrong", "u", KalturaSessionType.ADMIN, sim.partner_id)
    assert error.code == "START_SESSION_ERROR"
    assert str(sim.partner_id) in error.message
    error = error_of(client.session.start, sim.admin_secret, "u", KalturaSessionType.ADMIN, sim.partner_id + 1)
    assert error.code == "START_SESSION_ERROR"


def test_missing_and_unknown_ks(sim):
    client = KalturaClient(KalturaConfiguration(sim.url))
    assert error_of(client.media.list).code == "MISSING_KS"
    client.setKs("djJ8bm90IGEgcmVhbCBrcw==")
    error = error_of(client.media.list)
    assert error.code == "INVALID_KS"
    assert "-1,INVALID_STR" in error.message


def test_expired_sessions(sim):
    expiring = connect(sim, expiry=1)
    sim.state.ks_expiry_cap = 1
    try:
        capped = connect(sim)  # asks for a day, the partner allows a second
    finally:
        sim.state.ks_expiry_cap = 86400
    lasting = connect(sim)
    assert expiring.media.list().totalCount > 0
    time.sleep(1.2)
    for client in (expiring, capped):
        error = error_of(client.media.list)
        assert error.code == "INVALID_KS"
        assert "EXPIRED" in error.message
    assert lasting.media.list().totalCount > 0

    sim.state.expire_sessions()
    assert error_of(lasting.media.list).code == "INVALID_KS"
    assert connect(sim).media.list().totalCount > 0


def test_unknown_service_and_action(client):
    client.queueServiceActionCall("nosuchservice", "list", "None", KalturaParams())
    assert error_of(client.doQueue).code == "SERVICE_DOES_NOT_EXISTS"
    client.queueServiceActionCall("media", "nosuchaction", "None", KalturaParams())
    assert error_of(client.doQueue).code == "ACTION_DOES_NOT_EXISTS"


# --- entry lists ----------------------------------------------------------------------------------


def test_list_defaults_to_ready_entries_and_30_per_page(sim, client):
    response = client.media.list()
    assert isinstance(response, KalturaMediaListResponse)
    assert response.totalCount == len(ready_entries(sim))
    assert len(response.objects) == 30
    assert {e.status.getValue() for e in response.objects} == {"2"}


def test_status_in_everything_includes_deleted_entries(sim, client):
    response = client.media.list(KalturaMediaEntryFilter(statusIn=ALL_STATUSES))
    assert response.totalCount == len(sim.state.all_entries())
    deleted = client.media.list(KalturaMediaEntryFilter(statusEqual=str(DELETED)))
    assert deleted.totalCount == sum(e["status"] == DELETED for e in sim.state.all_entries()) > 0
    not_ready = client.media.list(KalturaMediaEntryFilter(statusNotIn="2"))
    assert not_ready.totalCount == sum(e["status"] not in (READY, DELETED) for e in sim.state.all_entries())


def test_page_size_is_clamped_to_500(client):
    response = client.media.list(KalturaMediaEntryFilter(), KalturaFilterPager(pageSize=1000))
    assert len(response.objects) == 500
    assert response.totalCount > 500


def test_paging_by_created_at_is_ordered_and_with_stable_ties_repeatable():
    # --stable-ties: the one mode in which paging by pageIndex is exact, for tests that need determinism.
    with start_in_thread(entries=2000, seed=11, content_scale=1e-4, stable_ties=True) as stable:
        client = connect(stable)
        filter_ = KalturaMediaEntryFilter(orderBy="+createdAt", statusIn=ALL_STATUSES)
        pager = [KalturaFilterPager(pageSize=100, pageIndex=i) for i in range(1, 6)]
        ids = [e.id for p in pager for e in client.media.list(filter_, p).objects]
        assert len(ids) == len(set(ids)) == 500
        whole = client.media.list(filter_, KalturaFilterPager(pageSize=500, pageIndex=1)).objects
        assert [e.id for e in whole] == ids
        created = [e.createdAt for e in whole]
        assert created == sorted(created)


def crowded_second(sim) -> tuple[int, int]:
    return collections.Counter(e["createdAt"] for e in sim.state.all_entries()).most_common(1)[0]


def test_equal_sort_keys_come_back_in_a_new_order_on_each_request(big_sim):
    """As Kaltura's search index: rows with equal keys have no order, so paging one crowded second by pageIndex
    skips some rows and repeats others, while each page stays ordered and totalCount stays true."""
    client = connect(big_sim)
    second, size = crowded_second(big_sim)
    assert size > 500
    window = KalturaMediaEntryFilter(
        createdAtGreaterThanOrEqual=second, createdAtLessThanOrEqual=second, statusIn=ALL_STATUSES, orderBy="+createdAt"
    )
    firsts = [tuple(e.id for e in client.media.list(window, KalturaFilterPager(pageSize=200)).objects) for _ in "abc"]
    assert len(set(firsts)) == 3, "each request orders the ties anew"
    paged = set()
    for index in (1, 2):
        page = client.media.list(window, KalturaFilterPager(pageSize=300, pageIndex=index))
        assert page.totalCount == size
        paged |= {e.id for e in page.objects}
    assert len(paged) < size, "paging a crowded second by pageIndex misses entries"

    # Across seconds the order holds: every entry of an earlier second comes before any of a later one.
    wide = KalturaMediaEntryFilter(
        createdAtGreaterThanOrEqual=second - 86400 * 30, statusIn=ALL_STATUSES, orderBy="+createdAt"
    )
    created = [e.createdAt for e in client.media.list(wide, KalturaFilterPager(pageSize=500)).objects]
    assert created == sorted(created)


def test_id_in_and_id_not_in_are_cut_to_150_ids(sim, client):
    filter_ = KalturaMediaEntryFilter(orderBy="+createdAt")
    first = client.media.list(filter_, KalturaFilterPager(pageSize=200)).objects
    ids = [e.id for e in first]
    within = client.media.list(KalturaMediaEntryFilter(idIn=",".join(ids)), KalturaFilterPager(pageSize=500))
    assert within.totalCount == 150
    assert {e.id for e in within.objects} == set(ids[:150])
    outside = client.media.list(
        KalturaMediaEntryFilter(idNotIn=",".join(ids), orderBy="+createdAt"), KalturaFilterPager(pageSize=500)
    )
    assert outside.totalCount == len(ready_entries(sim)) - 150
    returned = {e.id for e in outside.objects}
    assert set(ids[150:]) <= returned  # ids past the 150th were silently not excluded
    assert not set(ids[:150]) & returned


def test_filters_match_the_state(sim, client):
    entries = ready_entries(sim)
    middle = sorted(e["createdAt"] for e in entries)[len(entries) // 2]
    played = sorted(e["lastPlayedAt"] for e in entries if e["lastPlayedAt"])
    cutoff = played[len(played) // 2]
    lectures = next(c for c in sim.state.categories.values() if c["fullName"] == "Lectures")
    under_lectures = {c["id"] for c in sim.state.categories.values() if c["fullName"].startswith("Lectures")}
    leaf = next(c for c in sim.state.categories.values() if c["fullName"].startswith("Lectures>2019>"))
    owner = collections.Counter(e["userId"] for e in entries).most_common(1)[0][0]

    def ids(entry):
        return {int(i) for i in entry["categoriesIds"].split(",") if i}

    cases = [
        (KalturaMediaEntryFilter(createdAtGreaterThanOrEqual=middle), lambda e: e["createdAt"] >= middle),
        (KalturaMediaEntryFilter(createdAtLessThanOrEqual=middle), lambda e: e["createdAt"] <= middle),
        (
            KalturaMediaEntryFilter(lastPlayedAtLessThanOrEqual=cutoff),
            lambda e: e["lastPlayedAt"] is not None and e["lastPlayedAt"] <= cutoff,
        ),
        (
            KalturaMediaEntryFilter(lastPlayedAtLessThanOrEqualOrNull=cutoff),
            lambda e: e["lastPlayedAt"] is None or e["lastPlayedAt"] <= cutoff,
        ),
        (
            KalturaMediaEntryFilter(lastPlayedAtGreaterThanOrEqual=cutoff),
            lambda e: e["lastPlayedAt"] is not None and e["lastPlayedAt"] >= cutoff,
        ),
        (KalturaMediaEntryFilter(categoryAncestorIdIn=str(lectures["id"])), lambda e: bool(ids(e) & under_lectures)),
        (KalturaMediaEntryFilter(categoriesIdsMatchOr=str(leaf["id"])), lambda e: leaf["id"] in ids(e)),
        (KalturaMediaEntryFilter(userIdEqual=owner), lambda e: e["userId"] == owner),
        (KalturaMediaEntryFilter(mediaTypeEqual=5), lambda e: e["mediaType"] == 5),
        (KalturaMediaEntryFilter(mediaTypeIn="1,2"), lambda e: e["mediaType"] in (1, 2)),
        (KalturaMediaEntryFilter(tagsLike="archived_to_s3"), lambda e: "archived_to_s3" in e["tags"].split(", ")),
    ]
    for filter_, predicate in cases:
        expected = sum(1 for e in entries if predicate(e))
        assert expected > 0
        assert client.media.list(filter_).totalCount == expected


def test_tags_are_normalised_and_match_words_and_prefixes(sim, client):
    entry = pick(sim)
    updated = client.media.update(entry["id"], KalturaMediaEntry(tags="Lecture,  BIO101 , x, lecture, Not_Archived"))
    assert updated.tags == "lecture, bio101, not_archived"
    assert updated.updatedAt >= entry["updatedAt"] and updated.updatedAt > entry["createdAt"]

    def count(**criteria):
        return client.media.list(KalturaMediaEntryFilter(idEqual=entry["id"], **criteria)).totalCount

    assert count(tagsLike="archived") == 1  # "_" splits words: not_archived matches
    assert count(tagsLike="arch") == 1  # prefixes match
    assert count(tagsLike="chived") == 0
    assert count(tagsLike="not_archived") == 1
    assert count(tagsMultiLikeOr="zzz,bio") == 1
    assert count(tagsMultiLikeAnd="lecture,zzz") == 0
    assert count(tagsMultiLikeAnd="lecture,bio101") == 1


def test_an_unchanged_update_keeps_updated_at_and_plays_never_move_it(sim, client):
    entry = pick(sim)
    same = client.media.update(entry["id"], KalturaMediaEntry(tags=entry["tags"], name=entry["name"]))
    assert same.updatedAt == entry["updatedAt"]

    when = int(time.time()) - 5
    sim.state.play(entry["id"], when)
    after = client.media.get(entry["id"])
    assert (after.lastPlayedAt, after.plays, after.views) == (when, entry["plays"] + 1, entry["views"] + 1)
    assert after.updatedAt == entry["updatedAt"]
    found = client.media.list(KalturaMediaEntryFilter(idEqual=entry["id"], lastPlayedAtGreaterThanOrEqual=when))
    assert found.totalCount == 1
    changed = client.media.list(KalturaMediaEntryFilter(updatedAtGreaterThanOrEqual=when, idEqual=entry["id"]))
    assert changed.totalCount == 0  # an incremental sync by updatedAt misses plays


def test_get_unknown_and_deleted_entries(sim, client):
    error = error_of(client.media.get, "0_nosuchid")
    assert (error.code, error.message) == ("ENTRY_ID_NOT_FOUND", 'Entry id "0_nosuchid" not found')
    entry = pick(sim)
    sim.state.delete_entry(entry["id"])
    assert error_of(client.media.get, entry["id"]).code == "ENTRY_ID_NOT_FOUND"
    assert error_of(client.baseEntry.get, entry["id"]).code == "ENTRY_ID_NOT_FOUND"
    assert sim.state.get_entry(entry["id"])["updatedAt"] >= entry["updatedAt"]
    deleted = client.media.list(KalturaMediaEntryFilter(idEqual=entry["id"], statusIn=ALL_STATUSES)).objects
    assert deleted[0].status.getValue() == "3"


def test_base_entry_list_and_get(sim, client):
    entry = pick(sim)
    response = client.baseEntry.list(KalturaBaseEntryFilter(idEqual=entry["id"]))
    assert isinstance(response, KalturaBaseEntryListResponse)
    assert response.totalCount == 1
    got = client.baseEntry.get(entry["id"])
    assert isinstance(got, KalturaMediaEntry)
    assert (got.id, got.name, got.duration, got.lastPlayedAt) == (
        entry["id"],
        entry["name"],
        entry["duration"],
        entry["lastPlayedAt"],
    )


# --- the 10,000-match limit -----------------------------------------------------------------------


def test_big_catalogue_is_generated_quickly(big_sim):
    assert len(big_sim.state.all_entries()) == 10_500
    assert big_sim.startup_cpu_seconds < 5


def test_pages_past_the_10000th_match_are_refused(big_sim):
    client = connect(big_sim)
    filter_ = KalturaMediaEntryFilter(statusIn=ALL_STATUSES, orderBy="+createdAt")
    last_full = client.media.list(filter_, KalturaFilterPager(pageSize=500, pageIndex=20))
    assert len(last_full.objects) == 500
    assert last_full.totalCount == 10_500
    error = error_of(client.media.list, filter_, KalturaFilterPager(pageSize=500, pageIndex=21))
    assert error.code == "QUERY_EXCEEDED_MAX_MATCHES_ALLOWED"
    straddling = client.media.list(filter_, KalturaFilterPager(pageSize=300, pageIndex=34))  # matches 9,901-10,200
    assert len(straddling.objects) == 100
    assert straddling.totalCount == 10_500


def test_a_bulk_upload_second_holds_more_than_500_entries(big_sim):
    client = connect(big_sim)
    second, size = collections.Counter(e["createdAt"] for e in big_sim.state.all_entries()).most_common(1)[0]
    assert size > 500
    window = KalturaMediaEntryFilter(
        createdAtGreaterThanOrEqual=second, createdAtLessThanOrEqual=second, statusIn=ALL_STATUSES, orderBy="+createdAt"
    )
    first = client.media.list(window, KalturaFilterPager(pageSize=200)).objects
    assert client.media.list(window).totalCount == size
    window.idNotIn = ",".join(e.id for e in first)
    assert client.media.list(window).totalCount == size - 150


def _brute_force_list(state, filter_, params):
    """What an entry list returns by filtering the whole catalogue, sorting and paging (the reference)."""
    from kaltura_sim import api

    matches = list(filter(api._entry_filter(state, filter_), state.entries.values()))
    api._sort(matches, api.p_str(filter_, "orderBy"), api.ENTRY_ORDER, "-createdAt")
    return [e["id"] for e in api._page(matches, params, capped=True)], len(matches)


def test_indexed_entry_lists_match_a_full_filter_and_sort():
    from kaltura_sim import api
    from kaltura_sim.errors import KalturaError

    def outcome(run):
        try:
            return run()
        except KalturaError as error:
            return ("error", error.code)

    def indexed(state, filter_, params):
        result = api._list_entries(state, api.Call("media", "list", {"filter": filter_, **params}), "X")
        return [o["id"] for o in result["objects"]], result["totalCount"]

    # The reference sorts ties by creation: compare it with the index in the mode that orders ties so too.
    state = SimState(entries=1500, seed=4, stable_ties=True)
    rng = __import__("random").Random(7)
    ids = list(state.entries)
    times = sorted({e["createdAt"] for e in state.entries.values()} | {e["updatedAt"] for e in state.entries.values()})
    orders = ["+createdAt", "-createdAt", "+updatedAt", "-updatedAt", "+recent", "-recent", None, "+plays", "x"]
    for round_ in range(1200):
        if round_ % 40 == 0:  # changes between lists: the index must follow them
            entry = state.entries[rng.choice(ids)]
            kind = rng.randrange(5)
            if kind == 4 and not entry["replacingEntryId"]:
                state.start_replacement(entry, "/never-converted")  # adds a hidden temporary entry
            elif kind == 0:
                state.update_entry(entry, {"name": f"renamed {round_}"})
                entry["updatedAt"] = rng.choice(times)
            elif kind == 1:
                state.delete_entry(entry["id"])
            elif kind == 2:
                ids.append(state.add_entry(createdAt=rng.choice(times)))
            else:
                state.set_status(entry, rng.choice([0, 1, 2, 3, 7]))
        filter_ = {"objectType": "KalturaMediaEntryFilter"}
        if order := rng.choice(orders):
            filter_["orderBy"] = order
        for column in ("createdAt", "updatedAt"):
            if rng.random() < 0.5:
                filter_[f"{column}GreaterThanOrEqual"] = rng.choice(times)
            if rng.random() < 0.3:
                filter_[f"{column}LessThanOrEqual"] = rng.choice(times)
        if rng.random() < 0.6:
            filter_["idNotIn"] = ",".join(rng.sample(ids, rng.randint(1, 200)))
        statuses = rng.random()
        if statuses < 0.4:
            filter_["statusIn"] = ALL_STATUSES
        elif statuses < 0.5:
            filter_["statusNotIn"] = "2"
        elif statuses < 0.6:
            filter_["statusEqual"] = "3"
        if rng.random() < 0.1:
            filter_["tagsLike"] = "a"
        if rng.random() < 0.1:
            filter_["idIn"] = ",".join(rng.sample(ids, 30))
        params = {"pager": {"pageSize": rng.choice([1, 30, 500, 700]), "pageIndex": rng.choice([1, 1, 2, 5, 21])}}
        expected = outcome(lambda f=filter_, p=params: _brute_force_list(state, f, p))
        assert outcome(lambda f=filter_, p=params: indexed(state, f, p)) == expected, (filter_, params)


def test_a_sync_walk_page_does_not_scan_the_whole_catalogue(big_sim):
    from kaltura_sim import api

    state = big_sim.state
    first = min(e["createdAt"] for e in state.entries.values())
    filter_ = {
        "objectType": "KalturaMediaEntryFilter",
        "orderBy": "+createdAt",
        "statusIn": ALL_STATUSES,
        "createdAtGreaterThanOrEqual": first,
        "idNotIn": ",".join(list(state.entries)[:150]),
    }
    call = api.Call("media", "list", {"filter": filter_, "pager": {"pageSize": 500}})
    with state.lock:
        api.media_list(state, call)  # builds the index
        started = time.process_time()
        for _ in range(20):
            result = api.media_list(state, call)
        per_page = (time.process_time() - started) / 20
    expected_first = _brute_force_list(state, filter_, {"pager": {"pageSize": 500}})[0][0]
    assert (result["objects"][0]["id"], result["totalCount"]) == (expected_first, 10_500 - 150)
    assert per_page < 0.05


# --- multirequests --------------------------------------------------------------------------------


def test_multirequest_resolves_references_and_returns_failures_in_the_list(sim, client):
    entry = pick(sim)
    client.startMultiRequest()
    got = client.media.get(entry["id"])
    client.flavorAsset.list(KalturaFlavorAssetFilter(entryIdEqual=got.id))
    client.media.get("0_missing0")
    client.media.list(KalturaMediaEntryFilter(idEqual=got.id))
    results = client.doMultiRequest()
    assert results[0].id == entry["id"]
    assert {f.entryId for f in results[1].objects} == {entry["id"]}
    assert len(results[1].objects) == len(sim.state.get_flavors(entry["id"]))
    assert isinstance(results[2], KalturaException)
    assert results[2].code == "ENTRY_ID_NOT_FOUND"
    assert results[3].totalCount == 1


def test_multirequest_property_paths(sim, client):
    entry = pick(sim)
    client.startMultiRequest()
    listed = client.media.list(KalturaMediaEntryFilter(idEqual=entry["id"]))
    client.media.get(listed.objects[0].id)  # {1:result:objects:0:id}
    results = client.doMultiRequest()
    assert results[1].id == entry["id"]


def profile(kind, fields):
    return KalturaDetachedResponseProfile(type=kind, fields=fields)


def test_response_profiles_include_or_exclude_fields(sim, client):
    entry = pick(sim)
    client.setResponseProfile(profile(KalturaResponseProfileType.INCLUDE_FIELDS, "id,name,createdAt"))
    listed = client.media.list(KalturaMediaEntryFilter(idEqual=entry["id"]))
    assert listed.totalCount == 1  # the list response itself is not profiled
    got = listed.objects[0]
    assert type(got).__name__ == "KalturaMediaEntry"  # objectType is always kept
    assert (got.id, got.name, got.createdAt) == (entry["id"], entry["name"], entry["createdAt"])
    assert got.tags is NotImplemented and got.status is NotImplemented and got.plays is NotImplemented

    client.setResponseProfile(profile(KalturaResponseProfileType.EXCLUDE_FIELDS, "description,tags"))
    got = client.media.get(entry["id"])
    assert got.description is NotImplemented and got.tags is NotImplemented
    assert got.name == entry["name"] and int(got.status.getValue()) == entry["status"]

    # The client sends its request configuration with every call: each sub-request has its own profile.
    client.startMultiRequest()
    client.setResponseProfile(profile(KalturaResponseProfileType.INCLUDE_FIELDS, "id,entryId,isOriginal"))
    client.flavorAsset.list(KalturaFlavorAssetFilter(entryIdEqual=entry["id"]))
    client.setResponseProfile(profile(KalturaResponseProfileType.INCLUDE_FIELDS, "id"))
    client.media.get(entry["id"])
    flavors, got = client.doMultiRequest()
    assert {f.id for f in flavors.objects} == {f["id"] for f in sim.state.get_flavors(entry["id"])}
    assert all(f.entryId == entry["id"] and f.size is NotImplemented for f in flavors.objects)
    assert any(f.isOriginal for f in flavors.objects)
    assert got.id == entry["id"] and got.name is NotImplemented

    # Without a profile, every field comes back again.
    client.requestConfiguration.pop("responseProfile")
    got = client.media.get(entry["id"])
    assert got.tags == entry["tags"] and got.description == entry["description"]


def test_counters_count_a_multirequest_once(sim, client):
    sim.state.reset_counters()
    client.media.list()
    client.media.list()
    client.startMultiRequest()
    client.media.list()
    client.media.get(pick(sim)["id"])
    client.flavorAsset.list()
    client.doMultiRequest()
    assert sim.state.counters == {"media.list": 2, "multirequest": 1}
    assert sim.state.subrequest_counters == {"media.list": 1, "media.get": 1, "flavorasset.list": 1}
    sim.state.reset_counters()
    assert sim.state.counters == {}


# --- flavors and downloads ------------------------------------------------------------------------


def test_flavor_list_with_params_and_download(sim, client):
    entry = pick(sim)
    flavors = client.flavorAsset.list(KalturaFlavorAssetFilter(entryIdEqual=entry["id"])).objects
    original = next(f for f in flavors if f.isOriginal)
    assert original.flavorParamsId == 0 and original.tags == "source"
    transcodes = [f for f in flavors if not f.isOriginal]
    assert 2 <= len(transcodes) <= 5
    assert all(f.tags == "mobile,web,mbr" and f.isWeb for f in transcodes)

    with_params = client.flavorAsset.getFlavorAssetsWithParams(entry["id"])
    assert {w.flavorAsset.id for w in with_params if w.flavorAsset} == {f.id for f in flavors}
    assert 0 in {w.flavorParams.id for w in with_params}

    sim.state.reset_counters()
    url = client.flavorAsset.getUrl(original.id)
    assert url.startswith(sim.url)
    response = download(url)
    assert hashlib.sha256(response.content).hexdigest() == sim.state.original_bytes_sha256(entry["id"])
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert original.size == round(len(response.content) / 1024)
    assert original.sizeInBytes in (0, len(response.content))
    assert sim.state.counters["download"] == 1

    resumed = download(url, {"Range": "bytes=100-"})
    assert resumed.status_code == 206
    assert resumed.headers["Content-Range"] == f"bytes 100-{len(response.content) - 1}/{len(response.content)}"
    assert response.content[:100] + resumed.content == response.content


def test_flavor_list_entry_id_in_is_not_cut(sim, client):
    entries = ready_entries(sim)[:200]
    expected = sum(1 for e in entries for f in sim.state.get_flavors(e["id"]) if f["status"] != DELETED)
    response = client.flavorAsset.list(
        KalturaFlavorAssetFilter(entryIdIn=",".join(e["id"] for e in entries)), KalturaFilterPager(pageSize=500)
    )
    assert response.totalCount == expected > 150
    assert {f.entryId for f in response.objects} <= {e["id"] for e in entries}


def test_get_url_needs_a_ready_flavor(sim, client):
    entry = pick(sim, lambda e, flavors: any(f["status"] not in (READY, DELETED) for f in flavors))
    flavor = next(f for f in sim.state.get_flavors(entry["id"]) if f["status"] not in (READY, DELETED))
    assert error_of(client.flavorAsset.getUrl, flavor["id"]).code == "FLAVOR_ASSET_IS_NOT_READY"
    assert error_of(client.flavorAsset.getUrl, "0_nosuchfl").code == "FLAVOR_ASSET_ID_NOT_FOUND"


def test_truncated_and_throttled_downloads(sim, client, state):
    entry_id = state.add_entry(original_size_bytes=150_000)
    url = client.flavorAsset.getUrl(original_of(client, entry_id).id)
    parts = urllib.parse.urlsplit(url)

    state.set_download_faults(truncate_next=1, truncate_at=0.5)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", parts.path)
    response = connection.getresponse()
    assert response.getheader("Content-Length") == "150000"
    with pytest.raises(http.client.IncompleteRead) as raised:
        response.read()
    assert len(raised.value.partial) == 75_000
    connection.close()
    assert len(download(url).content) == 150_000  # only the next download was cut

    state.set_download_faults(bytes_per_second=300_000)
    started = time.monotonic()
    body = download(url).content
    assert time.monotonic() - started >= 0.4
    assert hashlib.sha256(body).hexdigest() == state.original_bytes_sha256(entry_id)
    state.set_download_faults()


def test_a_download_can_be_redirected(sim, client, state):
    entry_id = state.add_entry(original_size_bytes=10_000)
    flavor_id = original_of(client, entry_id).id
    url = client.flavorAsset.getUrl(flavor_id)
    # Through the control API, as a test in another process would.
    requests.post(
        f"{sim.url}/sim/flavors/{flavor_id}/redirect", json={"location": "https://cdn.example/a.mp4"}, timeout=10
    ).raise_for_status()
    first = requests.get(url, allow_redirects=False, timeout=10)
    assert first.status_code == 302 and first.headers["Location"] == "https://cdn.example/a.mp4"
    assert len(download(url).content) == 10_000  # only the next one (count=1)
    state.redirect_download(flavor_id, url, count=2, status=308)
    assert requests.get(url, allow_redirects=False, timeout=10).status_code == 308
    state.clear_faults()
    assert requests.get(url, allow_redirects=False, timeout=10).status_code == 200
    with pytest.raises(ValueError):
        state.redirect_download(flavor_id, url, status=200)
    missing = requests.post(f"{sim.url}/sim/flavors/0_nosuchfl/redirect", json={"location": url}, timeout=10)
    assert missing.status_code == 404


def test_thumbnail_update_and_image(sim, client, state):
    entry = pick(sim)
    updated = client.media.updateThumbnail(entry["id"], 5)
    assert updated.thumbnailUrl != entry["thumbnailUrl"]
    assert updated.updatedAt >= entry["updatedAt"]
    image = requests.get(updated.thumbnailUrl, timeout=10)
    assert image.headers["Content-Type"] == "image/png" and image.content.startswith(b"\x89PNG")

    state.inject_fault("kaltura_error", service="media", action="updateThumbnail", code="INTERNAL_SERVER_ERROR")
    assert error_of(client.media.updateThumbnail, entry["id"], 5).code == "INTERNAL_SERVER_ERROR"
    assert client.media.updateThumbnail(entry["id"], 5).thumbnailUrl


# --- uploads and content replacement --------------------------------------------------------------


def test_chunked_upload_then_replacement(sim, client, tmp_path):
    entry = pick(sim)
    before = {f.id: f for f in client.flavorAsset.list(KalturaFlavorAssetFilter(entryIdEqual=entry["id"])).objects}
    data = bytes(range(256)) * 12_000 + b"tail"  # ~3 MB in three chunks
    source = tmp_path / "replacement.mp4"
    source.write_bytes(data)
    third = len(data) // 3

    token = client.uploadToken.add(KalturaUploadToken(fileName="replacement.mp4", fileSize=len(data)))
    assert token.status.getValue() == 0
    with open(source, "rb") as handle:
        handle.seek(0)
        first = client.uploadToken.upload(token.id, io.BytesIO(handle.read(third)), False, False)
        assert (first.status.getValue(), first.uploadedFileSize) == (1, third)
        # Chunks may arrive out of order: the third waits until the second fills the gap.
        handle.seek(2 * third)
        late = client.uploadToken.upload(token.id, io.BytesIO(handle.read()), True, False, 2 * third)
        assert late.uploadedFileSize == third
        handle.seek(third)
        filled = client.uploadToken.upload(token.id, io.BytesIO(handle.read(third)), True, False, third)
        assert filled.uploadedFileSize == len(data)
    with open(tmp_path / "empty.bin", "wb"):
        pass
    with open(tmp_path / "empty.bin", "rb") as handle:
        done = client.uploadToken.upload(token.id, handle, True, True, len(data))
    assert (done.status.getValue(), done.uploadedFileSize) == (2, len(data))
    assert client.uploadToken.get(token.id).status.getValue() == 2

    replacing = client.media.updateContent(entry["id"], KalturaUploadedFileTokenResource(token=token.id))
    assert replacing.status.getValue() == "2"
    assert replacing.replacingEntryId
    # Still READY, still listed, still playing the old flavors.
    assert client.media.list(KalturaMediaEntryFilter(idEqual=entry["id"])).totalCount == 1
    during = {f.id: f for f in client.flavorAsset.list(KalturaFlavorAssetFilter(entryIdEqual=entry["id"])).objects}
    assert {k: v.sizeInBytes for k, v in during.items()} == {k: v.sizeInBytes for k, v in before.items()}
    second = upload_bytes(client, b"another video")
    error = error_of(client.media.updateContent, entry["id"], KalturaUploadedFileTokenResource(token=second))
    assert error.code == "ENTRY_REPLACEMENT_ALREADY_EXISTS"

    sim.state.complete_conversions()
    after = client.media.get(entry["id"])
    assert not after.replacingEntryId
    assert after.status.getValue() == "2"
    assert after.updatedAt >= replacing.updatedAt
    flavors = client.flavorAsset.list(KalturaFlavorAssetFilter(entryIdEqual=entry["id"])).objects
    assert {f.id for f in flavors} == set(before)
    original = next(f for f in flavors if f.isOriginal)
    assert original.sizeInBytes == len(data) and original.version == before[original.id].version + 1
    assert all(f.status.getValue() == 2 for f in flavors)
    body = download(client.flavorAsset.getUrl(original.id)).content
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
    assert sim.state.original_bytes_sha256(entry["id"]) == hashlib.sha256(data).hexdigest()
    # The token was used up.
    error = error_of(client.media.updateContent, entry["id"], KalturaUploadedFileTokenResource(token=token.id))
    assert error.code == "UPLOAD_TOKEN_INVALID_STATUS_FOR_ADD_ENTRY"


def test_replacement_completes_lazily_after_the_delay(sim, client):
    entry = pick(sim)
    sim.state.conversion_delay = 0.0
    try:
        token = upload_bytes(client, b"placeholder bytes" * 100, chunks=2)
        replacing = client.media.updateContent(entry["id"], KalturaUploadedFileTokenResource(token=token))
        assert replacing.replacingEntryId
        assert not client.media.get(entry["id"]).replacingEntryId
    finally:
        sim.state.conversion_delay = 3600


def test_a_conversion_delay_keeps_the_replacement_converting_until_it_has_passed(sim, client):
    entry = pick(sim)
    sim.state.conversion_delay = 1.0
    try:
        token = upload_bytes(client, b"placeholder bytes" * 100)
        client.media.updateContent(entry["id"], KalturaUploadedFileTokenResource(token=token))
        assert client.media.get(entry["id"]).replacingEntryId  # still converting
        time.sleep(1.1)
        assert not client.media.get(entry["id"]).replacingEntryId
        assert original_of(client, entry["id"]).sizeInBytes == len(b"placeholder bytes" * 100)
    finally:
        sim.state.conversion_delay = 3600


def test_a_conversion_seen_late_carries_the_time_it_finished_not_the_time_it_was_seen(sim, client):
    """Kaltura stamps a conversion's end when it ends; the simulator, which finishes conversions at the first
    request after they are due, must not stamp that request's time (a client measuring conversions by the
    stamps would see them as long as its wait between checks)."""
    entry = pick(sim)
    sim.state.conversion_delay = 1.0
    try:
        token = upload_bytes(client, b"placeholder bytes" * 100)
        sent = time.time()
        client.media.updateContent(entry["id"], KalturaUploadedFileTokenResource(token=token))
        time.sleep(3.2)  # seen two seconds after it was due
        original = original_of(client, entry["id"])
        assert original.sizeInBytes == len(b"placeholder bytes" * 100)
        assert sent <= original.updatedAt + 1 and original.updatedAt <= sent + 2, (sent, original.updatedAt)
        assert client.media.get(entry["id"]).updatedAt <= sent + 2
    finally:
        sim.state.conversion_delay = 3600


def test_a_latency_per_request_slows_every_call_and_download(sim, client, state):
    entry = pick(sim)
    url = client.flavorAsset.getUrl(original_of(client, entry["id"]).id)
    state.latency_ms = 300
    try:
        started = time.monotonic()
        client.media.get(entry["id"])
        download(url)
        assert time.monotonic() - started >= 0.6
        requests.get(f"{sim.url}/sim/health", timeout=5)  # the control API is not slowed (tests drive it)
    finally:
        state.latency_ms = 0
    started = time.monotonic()
    client.media.get(entry["id"])
    assert time.monotonic() - started < 0.3


def test_a_download_speed_cap_holds_for_every_connection_until_turned_off(sim, client, state):
    entry_id = state.add_entry(original_size_bytes=150_000)
    url = client.flavorAsset.getUrl(original_of(client, entry_id).id)
    state.download_bytes_per_second = 300_000
    try:
        state.set_download_faults()  # resetting the faults leaves the cap as it is
        for _ in range(2):
            started = time.monotonic()
            body = download(url).content
            assert time.monotonic() - started >= 0.4
            assert hashlib.sha256(body).hexdigest() == state.original_bytes_sha256(entry_id)
    finally:
        state.download_bytes_per_second = None
    started = time.monotonic()
    download(url)
    assert time.monotonic() - started < 0.4


def test_an_owner_replaces_the_media_new_version_same_entry_and_tags(sim, client):
    """KMC/KMS "Replace media": the original keeps its id and gets a new version, size and bytes; tags stay."""
    entry = pick(sim)
    sim.state.set_tags(entry["id"], "lecture, archived_to_s3")
    before = original_of(client, entry["id"])
    data = b"the owner's new recording" * 1000
    sim.state.replace_media(entry["id"], data)
    during = client.media.get(entry["id"])
    assert during.replacingEntryId and original_of(client, entry["id"]).version == before.version  # still old
    sim.state.complete_conversions()
    after, original = client.media.get(entry["id"]), original_of(client, entry["id"])
    assert (after.id, after.tags) == (entry["id"], "lecture, archived_to_s3") and not after.replacingEntryId
    assert original.id == before.id and int(original.version) == int(before.version) + 1
    assert original.sizeInBytes == len(data)
    assert sim.state.original_bytes_sha256(entry["id"]) == hashlib.sha256(data).hexdigest()
    assert f"/v/{original.version}/" in client.flavorAsset.getUrl(original.id)


def test_a_failed_conversion_leaves_the_entry_as_it_was_and_the_replacement_stuck(sim, client):
    """As Kaltura does: replacementStatus 4, replacingEntryId still set, another updateContent refused."""
    entry = pick(sim)
    before = sim.state.original_bytes_sha256(entry["id"])
    sim.state.failing_conversions = 1
    client.media.updateContent(entry["id"], KalturaUploadedFileTokenResource(token=upload_bytes(client, b"x" * 999)))
    sim.state.complete_conversions()
    after = client.media.get(entry["id"])
    assert after.replacementStatus.getValue() == "4" and after.replacingEntryId
    assert after.status.getValue() == "2" and sim.state.original_bytes_sha256(entry["id"]) == before
    retry = KalturaUploadedFileTokenResource(token=upload_bytes(client, b"y" * 999))
    assert error_of(client.media.updateContent, entry["id"], retry).code == "ENTRY_REPLACEMENT_ALREADY_EXISTS"


def test_replacement_with_an_mp4_takes_its_duration(sim, client):
    entry = pick(sim)
    token = upload_bytes(client, SHORT_MP4.read_bytes())
    client.media.updateContent(entry["id"], KalturaUploadedFileTokenResource(token=token))
    sim.state.complete_conversions()
    after = client.media.get(entry["id"])
    assert 1 <= after.duration <= 60 and after.msDuration // 1000 == after.duration


def test_the_original_uploaded_again_gets_its_own_duration_back(sim, client):
    # Kaltura probes what it converts: the placeholder lasts seconds, the restored original as long as before.
    entry = pick(
        sim,
        lambda e, flavors: (
            e["status"] == READY
            and e["mediaType"] == 1
            and e["duration"] > 120
            and has_ready_original(flavors)
            and "flavors_deleted" not in e["tags"]
        ),
    )
    original_bytes = download(client.flavorAsset.getUrl(original_of(client, entry["id"]).id)).content
    before = client.media.get(entry["id"])

    def replace_with(data: bytes):
        client.media.updateContent(entry["id"], KalturaUploadedFileTokenResource(token=upload_bytes(client, data)))
        sim.state.complete_conversions()
        return client.media.get(entry["id"])

    placeholder = replace_with(SHORT_MP4.read_bytes())
    assert placeholder.duration < 60
    restored = replace_with(original_bytes)
    assert (restored.duration, restored.msDuration) == (before.duration, before.msDuration)
    # Bytes of the same size that are not the original: nothing to probe, the duration stays.
    replace_with(SHORT_MP4.read_bytes())
    assert replace_with(bytes(len(original_bytes))).duration == placeholder.duration


def test_upload_token_errors(client):
    assert error_of(client.uploadToken.get, "0_nosuchtoken").code == "UPLOAD_TOKEN_NOT_FOUND"
    token = client.uploadToken.add(KalturaUploadToken(fileName="a.mp4"))
    error = error_of(client.uploadToken.upload, token.id, io.BytesIO(b"x" * 10), True, False, 0)
    assert error.code == "UPLOAD_TOKEN_CANNOT_RESUME"
    client.uploadToken.upload(token.id, io.BytesIO(b"x" * 100), False, False)
    error = error_of(client.uploadToken.upload, token.id, io.BytesIO(b"y" * 10), True, True, 150)
    assert error.code == "UPLOAD_TOKEN_CANNOT_MATCH_EXPECTED_SIZE"
    partial = client.uploadToken.get(token.id)
    assert partial.status.getValue() == 1
    resource = KalturaUploadedFileTokenResource(token=token.id)
    error = error_of(client.media.updateContent, "0_nosuchid", resource)
    assert error.code == "ENTRY_ID_NOT_FOUND"
    client.uploadToken.upload(token.id, io.BytesIO(b"z" * 10), True, True, -1)
    assert client.uploadToken.get(token.id).uploadedFileSize == 110
    error = error_of(client.uploadToken.upload, token.id, io.BytesIO(b"again"), False, True)
    assert error.code == "UPLOAD_TOKEN_INVALID_STATUS_FOR_UPLOAD"


def test_update_content_needs_a_full_upload(sim, client):
    entry = pick(sim)
    token = client.uploadToken.add(KalturaUploadToken(fileName="a.mp4"))
    client.uploadToken.upload(token.id, io.BytesIO(b"x" * 100), False, False)
    error = error_of(client.media.updateContent, entry["id"], KalturaUploadedFileTokenResource(token=token.id))
    assert error.code == "UPLOAD_TOKEN_INVALID_STATUS_FOR_ADD_ENTRY"
    assert not client.media.get(entry["id"]).replacingEntryId


def test_add_content_only_without_content(sim, client):
    entry = pick(sim)
    token = upload_bytes(client, b"video")
    error = error_of(client.media.addContent, entry["id"], KalturaUploadedFileTokenResource(token=token))
    assert error.code == "ENTRY_ALREADY_WITH_CONTENT"


def test_deleting_every_flavor_leaves_no_content_then_add_content(sim, client):
    entry = pick(sim)
    flavors = client.flavorAsset.list(KalturaFlavorAssetFilter(entryIdEqual=entry["id"])).objects
    for flavor in flavors:
        assert client.media.get(entry["id"]).status.getValue() == "2"
        client.flavorAsset.delete(flavor.id)
    emptied = client.media.get(entry["id"])
    assert emptied.status.getValue() == "7"
    assert emptied.updatedAt >= entry["updatedAt"]
    assert error_of(client.flavorAsset.delete, flavors[0].id).code == "FLAVOR_ASSET_ID_NOT_FOUND"
    assert client.flavorAsset.list(KalturaFlavorAssetFilter(entryIdEqual=entry["id"])).totalCount == 0
    everything = KalturaFlavorAssetFilter(entryIdEqual=entry["id"], statusIn="-1,0,1,2,3,4,5,6,7,8,9")
    assert client.flavorAsset.list(everything).totalCount == len(flavors)

    data = b"restored original " * 1000
    added = client.media.addContent(entry["id"], KalturaUploadedFileTokenResource(token=upload_bytes(client, data)))
    assert added.status.getValue() == "1"
    sim.state.complete_conversions()
    ready = client.media.get(entry["id"])
    assert ready.status.getValue() == "2"
    original = original_of(client, entry["id"])
    assert original.id not in {f.id for f in flavors}
    assert original.sizeInBytes == len(data) and original.status.getValue() == 2
    assert hashlib.sha256(download(client.flavorAsset.getUrl(original.id)).content).digest() == (
        hashlib.sha256(data).digest()
    )
    transcodes = client.flavorAsset.list(KalturaFlavorAssetFilter(entryIdEqual=entry["id"])).totalCount - 1
    assert transcodes >= 1


# --- categories and users -------------------------------------------------------------------------


def test_categories_category_entries_and_users(sim, client):
    categories = client.category.list(KalturaCategoryFilter(), KalturaFilterPager(pageSize=500)).objects
    assert 35 <= len(categories) <= 45
    assert max(c.depth for c in categories) == 3
    by_id = {c.id: c for c in categories}
    for category in categories:
        if category.parentId:
            parent = by_id[category.parentId]
            assert category.fullName == f"{parent.fullName}>{category.name}"
            assert category.fullIds == f"{parent.fullIds}>{category.id}"
    root = next(c for c in categories if c.fullName == "Lectures")
    subtree = client.category.list(KalturaCategoryFilter(fullIdsStartsWith=root.fullIds)).objects
    assert {c.fullName.split(">")[0] for c in subtree} == {"Lectures"} and len(subtree) > 5
    assert root.entriesCount >= max(c.entriesCount for c in subtree if c.id != root.id)

    entry = pick(sim, lambda e, f: e["status"] == READY and e["categoriesIds"].count(",") >= 1)
    rows = client.categoryEntry.list(KalturaCategoryEntryFilter(entryIdEqual=entry["id"])).objects
    assert sorted(r.categoryId for r in rows) == sorted(int(i) for i in entry["categoriesIds"].split(","))
    assert all(r.status.getValue() == 2 and r.entryId == entry["id"] for r in rows)

    user_client = connect(sim, ks_type=KalturaSessionType.USER)
    assert error_of(user_client.categoryEntry.list).code == "MUST_FILTER_ON_ENTRY_OR_CATEGORY"
    assert client.categoryEntry.list().totalCount > 0

    user = client.user.get(entry["userId"])
    assert user.id == entry["userId"]
    assert user.email in (f"{user.id}@example.edu", "")  # a few accounts have no email
    assert user.firstName and user.fullName == f"{user.firstName} {user.lastName}"
    assert error_of(client.user.get, "nobody-here").code == "INVALID_USER_ID"


# --- injected faults ------------------------------------------------------------------------------


def test_fault_kinds_as_the_client_sees_them(client, state):
    state.inject_fault("http500")
    with pytest.raises(KalturaClientException) as raised:
        client.media.list()
    assert raised.value.code == KalturaClientException.ERROR_RESULT_NOT_FOUND  # -8: an HTML page has no result

    state.inject_fault("drop")
    with pytest.raises(KalturaClientException) as raised:
        client.media.list()
    assert raised.value.code == KalturaClientException.ERROR_CONNECTION_FAILED  # -4

    state.inject_fault("kaltura_error", code="SERVICE_FORBIDDEN", message="The access to service [media] is forbidden")
    error = error_of(client.media.list)
    assert (error.code, error.message) == ("SERVICE_FORBIDDEN", "The access to service [media] is forbidden")

    state.inject_fault("bad_gateway")
    with pytest.raises(AttributeError):  # the client parses "Bad Gateway" to None and calls .find on it
        client.media.list()

    assert client.media.list().totalCount > 0


def test_faults_count_and_aim(sim, client, state):
    state.inject_fault("http500", count=2, service="flavorasset", action="list")
    assert client.media.list().totalCount > 0
    for _ in range(2):
        with pytest.raises(KalturaClientException):
            client.flavorAsset.list()
    assert client.flavorAsset.list().totalCount > 0

    # Transport faults hit a multirequest holding the call; kaltura_error faults only its item.
    entry = pick(sim)
    state.inject_fault("http500", service="flavorasset")
    client.startMultiRequest()
    client.media.get(entry["id"])
    client.flavorAsset.list()
    with pytest.raises(KalturaClientException):
        client.doMultiRequest()
    state.inject_fault("kaltura_error", service="media", action="get", code="INTERNAL_SERVER_ERROR")
    client.startMultiRequest()
    client.media.get(entry["id"])
    client.media.get(entry["id"])
    first, second = client.doMultiRequest()
    assert isinstance(first, KalturaException) and first.code == "INTERNAL_SERVER_ERROR"
    assert second.id == entry["id"]


# --- the generated partner ------------------------------------------------------------------------


def test_generated_catalogue_has_the_awkward_cases():
    catalogue = SimState(entries=2000, seed=11, content_scale=1e-4)  # untouched by the other tests
    entries = catalogue.all_entries()
    assert len(entries) == 2000
    ids = [e["id"] for e in entries]
    assert len(set(ids)) == 2000 and all(re.fullmatch(r"0_[0-9a-z]{8}", i) for i in ids)
    assert collections.Counter(e["createdAt"] for e in entries).most_common(1)[0][1] > 500  # a bulk upload
    never = sum(e["lastPlayedAt"] is None for e in entries) / len(entries)
    assert 0.25 <= never <= 0.35
    assert all(e["plays"] == 0 for e in entries if e["lastPlayedAt"] is None)
    now = time.time()
    for entry in entries:
        assert entry["createdAt"] <= entry["updatedAt"] <= now
        assert entry["lastPlayedAt"] is None or entry["createdAt"] <= entry["lastPlayedAt"] <= now
    assert {-1, 0, 1, 2, 3, 4, 7} <= {e["status"] for e in entries}
    assert {1, 2, 5} <= {e["mediaType"] for e in entries}

    tags = [e["tags"].split(", ") for e in entries]
    placeholders = [e for e, t in zip(entries, tags, strict=True) if "flavors_deleted" in t]
    assert placeholders and all("archived_to_s3" in e["tags"] for e in placeholders)
    assert any("archived_to_s3" in t and "flavors_deleted" not in t for t in tags)
    assert any("not_archived" in t for t in tags)
    ready_placeholders = [e["id"] for e in placeholders if has_ready_original(catalogue.get_flavors(e["id"]))]
    assert len({catalogue.original_bytes_sha256(i) for i in ready_placeholders[:3]}) == 1  # one placeholder video

    flavors = {e["id"]: catalogue.get_flavors(e["id"]) for e in entries}
    ready = [e for e in entries if e["status"] == READY and e["sourceType"] != "5" and e["mediaType"] != 2]
    assert any(not any(f["isOriginal"] for f in flavors[e["id"]]) for e in ready)  # original missing
    assert any(f["isOriginal"] and f["status"] in (-1, 1) for e in ready for f in flavors[e["id"]])
    external = [e for e in entries if e["sourceType"] == "5"]
    assert external and all(not flavors[e["id"]] for e in external)
    assert any(e["flavorParamsIds"] == "0" for e in ready)  # source-only
    children = [e for e in entries if e["parentEntryId"]]
    assert children and all(e["parentEntryId"] in set(ids) for e in children)
    assert any(e["capabilities"] == "quiz.quiz" for e in entries)

    all_flavors = [f for fs in flavors.values() for f in fs]
    hidden_size = sum(f["sizeInBytes"] == 0 for f in all_flavors) / len(all_flavors)
    assert 0.04 <= hidden_size <= 0.16
    assert all(f["size"] == round(f["sizeInBytes"] / 1024) for f in all_flavors if f["sizeInBytes"])
    assert len(catalogue.users) == 50 and any(u["email"] is None for u in catalogue.users.values())


def test_the_generator_is_deterministic_for_a_seed():
    fixed_now = 1_790_000_000

    def snapshot(seed):
        state = SimState(entries=300, seed=seed, content_scale=1e-4, now=fixed_now)
        return [(e, state.get_flavors(e["id"])) for e in state.all_entries()]

    first = snapshot(3)
    assert first == snapshot(3)
    assert [e["id"] for e, _ in first] != [e["id"] for e, _ in snapshot(4)]


# --- control endpoints and the command line -------------------------------------------------------


def test_http_control_endpoints(sim, client, state):
    entry = pick(sim)
    played = requests.post(f"{sim.url}/sim/entries/{entry['id']}/play", json={"when": 1_700_000_000}, timeout=10)
    assert played.json()["lastPlayedAt"] == 1_700_000_000
    assert requests.get(f"{sim.url}/sim/entries/{entry['id']}", timeout=10).json()["plays"] == entry["plays"] + 1
    assert requests.get(f"{sim.url}/sim/entries/0_nosuchid", timeout=10).status_code == 404

    requests.post(f"{sim.url}/sim/counters/reset", timeout=10)
    client.media.list()
    assert requests.get(f"{sim.url}/sim/counters", timeout=10).json()["counters"] == {"media.list": 1}

    requests.post(f"{sim.url}/sim/faults", json={"kind": "kaltura_error", "code": "LOCK_TIMED_OUT"}, timeout=10)
    assert error_of(client.media.list).code == "LOCK_TIMED_OUT"

    added = requests.post(f"{sim.url}/sim/entries", json={"original_size_bytes": 4096}, timeout=10).json()["id"]
    digest = requests.get(f"{sim.url}/sim/entries/{added}/original-sha256", timeout=10).json()["sha256"]
    body = download(client.flavorAsset.getUrl(original_of(client, added).id)).content
    assert hashlib.sha256(body).hexdigest() == digest

    tagged = requests.post(f"{sim.url}/sim/entries/{added}/tags", json={"tags": "A, bb"}, timeout=10).json()
    assert tagged["tags"] == "bb"

    requests.post(f"{sim.url}/sim/users", json={"user_id": "jdoe", "email": "jdoe@example.edu"}, timeout=10)
    assert client.user.get("jdoe").email == "jdoe@example.edu"
    sim.state.add_user("jdoe", email=None)  # the address removed: an account without one
    assert client.user.get("jdoe").email in ("", None, NotImplemented)

    requests.post(f"{sim.url}/sim/sessions/expire", timeout=10)
    assert error_of(client.media.list).code == "INVALID_KS"


def test_command_line_runs_until_terminated():
    process = subprocess.Popen(
        [sys.executable, "-m", "kaltura_sim", "--port", "0", "--entries", "40", "--seed", "2"],
        cwd=SIM_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout=30)
        assert lines, "the simulator printed nothing"
        assert "sim-admin-secret" in lines[0] and "1234567" in lines[0]
        url = re.search(r"http://127\.0\.0\.1:(\d+)", lines[0]).group(0)
        assert not url.endswith(":0")
        client = KalturaClient(KalturaConfiguration(url))
        client.setKs(client.session.start("sim-admin-secret", "cli", KalturaSessionType.ADMIN, 1234567))
        assert client.media.list(KalturaMediaEntryFilter(statusIn=ALL_STATUSES)).totalCount == 40
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_library_without_the_old_tools_tags():
    # The demo's: nothing claims an S3 copy; everything else is there (placeholders only come from real jobs).
    catalogue = SimState(entries=600, seed=11, content_scale=1e-4, archive_tags=False)
    entries = catalogue.all_entries()
    assert len(entries) == 600
    state_tags = {"archived_to_s3", "flavors_deleted", "not_archived"}
    assert not any(state_tags & set(e["tags"].split(", ")) for e in entries)
    assert {1, 2, 5} <= {e["mediaType"] for e in entries} and any(e["tags"] for e in entries)
    tagged = SimState(entries=600, seed=11, content_scale=1e-4).all_entries()
    assert any(state_tags & set(e["tags"].split(", ")) for e in tagged)


# --- a partner's rate limit -----------------------------------------------------------------------


def test_above_the_rate_limit_calls_answer_action_blocked(sim, client):
    state = sim.state
    state.rate_limit.per_second = 3
    try:
        time.sleep(1.05)  # a fresh second
        answers = []
        for _ in range(5):
            try:
                client.media.list(KalturaMediaEntryFilter(), KalturaFilterPager(pageSize=1))
                answers.append("ok")
            except KalturaException as error:
                answers.append((error.code, error.message))
        assert answers[:3] == ["ok"] * 3
        assert answers[3:] == [("ACTION_BLOCKED", 'Action "list" in service "media" is blocked')] * 2
        # A multirequest is one request, refused whole; refused requests do not count against the limit.
        client.startMultiRequest()
        client.media.list(KalturaMediaEntryFilter(), KalturaFilterPager(pageSize=1))
        client.media.list(KalturaMediaEntryFilter(), KalturaFilterPager(pageSize=1))
        assert error_of(client.doMultiRequest).code == "ACTION_BLOCKED"
        client.multiRequestReturnType = None  # the client stays in multirequest mode after a failed one
        time.sleep(1.05)
        assert client.media.list(KalturaMediaEntryFilter(), KalturaFilterPager(pageSize=1)).totalCount > 0
        assert state.rate_limit.blocked == 3

        # Off over HTTP, as a separate process would be told.
        assert requests.post(f"{sim.url}/sim/rate-limit", json={"per_second": None}, timeout=5).ok
        for _ in range(10):
            client.media.list(KalturaMediaEntryFilter(), KalturaFilterPager(pageSize=1))
        assert requests.get(f"{sim.url}/sim/counters", timeout=5).json()["blocked"] == 3
    finally:
        state.rate_limit.per_second = None
        state.rate_limit.blocked = 0


def test_entry_lists_filter_on_duration(sim, client):
    entries = ready_entries(sim)
    low, high = 600, 1800
    wanted = {e["id"] for e in entries if low <= e["duration"] <= high}
    assert 0 < len(wanted) < len(entries)
    filter_ = KalturaMediaEntryFilter(durationGreaterThanOrEqual=low, durationLessThanOrEqual=high)
    got = set()
    page_index = 1
    while page := client.media.list(filter_, KalturaFilterPager(pageSize=500, pageIndex=page_index)).objects:
        got |= {e.id for e in page}
        page_index += 1
    assert got == wanted
