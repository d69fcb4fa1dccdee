"""The API actions: parameters in, result objects (dicts with an objectType) out.

List semantics follow the real service (see DOMAIN.md section 3): entry lists default to READY entries,
pageSize is clamped to 500 (default 30), pageIndex starts at 1, Sphinx-backed lists (entries, categories,
category entries) refuse pages that start at or past the 10,000th match while totalCount stays true, and their
`...In`/`...NotIn` id lists are silently cut to 150 ids. flavorAsset.list is a database query: no 10,000 cap and
no 150 cut.
"""

from __future__ import annotations

import collections
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from .errors import KalturaError
from .generator import (
    ENTRY_DELETED,
    ENTRY_NO_CONTENT,
    ENTRY_READY,
    FLAVOR_DELETED,
    FLAVOR_PARAMS,
    FLAVOR_READY,
    MEDIA_IMAGE,
)
from .state import (
    ADMIN_SESSION,
    CAPTION_DELETED,
    CAPTION_READY,
    CAPTION_SRT,
    CATEGORY_ENTRY_ACTIVE,
    SimState,
    public,
)
from .wire import MultiResult, UploadedFile

MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE = 500, 30
MAX_MATCHES = 10_000
MAX_IN_VALUES = 150
_RESULT_REFERENCE = re.compile(r"\{(\d+):result((?:[:.][^{}:.]+)*)\}")


@dataclass
class Call:
    service: str
    action: str
    params: dict[str, Any]
    files: dict[str, UploadedFile] = field(default_factory=dict)
    session: dict[str, Any] | None = None


# --- parameters -----------------------------------------------------------------------------------


def _raw(params: dict[str, Any], name: str) -> Any:
    if f"{name}__null" in params:
        return None
    return params.get(name)


def p_str(params: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = _raw(params, name)
    if isinstance(value, dict | list):
        value = None
    if required and (value is None or value == ""):
        raise KalturaError("MISSING_MANDATORY_PARAMETER", name)
    return None if value is None else str(value)


def p_int(params: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = p_str(params, name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(float(value))
    except ValueError:
        return default


def p_bool(params: dict[str, Any], name: str, default: bool = False) -> bool:
    value = p_str(params, name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def p_obj(params: dict[str, Any], name: str) -> dict[str, Any]:
    value = _raw(params, name)
    return value if isinstance(value, dict) else {}


def _id_list(value: str | None, limit: int | None = MAX_IN_VALUES) -> list[str] | None:
    if value is None or value.strip() == "":
        return None
    ids = [part.strip() for part in value.split(",") if part.strip()]
    return ids[:limit] if limit else ids


def _int_list(value: str | None, limit: int | None = None) -> set[int] | None:
    ids = _id_list(value, limit)
    if ids is None:
        return None
    return {int(float(i)) for i in ids if re.fullmatch(r"-?\d+(\.0*)?", i)}


def _pager(params: dict[str, Any]) -> tuple[int, int]:
    pager = p_obj(params, "pager")
    size = p_int(pager, "pageSize") or DEFAULT_PAGE_SIZE
    size = DEFAULT_PAGE_SIZE if size <= 0 else min(size, MAX_PAGE_SIZE)
    index = p_int(pager, "pageIndex") or 1
    return size, max(index, 1)


def _page(items: list, params: dict[str, Any], *, capped: bool) -> list:
    size, index = _pager(params)
    offset = (index - 1) * size
    end = offset + size
    if capped:
        # Sphinx's max_matches: no page may start at or past the 10,000th match, and a page that straddles
        # it stops there.
        if offset >= MAX_MATCHES:
            raise KalturaError("QUERY_EXCEEDED_MAX_MATCHES_ALLOWED")
        end = min(end, MAX_MATCHES)
    return items[offset:end]


def _list_response(object_type: str, objects: list, total: int) -> dict[str, Any]:
    return {"objectType": object_type, "objects": objects, "totalCount": total}


def _sort(items: list[dict], order_by: str | None, fields: dict[str, Callable[[dict], Any]], default: str) -> None:
    """Sort in place by one orderBy field; ties go by insertion sequence in the same direction (entry lists then
    shuffle them, as the search index does: SimState.shuffle_ties). Unknown fields fall back to the default."""
    order = (order_by or "").split(",")[0].strip()
    if order[1:] not in fields or order[:1] not in "+-":
        order = default
    key = fields[order[1:]]
    items.sort(key=lambda item: (key(item), item["_seq"]), reverse=order[0] == "-")


def _range(filter_: dict[str, Any], name: str) -> tuple[int | None, int | None]:
    return p_int(filter_, f"{name}GreaterThanOrEqual"), p_int(filter_, f"{name}LessThanOrEqual")


# --- tags -----------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    # Sphinx's charset_table for tags splits on everything but letters and digits, "_" included.
    return [word for word in re.split(r"[^0-9a-z]+", text.lower()) if word]


def _tag_match(words: list[str], query: str) -> bool:
    """A phrase match with prefixes: the query's words, in order, each start a consecutive word of the tags."""
    wanted = _words(query)
    if not wanted:
        return True
    for start in range(len(words) - len(wanted) + 1):
        if all(words[start + i].startswith(w) for i, w in enumerate(wanted)):
            return True
    return False


# --- entries --------------------------------------------------------------------------------------

ENTRY_ORDER = {
    "createdAt": lambda e: e["createdAt"],
    "updatedAt": lambda e: e["updatedAt"],
    "lastPlayedAt": lambda e: e["lastPlayedAt"] or 0,
    "plays": lambda e: e["plays"],
    "views": lambda e: e["views"],
    "name": lambda e: e["name"].lower(),
    "duration": lambda e: e["duration"],
    "mediaType": lambda e: e["mediaType"],
    "recent": lambda e: e["createdAt"],
    "partnerSortValue": lambda e: e["partnerSortValue"],
}


def _status_test(f: dict[str, Any]) -> Callable[[int], bool]:
    """Whether an entry status passes the filter's status conditions.

    KalturaBaseEntryFilter::setDefaultStatus: without a status filter only READY entries are listed; DELETED
    entries appear only when asked for by status."""
    status_equal = p_int(f, "statusEqual")
    status_in = _int_list(p_str(f, "statusIn"))
    status_not_in = _int_list(p_str(f, "statusNotIn"))
    if status_equal is None and status_in is None and status_not_in is None:
        status_equal = ENTRY_READY

    def ok(status: int) -> bool:
        if status_equal is not None and status != status_equal:
            return False
        if status_in is not None and status not in status_in:
            return False
        return status_not_in is None or (status not in status_not_in and status != ENTRY_DELETED)

    return ok


def _entry_filter(state: SimState, f: dict[str, Any]) -> Callable[[dict], bool]:
    tests: list[Callable[[dict], bool]] = [lambda e: not e["_hidden"]]
    if (value := p_str(f, "idEqual")) is not None:
        tests.append(lambda e, v=value: e["id"] == v)
    if (ids := _id_list(p_str(f, "idIn"))) is not None:
        tests.append(lambda e, v=set(ids): e["id"] in v)
    if (ids := _id_list(p_str(f, "idNotIn"))) is not None:
        tests.append(lambda e, v=set(ids): e["id"] not in v)

    status_ok = _status_test(f)
    tests.append(lambda e, t=status_ok: t(e["status"]))

    if (value := p_int(f, "mediaTypeEqual")) is not None:
        tests.append(lambda e, v=value: e["mediaType"] == v)
    if (types := _int_list(p_str(f, "mediaTypeIn"))) is not None:
        tests.append(lambda e, v=types: e["mediaType"] in v)
    for name in ("userId", "creatorId", "parentEntryId", "referenceId"):
        if (value := p_str(f, f"{name}Equal")) is not None:
            tests.append(lambda e, n=name, v=value: e[n] == v)
    if (users := _id_list(p_str(f, "userIdIn"))) is not None:
        tests.append(lambda e, v=set(users): e["userId"] in v)
    for name in ("createdAt", "updatedAt", "duration"):
        low, high = _range(f, name)
        if low is not None:
            tests.append(lambda e, n=name, v=low: e[n] >= v)
        if high is not None:
            tests.append(lambda e, n=name, v=high: e[n] <= v)
    low, high = _range(f, "lastPlayedAt")
    if low is not None:
        tests.append(lambda e, v=low: e["lastPlayedAt"] is not None and e["lastPlayedAt"] >= v)
    if high is not None:
        tests.append(lambda e, v=high: e["lastPlayedAt"] is not None and e["lastPlayedAt"] <= v)
    if (value := p_int(f, "lastPlayedAtLessThanOrEqualOrNull")) is not None:
        tests.append(lambda e, v=value: e["lastPlayedAt"] is None or e["lastPlayedAt"] <= v)

    if (query := p_str(f, "tagsLike")) is not None and query.strip():
        tests.append(lambda e, q=query: _tag_match(_words(e["tags"]), q))
    if (query := p_str(f, "tagsMultiLikeOr")) is not None and query.strip():
        items = [q for q in query.split(",") if q.strip()]
        tests.append(lambda e, v=items: any(_tag_match(_words(e["tags"]), q) for q in v))
    if (query := p_str(f, "tagsMultiLikeAnd")) is not None and query.strip():
        items = [q for q in query.split(",") if q.strip()]
        tests.append(lambda e, v=items: all(_tag_match(_words(e["tags"]), q) for q in v))

    def category_ids(entry: dict) -> set[int]:
        return {int(c) for c in entry["categoriesIds"].split(",") if c}

    if (wanted := _int_list(p_str(f, "categoriesIdsMatchOr"))) is not None:
        tests.append(lambda e, v=wanted: bool(category_ids(e) & v))
    if (wanted := _int_list(p_str(f, "categoriesIdsMatchAnd"))) is not None:
        tests.append(lambda e, v=wanted: v <= category_ids(e))
    if (ancestors := _int_list(p_str(f, "categoryAncestorIdIn"))) is not None:
        under = {c["id"] for c in state.categories.values() if {int(i) for i in c["fullIds"].split(">")} & ancestors}
        tests.append(lambda e, v=under: bool(category_ids(e) & v))
    if (text := p_str(f, "freeText")) is not None and text.strip():
        needle = text.strip().lower()
        tests.append(lambda e, v=needle: v in f"{e['name']} {e['description']} {e['tags']}".lower())
    return lambda entry: all(test(entry) for test in tests)


def _entry_object(state: SimState, entry: dict) -> dict[str, Any]:
    return {"objectType": "KalturaMediaEntry", **state.public_entry(entry)}


# Orders served from a sorted index (SimState.entry_index) instead of filtering and sorting the whole catalogue.
_INDEXED_ORDERS = {"createdAt": "createdAt", "recent": "createdAt", "updatedAt": "updatedAt"}


def _order(order_by: str | None, fields: dict[str, Any], default: str) -> str:
    """The orderBy in effect, as _sort resolves it."""
    order = (order_by or "").split(",")[0].strip()
    if order[1:] not in fields or order[:1] not in "+-":
        order = default
    return order


def _simple_entry_filter(f: dict[str, Any], column: str) -> bool:
    """Whether the filter's only conditions are a range on `column`, statuses and idNotIn (what a sync walk
    sends), so the total can be counted from statuses without running the full filter on each entry."""
    allowed = {
        "objectType",
        "orderBy",
        f"{column}GreaterThanOrEqual",
        f"{column}LessThanOrEqual",
        "idNotIn",
        "statusEqual",
        "statusIn",
        "statusNotIn",
    }
    return all(key.removesuffix("__null") in allowed for key in f)


def _indexed_entries(state: SimState, f: dict[str, Any], params: dict[str, Any], order: str) -> tuple[list, int]:
    """(page, totalCount) for an order on an indexed field: the same result as filtering every entry, sorting by
    (column, _seq) and paging, but only the entries within the filter's range on the column are looked at, and
    only as many as the page needs are run through the full filter."""
    column = _INDEXED_ORDERS[order[1:]]
    size, index = _pager(params)
    offset = (index - 1) * size
    end = offset + size
    if offset >= MAX_MATCHES:
        raise KalturaError("QUERY_EXCEEDED_MAX_MATCHES_ALLOWED")
    end = min(end, MAX_MATCHES)

    matches = _entry_filter(state, f)
    low, high = _range(f, column)
    ordered, hidden, start, stop = state.entry_index_range(column, low, high)
    positions = range(start, stop) if order[0] == "+" else range(stop - 1, start - 1, -1)
    found: list[dict] = []
    scanned = 0
    for scanned, position in enumerate(positions, 1):  # noqa: B007 - scanned is used after the loop
        entry = ordered[position]
        if matches(entry):
            found.append(entry)
            if len(found) == end:
                break
    else:
        return state.shuffle_ties(found, itemgetter(column))[offset:end], len(found)
    if not state.stable_ties:
        # The page ends inside a run of equal keys: any of the run's entries may come back in it.
        last = found[-1][column]
        while scanned < len(positions) and ordered[positions[scanned]][column] == last:
            entry = ordered[positions[scanned]]
            scanned += 1
            if matches(entry):
                found.append(entry)
    page = state.shuffle_ties(found, itemgetter(column))[offset:end]

    if _simple_entry_filter(f, column):
        # Count the range by status, then take out the hidden entries and the idNotIn entries that would match.
        status_ok = _status_test(f)
        counts = collections.Counter(state.entry_statuses(column)[start:stop])
        total = sum(n for status, n in counts.items() if status_ok(status))
        for position in hidden[bisect_left(hidden, start) : bisect_left(hidden, stop)]:
            total -= status_ok(ordered[position]["status"])
        for entry_id in set(_id_list(p_str(f, "idNotIn")) or ()):
            entry = state.entries.get(entry_id)
            if (
                entry is not None
                and not entry["_hidden"]
                and status_ok(entry["status"])
                and (low is None or entry[column] >= low)
                and (high is None or entry[column] <= high)
            ):
                total -= 1
    else:
        rest = positions[scanned:]
        total = len(found) + sum(1 for position in rest if matches(ordered[position]))
    return page, total


def _list_entries(state: SimState, call: Call, response_type: str) -> dict[str, Any]:
    f = p_obj(call.params, "filter")
    order = _order(p_str(f, "orderBy"), ENTRY_ORDER, "-createdAt")
    if order[1:] in _INDEXED_ORDERS:
        page, total = _indexed_entries(state, f, call.params, order)
    else:
        matches = list(filter(_entry_filter(state, f), state.entries.values()))
        _sort(matches, order, ENTRY_ORDER, "-createdAt")
        matches = state.shuffle_ties(matches, ENTRY_ORDER[order[1:]])
        page, total = _page(matches, call.params, capped=True), len(matches)
    return _list_response(response_type, [_entry_object(state, e) for e in page], total)


def media_list(state: SimState, call: Call) -> dict:
    return _list_entries(state, call, "KalturaMediaListResponse")


def baseentry_list(state: SimState, call: Call) -> dict:
    return _list_entries(state, call, "KalturaBaseEntryListResponse")


def entry_count(state: SimState, call: Call) -> int:
    return sum(1 for _ in filter(_entry_filter(state, p_obj(call.params, "filter")), state.entries.values()))


def entry_get(state: SimState, call: Call) -> dict:
    return _entry_object(state, state.find_entry(p_str(call.params, "entryId", required=True)))


# Properties media.update may change; the client sends only insertable/updatable ones anyway.
UPDATABLE = {
    "name",
    "description",
    "tags",
    "adminTags",
    "categoriesIds",
    "partnerData",
    "referenceId",
    "userId",
    "creatorId",
    "startDate",
    "endDate",
    "partnerSortValue",
    "licenseType",
    "accessControlId",
    "creditUserName",
    "creditUrl",
    "mediaDate",
    "displayInSearch",
    "entitledUsersEdit",
    "entitledUsersPublish",
    "entitledUsersView",
}
INT_FIELDS = {
    "startDate",
    "endDate",
    "partnerSortValue",
    "licenseType",
    "accessControlId",
    "mediaDate",
    "displayInSearch",
}


def media_update(state: SimState, call: Call) -> dict:
    entry = state.find_entry(p_str(call.params, "entryId", required=True))
    changes_in = p_obj(call.params, "mediaEntry") or p_obj(call.params, "baseEntry")
    changes: dict[str, Any] = {}
    for key in UPDATABLE:
        if f"{key}__null" in changes_in:
            changes[key] = None
        elif key in changes_in and not isinstance(changes_in[key], dict | list):
            changes[key] = p_int(changes_in, key) if key in INT_FIELDS else str(changes_in[key])
    state.update_entry(entry, changes)
    return _entry_object(state, entry)


def _uploaded_path(state: SimState, call: Call) -> str | None:
    resource = p_obj(call.params, "resource")
    if not resource:
        return None
    kind = resource.get("objectType", "")
    if kind != "KalturaUploadedFileTokenResource":
        raise KalturaError("RESOURCE_TYPE_NOT_SUPPORTED", kind)
    return state.take_uploaded_file(p_str(resource, "token"))


def media_update_content(state: SimState, call: Call) -> dict:
    entry = state.find_entry(p_str(call.params, "entryId", required=True), include_hidden=False)
    if not p_obj(call.params, "resource"):
        raise KalturaError("MISSING_MANDATORY_PARAMETER", "resource")
    # MediaService::replaceResource: an entry without content (or an image) gets the file directly; any other
    # entry is replaced through a temporary entry, whatever its status.
    if entry["status"] == ENTRY_NO_CONTENT or entry["mediaType"] == MEDIA_IMAGE:
        state.attach_content(entry, _uploaded_path(state, call))
    else:
        if entry["replacingEntryId"]:
            raise KalturaError("ENTRY_REPLACEMENT_ALREADY_EXISTS")
        state.start_replacement(entry, _uploaded_path(state, call))
    return _entry_object(state, entry)


def media_add_content(state: SimState, call: Call) -> dict:
    entry = state.find_entry(p_str(call.params, "entryId", required=True), include_hidden=False)
    if entry["status"] != ENTRY_NO_CONTENT:
        raise KalturaError("ENTRY_ALREADY_WITH_CONTENT")
    path = _uploaded_path(state, call)
    if path is not None:
        state.attach_content(entry, path)
    return _entry_object(state, entry)


def media_update_thumbnail(state: SimState, call: Call) -> dict:
    entry = state.find_entry(p_str(call.params, "entryId", required=True))
    state.thumbnail_from_video(entry)
    return _entry_object(state, entry)


# --- flavors --------------------------------------------------------------------------------------

FLAVOR_ORDER = {
    "createdAt": lambda f: f["createdAt"],
    "updatedAt": lambda f: f["updatedAt"],
    "deletedAt": lambda f: f["deletedAt"] or 0,
    "size": lambda f: f["size"],
    "seq": lambda f: 0,
}


def _flavor_object(flavor: dict) -> dict[str, Any]:
    return {"objectType": "KalturaFlavorAsset", **public(flavor)}


def _find_flavor(state: SimState, flavor_id: str | None) -> dict:
    flavor = state.flavors.get(flavor_id or "")
    if flavor is None or flavor["status"] == FLAVOR_DELETED:
        raise KalturaError("FLAVOR_ASSET_ID_NOT_FOUND", flavor_id)
    return flavor


def flavor_list(state: SimState, call: Call) -> dict:
    f = p_obj(call.params, "filter")
    tests: list[Callable[[dict], bool]] = []
    if (value := p_str(f, "idEqual")) is not None:
        tests.append(lambda x, v=value: x["id"] == v)
    if (ids := _id_list(p_str(f, "idIn"), limit=None)) is not None:
        tests.append(lambda x, v=set(ids): x["id"] in v)
    candidates: Iterable[dict] = state.flavors.values()
    if (value := p_str(f, "entryIdEqual")) is not None:
        entry = state.entries.get(value)
        candidates = state.entry_flavors(entry) if entry else []
    if (ids := _id_list(p_str(f, "entryIdIn"), limit=None)) is not None:
        entries = [state.entries[i] for i in dict.fromkeys(ids) if i in state.entries]
        candidates = [flavor for entry in entries for flavor in state.entry_flavors(entry)]
    if (value := p_int(f, "flavorParamsIdEqual")) is not None:
        tests.append(lambda x, v=value: x["flavorParamsId"] == v)
    if (params_in := _int_list(p_str(f, "flavorParamsIdIn"))) is not None:
        tests.append(lambda x, v=params_in: x["flavorParamsId"] in v)
    status_equal = p_int(f, "statusEqual")
    status_in = _int_list(p_str(f, "statusIn"))
    status_not_in = _int_list(p_str(f, "statusNotIn"))
    if status_equal is not None:
        tests.append(lambda x, v=status_equal: x["status"] == v)
    if status_in is not None:
        tests.append(lambda x, v=status_in: x["status"] in v)
    if status_not_in is not None:
        tests.append(lambda x, v=status_not_in: x["status"] not in v)
    if status_equal is None and status_in is None:
        tests.append(lambda x: x["status"] != FLAVOR_DELETED)
    for name in ("createdAt", "updatedAt"):
        low, high = _range(f, name)
        if low is not None:
            tests.append(lambda x, n=name, v=low: x[n] >= v)
        if high is not None:
            tests.append(lambda x, n=name, v=high: x[n] <= v)
    matches = [x for x in candidates if all(test(x) for test in tests)]
    _sort(matches, p_str(f, "orderBy"), FLAVOR_ORDER, "+seq")
    page = _page(matches, call.params, capped=False)
    return _list_response("KalturaFlavorAssetListResponse", [_flavor_object(x) for x in page], len(matches))


def flavor_get(state: SimState, call: Call) -> dict:
    return _flavor_object(_find_flavor(state, p_str(call.params, "id", required=True)))


def _flavor_params_object(params_id: int) -> dict[str, Any]:
    name, width, height, video_kbps, audio_kbps = FLAVOR_PARAMS[params_id]
    return {
        "objectType": "KalturaFlavorParams",
        "id": params_id,
        "partnerId": 0,
        "name": name,
        "systemName": "",
        "description": "",
        "createdAt": 1_325_376_000,
        "isSystemDefault": 1,
        "tags": "source,web" if params_id == 0 else "mobile,web,mbr",
        "videoCodec": "h264" if video_kbps else "",
        "videoBitrate": video_kbps,
        "audioCodec": "aac" if audio_kbps else "",
        "audioBitrate": audio_kbps,
        "width": width,
        "height": height,
        "frameRate": 0.0,
        "format": "" if params_id == 0 else "mp4",
    }


def flavor_with_params(state: SimState, call: Call) -> list:
    entry = state.find_entry(p_str(call.params, "entryId", required=True))
    live = state.entry_flavors(entry, live_only=True)
    params_ids = list(dict.fromkeys([0, *entry["_profile"], *(x["flavorParamsId"] for x in live)]))
    items = []
    for params_id in params_ids:
        flavor = next((x for x in live if x["flavorParamsId"] == params_id), None)
        items.append(
            {
                "objectType": "KalturaFlavorAssetWithParams",
                "flavorAsset": _flavor_object(flavor) if flavor else None,
                "flavorParams": _flavor_params_object(params_id),
                "entryId": entry["id"],
            }
        )
    return items


def flavor_get_url(state: SimState, call: Call) -> str:
    flavor = _find_flavor(state, p_str(call.params, "id", required=True))
    if flavor["status"] != FLAVOR_READY:
        raise KalturaError("FLAVOR_ASSET_IS_NOT_READY")
    return state.flavor_url(flavor)


def flavor_delete(state: SimState, call: Call) -> None:
    state.delete_flavor(p_str(call.params, "id", required=True))


# --- captions (the caption plugin: service caption_captionasset) ----------------------------------

CAPTION_WRITABLE = ("language", "label", "format", "tags", "fileExt", "accuracy", "description")
CAPTION_ORDER = {
    "createdAt": lambda c: c["createdAt"],
    "updatedAt": lambda c: c["updatedAt"],
    "size": lambda c: c["sizeInBytes"],
    "deletedAt": lambda c: c["deletedAt"] or 0,
}


def _caption_object(caption: dict) -> dict[str, Any]:
    return {"objectType": "KalturaCaptionAsset", **public(caption)}


def caption_list(state: SimState, call: Call) -> dict:
    f = p_obj(call.params, "filter")
    entry_ids = _id_list(p_str(f, "entryIdIn"), limit=None) or []
    if p_str(f, "entryIdEqual"):
        entry_ids = [p_str(f, "entryIdEqual")]
    ids = _id_list(p_str(f, "idIn"), limit=None)
    if p_str(f, "idEqual"):
        ids = [p_str(f, "idEqual")]
    if not entry_ids and not ids:
        raise KalturaError("MUST_FILTER_ON_ENTRY_OR_CATEGORY")  # assets are listed per entry
    wanted_entries = set(entry_ids)
    items = [
        c
        for c in state.captions.values()
        if c["status"] != CAPTION_DELETED
        and (not wanted_entries or c["entryId"] in wanted_entries)
        and (ids is None or c["id"] in ids)
    ]
    _sort(items, p_str(f, "orderBy"), {**CAPTION_ORDER, "seq": lambda c: 0}, "+seq")
    page = _page(items, call.params, capped=False)
    return _list_response("KalturaCaptionAssetListResponse", [_caption_object(c) for c in page], len(items))


def caption_add(state: SimState, call: Call) -> dict:
    entry = state.find_entry(p_str(call.params, "entryId", required=True))
    given = p_obj(call.params, "captionAsset")
    caption_id = state.add_caption(
        entry["id"],
        p_str(given, "language") or "",
        p_str(given, "label") or "",
        p_str(given, "format") or CAPTION_SRT,
        is_default=p_int(given, "isDefault") == 1,
    )
    caption = state.captions[caption_id]
    for name in ("tags", "accuracy", "description"):
        if p_str(given, name) is not None:
            caption[name] = p_int(given, name) if name == "accuracy" else p_str(given, name)
    return _caption_object(caption)


def caption_set_content(state: SimState, call: Call) -> dict:
    caption_id = p_str(call.params, "id", required=True)
    state.find_caption(caption_id)
    resource = p_obj(call.params, "contentResource")
    kind = resource.get("objectType", "")
    if kind == "KalturaStringResource":
        data = (p_str(resource, "content") or "").encode()
    elif kind == "KalturaUploadedFileTokenResource":
        path = state.take_uploaded_file(p_str(resource, "token"))
        with open(path, "rb") as handle:
            data = handle.read()
    elif not resource:
        raise KalturaError("MISSING_MANDATORY_PARAMETER", "contentResource")
    else:
        raise KalturaError("RESOURCE_TYPE_NOT_SUPPORTED", kind)
    return _caption_object(state.set_caption_content(caption_id, data))


def caption_update(state: SimState, call: Call) -> dict:
    caption = state.find_caption(p_str(call.params, "id", required=True))
    given = p_obj(call.params, "captionAsset")
    for name in CAPTION_WRITABLE:
        if p_str(given, name) is not None:
            caption[name] = p_int(given, name) if name == "accuracy" else p_str(given, name)
    if p_int(given, "isDefault") == 1:
        state.set_default_caption(caption["id"])
    return _caption_object(caption)


def caption_get(state: SimState, call: Call) -> dict:
    return _caption_object(state.find_caption(p_str(call.params, "captionAssetId", required=True)))


def caption_get_url(state: SimState, call: Call) -> str:
    caption = state.find_caption(p_str(call.params, "id", required=True))
    if caption["status"] != CAPTION_READY:
        raise KalturaError("CAPTION_ASSET_IS_NOT_READY")
    return state.caption_url(caption)


def caption_set_as_default(state: SimState, call: Call) -> None:
    state.set_default_caption(p_str(call.params, "captionAssetId", required=True))


def caption_delete(state: SimState, call: Call) -> None:
    state.delete_caption(p_str(call.params, "captionAssetId", required=True))


# --- upload tokens --------------------------------------------------------------------------------


def _token_object(token: dict) -> dict[str, Any]:
    return {"objectType": "KalturaUploadToken", **public(token)}


def upload_token_add(state: SimState, call: Call) -> dict:
    given = p_obj(call.params, "uploadToken")
    size = p_str(given, "fileSize")
    token = state.add_upload_token(
        (call.session or {}).get("userId") or "",
        p_str(given, "fileName"),
        float(size) if size not in (None, "") else None,
        p_bool(given, "autoFinalize"),
    )
    return _token_object(token)


def upload_token_get(state: SimState, call: Call) -> dict:
    return _token_object(state.find_upload_token(p_str(call.params, "uploadTokenId", required=True)))


def upload_token_upload(state: SimState, call: Call) -> dict:
    token = state.find_upload_token(p_str(call.params, "uploadTokenId", required=True))
    upload = call.files.pop("fileData", None)
    if upload is None:
        raise KalturaError("MISSING_MANDATORY_PARAMETER", "fileData")
    resume_at = p_str(call.params, "resumeAt")
    state.upload_chunk(
        token,
        upload.path,
        upload.filename,
        resume=p_bool(call.params, "resume"),
        final=p_bool(call.params, "finalChunk", default=True),
        resume_at=int(float(resume_at)) if resume_at not in (None, "") else -1,
    )
    return _token_object(token)


# --- categories and users -------------------------------------------------------------------------

CATEGORY_ORDER = {
    "createdAt": lambda c: c["createdAt"],
    "updatedAt": lambda c: c["updatedAt"],
    "name": lambda c: c["name"].lower(),
    "fullName": lambda c: c["fullName"].lower(),
    "depth": lambda c: c["depth"],
    "partnerSortValue": lambda c: 0,
    "id": lambda c: c["id"],
}


def _category_counts(state: SimState) -> tuple[dict[int, int], dict[int, int]]:
    direct: dict[int, set[str]] = {}
    for row in state.category_entries.values():
        if row["status"] == CATEGORY_ENTRY_ACTIVE:
            direct.setdefault(row["categoryId"], set()).add(row["entryId"])
    total: dict[int, set[str]] = {}
    for category_id, entry_ids in direct.items():
        for ancestor in state.categories[category_id]["fullIds"].split(">"):
            total.setdefault(int(ancestor), set()).update(entry_ids)
    return {k: len(v) for k, v in direct.items()}, {k: len(v) for k, v in total.items()}


def category_list(state: SimState, call: Call) -> dict:
    f = p_obj(call.params, "filter")
    tests: list[Callable[[dict], bool]] = []
    if (value := p_int(f, "idEqual")) is not None:
        tests.append(lambda c, v=value: c["id"] == v)
    if (ids := _int_list(p_str(f, "idIn"), MAX_IN_VALUES)) is not None:
        tests.append(lambda c, v=ids: c["id"] in v)
    if (ids := _int_list(p_str(f, "idNotIn"), MAX_IN_VALUES)) is not None:
        tests.append(lambda c, v=ids: c["id"] not in v)
    if (value := p_int(f, "parentIdEqual")) is not None:
        tests.append(lambda c, v=value: c["parentId"] == v)
    if (ids := _int_list(p_str(f, "parentIdIn"), MAX_IN_VALUES)) is not None:
        tests.append(lambda c, v=ids: c["parentId"] in v)
    if (value := p_int(f, "depthEqual")) is not None:
        tests.append(lambda c, v=value: c["depth"] == v)
    for name in ("fullIds", "fullName"):
        if (value := p_str(f, f"{name}Equal")) is not None:
            tests.append(lambda c, n=name, v=value: c[n] == v)
        if (value := p_str(f, f"{name}StartsWith")) is not None:
            tests.append(lambda c, n=name, v=value: c[n].startswith(v))
    if (ids := _int_list(p_str(f, "ancestorIdIn"), MAX_IN_VALUES)) is not None:
        tests.append(lambda c, v=ids: bool(set(map(int, c["fullIds"].split(">")[:-1])) & v))
    status_in = _int_list(p_str(f, "statusIn")) or ({p_int(f, "statusEqual")} if p_str(f, "statusEqual") else {2})
    tests.append(lambda c, v=status_in: c["status"] in v)
    matches = [c for c in state.categories.values() if all(test(c) for test in tests)]
    _sort(matches, p_str(f, "orderBy"), CATEGORY_ORDER, "+id")
    page = _page(matches, call.params, capped=True)
    direct, total = _category_counts(state)
    subcategories: dict[int, int] = {}
    for category in state.categories.values():
        subcategories[category["parentId"]] = subcategories.get(category["parentId"], 0) + 1
    objects = [
        {
            "objectType": "KalturaCategory",
            **public(c),
            "entriesCount": total.get(c["id"], 0),
            "directEntriesCount": direct.get(c["id"], 0),
            "directSubCategoriesCount": subcategories.get(c["id"], 0),
            "membersCount": 0,
            "pendingMembersCount": 0,
        }
        for c in page
    ]
    return _list_response("KalturaCategoryListResponse", objects, len(matches))


def category_entry_list(state: SimState, call: Call) -> dict:
    f = p_obj(call.params, "filter")
    entry_equal = p_str(f, "entryIdEqual")
    entry_in = _id_list(p_str(f, "entryIdIn"))
    category_equal = p_int(f, "categoryIdEqual")
    category_in = _int_list(p_str(f, "categoryIdIn"), MAX_IN_VALUES)
    unfiltered = entry_equal is None and entry_in is None and category_equal is None and category_in is None
    if unfiltered and (call.session or {}).get("type") != ADMIN_SESSION:
        raise KalturaError("MUST_FILTER_ON_ENTRY_OR_CATEGORY")
    tests: list[Callable[[dict], bool]] = [lambda r: not state.entries[r["entryId"]]["_hidden"]]
    if entry_equal is not None:
        tests.append(lambda r, v=entry_equal: r["entryId"] == v)
    if entry_in is not None:
        tests.append(lambda r, v=set(entry_in): r["entryId"] in v)
    if category_equal is not None:
        tests.append(lambda r, v=category_equal: r["categoryId"] == v)
    if category_in is not None:
        tests.append(lambda r, v=category_in: r["categoryId"] in v)
    if (value := p_str(f, "categoryFullIdsStartsWith")) is not None:
        tests.append(lambda r, v=value: r["categoryFullIds"].startswith(v))
    status_in = _int_list(p_str(f, "statusIn")) or ({p_int(f, "statusEqual")} if p_str(f, "statusEqual") else None)
    status_in = status_in or {CATEGORY_ENTRY_ACTIVE}
    tests.append(lambda r, v=status_in: r["status"] in v)
    low, high = _range(f, "createdAt")
    if low is not None:
        tests.append(lambda r, v=low: r["createdAt"] >= v)
    if high is not None:
        tests.append(lambda r, v=high: r["createdAt"] <= v)
    matches = [r for r in state.category_entries.values() if all(test(r) for test in tests)]
    _sort(matches, p_str(f, "orderBy"), {"createdAt": lambda r: r["createdAt"], "seq": lambda r: 0}, "+seq")
    page = _page(matches, call.params, capped=True)
    objects = [{"objectType": "KalturaCategoryEntry", **public(r)} for r in page]
    return _list_response("KalturaCategoryEntryListResponse", objects, len(matches))


def user_get(state: SimState, call: Call) -> dict:
    user_id = p_str(call.params, "userId") or (call.session or {}).get("userId")
    user = state.users.get(user_id or "")
    if user is None:
        raise KalturaError("INVALID_USER_ID")
    return {"objectType": "KalturaUser", **public(user)}


def session_start(state: SimState, call: Call) -> str:
    params = call.params
    return state.start_session(
        p_str(params, "secret"),
        p_str(params, "userId") or "",
        p_int(params, "type", 0),
        p_int(params, "partnerId"),
        p_int(params, "expiry"),
        p_str(params, "privileges") or "",
    )


# --- dispatch -------------------------------------------------------------------------------------

SERVICES: dict[str, dict[str, Callable[[SimState, Call], Any]]] = {
    "session": {"start": session_start},
    "media": {
        "list": media_list,
        "count": entry_count,
        "get": entry_get,
        "update": media_update,
        "updateContent": media_update_content,
        "addContent": media_add_content,
        "updateThumbnail": media_update_thumbnail,
    },
    "baseentry": {"list": baseentry_list, "count": entry_count, "get": entry_get},
    "flavorasset": {
        "list": flavor_list,
        "get": flavor_get,
        "getFlavorAssetsWithParams": flavor_with_params,
        "getUrl": flavor_get_url,
        "delete": flavor_delete,
    },
    "uploadtoken": {"add": upload_token_add, "upload": upload_token_upload, "get": upload_token_get},
    "caption_captionasset": {
        "list": caption_list,
        "add": caption_add,
        "setContent": caption_set_content,
        "update": caption_update,
        "get": caption_get,
        "getUrl": caption_get_url,
        "setAsDefault": caption_set_as_default,
        "delete": caption_delete,
    },
    "category": {"list": category_list},
    "categoryentry": {"list": category_entry_list},
    "user": {"get": user_get},
}
NO_SESSION_NEEDED = {("session", "start")}


def canonical(service: str, action: str) -> tuple[str, str]:
    """Service and action as the client spells them (lookup is case-insensitive, as on the real service)."""
    service = (service or "").lower()
    for name in SERVICES.get(service, {}):
        if name.lower() == (action or "").lower():
            return service, name
    return service, action or ""


def counter_key(service: str, action: str) -> str:
    service, action = canonical(service, action)
    return f"{service}.{action}"


def call_action(state: SimState, call: Call) -> Any:
    """Run one call: resolve service/action, check the session, run the handler under the state lock."""
    if not call.service:
        raise KalturaError("SERVICE_NOT_SPECIFIED")
    service, action = canonical(call.service, call.action)
    actions = SERVICES.get(service)
    if actions is None:
        raise KalturaError("SERVICE_DOES_NOT_EXISTS", call.service)
    if not call.action:
        raise KalturaError("ACTION_NOT_SPECIFIED")
    handler = actions.get(action)
    if handler is None:
        raise KalturaError("ACTION_DOES_NOT_EXISTS", call.action, call.service)
    if (service, action) not in NO_SESSION_NEEDED:
        call.session = state.check_session(p_str(call.params, "ks"))
    with state.lock:
        result = handler(state, call)
    return apply_response_profile(result, p_obj(call.params, "responseProfile"))


# --- response profiles ----------------------------------------------------------------------------

PROFILE_INCLUDE_FIELDS, PROFILE_EXCLUDE_FIELDS = 1, 2


def _profiled(obj: dict[str, Any], fields: set[str], include: bool) -> dict[str, Any]:
    # objectType always stays: the client needs it to pick the class.
    if include:
        return {k: v for k, v in obj.items() if k in fields or k == "objectType"}
    return {k: v for k, v in obj.items() if k not in fields or k == "objectType"}


def apply_response_profile(result: Any, profile: dict[str, Any]) -> Any:
    """A KalturaDetachedResponseProfile (the request configuration's `responseProfile`, sent per call and so
    per sub-request of a multirequest): INCLUDE_FIELDS keeps only the named fields of the result object, or
    of each object of a list response (its `objects` and `totalCount` stay); EXCLUDE_FIELDS drops them.
    Other profile types (stored profiles by id or system name) are not simulated and are ignored."""
    kind = p_int(profile, "type")
    if kind not in (PROFILE_INCLUDE_FIELDS, PROFILE_EXCLUDE_FIELDS) or not isinstance(result, dict):
        return result
    fields = {name.strip() for name in (p_str(profile, "fields") or "").split(",") if name.strip()}
    include = kind == PROFILE_INCLUDE_FIELDS
    if isinstance(result.get("objects"), list) and "totalCount" in result:
        objects = [_profiled(o, fields, include) if isinstance(o, dict) else o for o in result["objects"]]
        return {**result, "objects": objects}
    return _profiled(result, fields, include)


def _lookup(value: Any, path: list[str]) -> Any:
    for step in path:
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            raise LookupError(step)
    return value


def _resolve(value: Any, results: list[Any]) -> Any:
    """Replace `{N:result[:path]}` with the N-th (1-based) earlier result or a property of it."""
    if isinstance(value, dict):
        return {key: _resolve(item, results) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, results) for item in value]
    if not isinstance(value, str) or "{" not in value:
        return value

    def replace(match: re.Match) -> str:
        index = int(match.group(1)) - 1
        path = [step for step in re.split(r"[:.]", match.group(2)) if step]
        if not 0 <= index < len(results) or isinstance(results[index], KalturaError):
            return match.group(0)
        try:
            found = _lookup(results[index], path)
        except LookupError:
            return match.group(0)
        if isinstance(found, bool):
            return "1" if found else "0"
        return match.group(0) if isinstance(found, dict | list) or found is None else str(found)

    return _RESULT_REFERENCE.sub(replace, value)


def subrequests(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The calls of a multirequest in order; the client numbers them from 0, other clients from 1."""
    keys = sorted((key for key, value in params.items() if key.isdigit() and isinstance(value, dict)), key=int)
    return [params[key] for key in keys]


def multirequest(state: SimState, params: dict[str, Any], files: dict[str, UploadedFile]) -> MultiResult:
    results = MultiResult()
    shared = {k: v for k, v in params.items() if k in ("ks", "partnerId") and isinstance(v, str)}
    for number, sub in enumerate(subrequests(params)):
        sub = _resolve(sub, results)
        call_params = {**shared, **{k: v for k, v in sub.items() if k not in ("service", "action")}}
        call_files = {key.split(":", 1)[1]: f for key, f in files.items() if key.split(":", 1)[0] == str(number)}
        service, action = str(sub.get("service", "")), str(sub.get("action", ""))
        state.count(counter_key(service, action), subrequest=True)
        try:
            fault = state.take_item_fault(service, action)
            if fault:
                raise KalturaError(fault["code"], message=fault["message"])
            results.append(call_action(state, Call(service, action, call_params, call_files)))
        except KalturaError as error:
            results.append(error)
    return results
