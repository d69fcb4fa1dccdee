"""Mirror Kaltura into the database: full, incremental (by updatedAt) and plays refresh.

Kaltura returns nothing past the 10,000th match of a filter, so a walk never pages
far: it moves a window on createdAt (or updatedAt) ordered ascending, excluding the
ids already seen in the boundary second with idNotIn. Kaltura's search index returns
equal sort keys in any order, different on each request, and idNotIn keeps only 150
ids, so a second holding more entries than that (a bulk upload) is listed in parts
split by further fields until each comes back whole (walk_entries). A full pass then
checks its counts against Kaltura's (_reconcile) and asks about every entry it did not
meet by id before calling it gone (_mark_gone).

Each page is written in one transaction together with the cursor, so a crash loses
at most the page in flight and a rerun continues from the cursor.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from archive_app.lib import bulk
from archive_app.lib.kaltura import MAX_ID_LIST, PAGE_SIZE, Kaltura, KalturaError, KEntry, KFlavor
from archive_app.models import (
    Category,
    Entry,
    EntryStatus,
    Flavor,
    FlavorStatus,
    SyncRun,
    archive_state_from_tags,
    category_search_text,
    split_tags,
)

log = logging.getLogger(__name__)

# A run whose heartbeat is older than this is taken to have crashed.
STALE_AFTER = timedelta(minutes=10)
# Kaltura's analytics job updates lastPlayedAt about daily and late; look back further.
PLAYS_LOOKBACK = timedelta(days=3)
# Overlap incremental windows a little: clocks differ and updates land late.
INCREMENTAL_OVERLAP = timedelta(minutes=5)
# SQLite's page cache while a sync writes (its default is 2 MB), in KiB.
SQLITE_CACHE_KIB = 64 * 1024

ENTRY_FIELDS = [
    "name",
    "description",
    "owner_id",
    "creator_id",
    "tags",
    "tags_search",
    "category_search",
    "created_at",
    "updated_at",
    "last_played_at",
    "plays",
    "views",
    "status",
    "media_type",
    "duration",
    "source_type",
    "parent_entry_id",
    "capabilities",
    "replacing_entry_id",
    "thumbnail_url",
    "original_flavor_id",
    "original_status",
    "original_size_bytes",
    "total_flavor_bytes",
    "archive_state",
    "gone",
]
FLAVOR_FIELDS = [
    "entry_id",
    "flavor_params_id",
    "is_original",
    "status",
    "size_bytes",
    "size_exact",
    "tags",
    "file_ext",
    "width",
    "height",
    "bitrate",
    "created_at",
    "updated_at",
]


class SyncBusy(Exception):
    """Another sync of the same kind is running."""


@dataclass
class PageResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    gone: int = 0


# The longest text kept in an indexed mirror column. PostgreSQL refuses a b-tree entry over about
# 2,700 bytes, and a character is at most 4 bytes in UTF-8; the other text columns are unlimited.
MIRROR_INDEXED_TEXT_CHARS = 600
CLIPPED_MARK = "…"


def mirror_text(value: str, limit: int = MIRROR_INDEXED_TEXT_CHARS) -> str:
    """`value` as an indexed mirror column keeps it: whole, or clipped with a visible mark.

    The mirror is for browsing, never proof, so a clipped name or user id costs only its tail."""
    if len(value) <= limit:
        return value
    return value[: limit - len(CLIPPED_MARK)] + CLIPPED_MARK


# A crowded second is split by these fields, in this order, until each part fits one page (see _split_part).
SPLIT_FIELDS = {"createdAt": ("updatedAt", "duration"), "updatedAt": ("createdAt", "duration")}
FIELD_MAX = 2**31 - 1
# Parts are cut at quantiles of a page drawn from them, aiming below PAGE_SIZE so few come back too big.
PART_TARGET = 400
# A part whose list returns fewer entries than its totalCount says is listed again this often, then reported.
PART_RETRIES = 3
# A part that no field can split further is sampled (ties come back in another order each time) this often.
SAMPLE_TRIES = 20


def _value(entry: KEntry, name: str) -> int:
    if name == "createdAt":
        return int(entry.created_at.timestamp())
    if name == "updatedAt":
        return int(entry.updated_at.timestamp())
    return int(getattr(entry, name))


@dataclass
class WindowCursor:
    """Where a window walk stands: the boundary second and the ids already seen in it.

    `parts` are what is left of a crowded boundary second (more entries than idNotIn can exclude): each a list
    of [field, low, high] ranges that, with the second itself, filter a part of it. The counters say what the
    crowded seconds cost, and `short` lists the parts that Kaltura listed fewer entries of than it counted.
    """

    field: str  # "createdAt" or "updatedAt"
    start: int = 0
    # dataclasses.field by its full name: the attribute `field` above hides the short one from type checkers.
    seen_at_start: list[str] = dataclasses.field(default_factory=list)
    parts: list[dict] = dataclasses.field(default_factory=list)
    crowded_seconds: int = 0
    crowded_requests: int = 0
    short: list[dict] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "field": self.field,
            "start": self.start,
            "seen_at_start": list(self.seen_at_start),
            "parts": [dict(part, ranges=[list(r) for r in part["ranges"]]) for part in self.parts],
            "crowded_seconds": self.crowded_seconds,
            "crowded_requests": self.crowded_requests,
            "short": list(self.short),
        }

    @classmethod
    def from_json(cls, data: dict, field_name: str, start: int = 0) -> WindowCursor:
        if data.get("field") != field_name:
            return cls(field=field_name, start=start)
        cursor = cls(
            field=field_name,
            start=int(data.get("start", start)),
            seen_at_start=list(data.get("seen_at_start", [])),
            parts=list(data.get("parts", [])),
            crowded_seconds=int(data.get("crowded_seconds", 0)),
            crowded_requests=int(data.get("crowded_requests", 0)),
            short=list(data.get("short", [])),
        )
        if data.get("burst_page") and not cursor.parts:  # a cursor saved by the page-by-page walk before
            cursor.parts = [cursor.first_part()]
        return cursor

    def first_part(self) -> dict:
        return {"ranges": [[SPLIT_FIELDS[self.field][0], 0, FIELD_MAX]], "tries": 0}

    def summary(self) -> dict:
        return {
            "crowded_seconds": self.crowded_seconds,
            "crowded_requests": self.crowded_requests,
            "short": self.short,
        }


def walk_entries(kaltura: Kaltura, cursor: WindowCursor, **extra_filter) -> Iterator[list[KEntry]]:
    """Yield pages of entries ordered by cursor.field, advancing `cursor` after each page.

    Kaltura returns entries with equal sort keys in any order, and a different one on each request, so a
    second is never paged through by pageIndex: the window moves past what it has seen with idNotIn, and a
    second more crowded than idNotIn can exclude is listed in parts small enough to come back whole, each
    checked against Kaltura's totalCount for it. The caller saves the cursor after storing each page; the walk
    then resumes exactly.
    """
    order = f"+{cursor.field}"
    at_least = f"{cursor.field}GreaterThanOrEqual"
    at_most = f"{cursor.field}LessThanOrEqual"
    while True:
        if cursor.parts:
            second = {**extra_filter, at_least: cursor.start, at_most: cursor.start}
            entries = _walk_part(kaltura, cursor, order, second)
            if not cursor.parts:  # the crowded second is complete
                cursor.start += 1
                cursor.seen_at_start = []
            if entries:
                yield entries
            continue

        filters = {**extra_filter, at_least: cursor.start}
        if cursor.seen_at_start:
            filters["idNotIn"] = cursor.seen_at_start
        page = kaltura.list_entries(order_by=order, page_index=1, **filters)
        entries = page.entries
        if not entries:
            return
        last = _value(entries[-1], cursor.field)
        boundary_ids = [e.id for e in entries if _value(e, cursor.field) == last]
        if last == cursor.start:
            cursor.seen_at_start = list(dict.fromkeys(cursor.seen_at_start + boundary_ids))
        else:
            cursor.start = last
            cursor.seen_at_start = boundary_ids
        finished = len(entries) < PAGE_SIZE
        if not finished and len(cursor.seen_at_start) > MAX_ID_LIST:
            # More entries share this second than idNotIn can exclude: list the whole second again, in parts.
            cursor.parts = [cursor.first_part()]
            cursor.seen_at_start = []
            cursor.crowded_seconds += 1
        yield entries
        if finished:
            return


def _walk_part(kaltura: Kaltura, cursor: WindowCursor, order: str, second_filter: dict) -> list[KEntry]:
    """List the crowded second's last pending part once; returns the entries it brought (maybe none).

    A part that fits one page comes back whole and is done when its count matches Kaltura's totalCount; a
    bigger one is split (its page is only a sample then); one that no field can split is sampled.
    """
    part = cursor.parts[-1]
    filters = dict(second_filter)
    for name, low, high in part["ranges"]:
        filters[f"{name}GreaterThanOrEqual"] = low
        filters[f"{name}LessThanOrEqual"] = high
    if "seen" in part:
        return _sample_part(kaltura, cursor, order, filters)
    page = kaltura.list_entries(order_by=order, page_index=1, **filters)
    cursor.crowded_requests += 1
    if page.total_count <= PAGE_SIZE:
        if len(page.entries) < page.total_count and part["tries"] < PART_RETRIES:
            part["tries"] += 1
        else:
            if len(page.entries) < page.total_count:
                cursor.short.append(
                    {"second": cursor.start, "ranges": part["ranges"], "missing": page.total_count - len(page.entries)}
                )
            cursor.parts.pop()
        return page.entries
    split = _split_part(part["ranges"], page.entries, page.total_count, SPLIT_FIELDS[cursor.field])
    if split is None:
        part["seen"] = []
        return []
    cursor.parts[-1:] = [{"ranges": ranges, "tries": 0} for ranges in reversed(split)]
    return []


def _split_part(ranges: list, sample: list[KEntry], total: int, fields: tuple[str, ...]) -> list[list] | None:
    """Ranges that together filter exactly what `ranges` do, each about PART_TARGET entries if `sample` (a
    random page of the part) is typical; None when every field is down to one value."""
    name, low, high = ranges[-1]
    if low == high:
        if len(ranges) == len(fields):
            return None
        return _split_part([*ranges, [fields[len(ranges)], 0, FIELD_MAX]], sample, total, fields)
    values = sorted(_value(e, name) for e in sample)
    pieces = -(-total // PART_TARGET)
    cuts = sorted({values[len(values) * i // pieces] for i in range(1, pieces)} if values else ())
    cuts = [c for c in cuts if low < c <= high]
    if not cuts:
        # Most of the sample has the lowest value: give that value a part of its own (split further by the
        # next field), the rest another.
        cuts = [low + 1]
    bounds = [low, *cuts, high + 1]
    return [[*ranges[:-1], [name, a, b - 1]] for a, b in zip(bounds, bounds[1:], strict=False)]


def _sample_part(kaltura: Kaltura, cursor: WindowCursor, order: str, filters: dict) -> list[KEntry]:
    """A part whose entries agree on every split field: list it repeatedly, excluding some already seen, until
    all Kaltura counts have been seen (ties come back in a new order each time), or report it."""
    part = cursor.parts[-1]
    seen: list[str] = part["seen"]
    excluded = random.sample(seen, min(len(seen), MAX_ID_LIST))
    exclude: dict[str, Any] = {"idNotIn": excluded} if excluded else {}
    page = kaltura.list_entries(order_by=order, page_index=1, **filters, **exclude)
    cursor.crowded_requests += 1
    known = set(seen)
    new = [e for e in page.entries if e.id not in known]
    seen += [e.id for e in new]
    part["tries"] += 1
    if len(seen) >= page.total_count + len(excluded) or part["tries"] >= SAMPLE_TRIES:
        missing = page.total_count + len(excluded) - len(seen)
        if missing > 0:
            cursor.short.append({"second": cursor.start, "ranges": part["ranges"], "missing": missing})
        cursor.parts.pop()
    return new


def store_categories(kaltura: Kaltura) -> int:
    now = timezone.now()
    rows = [
        Category(
            id=c.id,
            parent_id=c.parent_id,
            name=c.name,
            full_name=c.full_name,
            full_ids=c.full_ids,
            depth=c.depth,
            entries_count=c.entries_count,
            synced_at=now,
        )
        for c in kaltura.categories()
    ]
    with transaction.atomic():
        moved_entry_ids = entries_of_moved_categories({c.id: c.full_ids for c in rows})
        Category.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["id"],
            update_fields=["parent_id", "name", "full_name", "full_ids", "depth", "entries_count", "synced_at"],
            batch_size=500,
        )
        Category.objects.exclude(id__in=[c.id for c in rows]).delete()
        store_category_search(moved_entry_ids)
    return len(rows)


# --- Entry.category_search: the category filter's copy of the links (see models.py) ---


def entries_of_moved_categories(full_ids_by_id: dict[int, str]) -> list[str]:
    """Entries linked to a stored category that is about to move (other full_ids) or go away."""
    moved = [
        pk for pk, full_ids in Category.objects.values_list("id", "full_ids") if full_ids_by_id.get(pk) != full_ids
    ]
    if not moved:
        return []
    through = Entry.categories.through
    return list(through.objects.filter(category_id__in=moved).values_list("entry_id", flat=True).distinct())


def store_category_search(entry_ids: list[str]) -> None:
    """Rewrite these entries' category_search from their category links; call after changing links."""
    if not entry_ids:
        return
    through = Entry.categories.through
    paths: dict[str, list[str]] = {}
    for entry_id, full_ids in through.objects.filter(entry_id__in=entry_ids).values_list(
        "entry_id", "category__full_ids"
    ):
        paths.setdefault(entry_id, []).append(full_ids)
    rows = [(category_search_text(full_ids), entry_id) for entry_id, full_ids in paths.items()]
    table = connection.ops.quote_name(Entry._meta.db_table)
    # Atomic, so a caller outside a transaction does not commit (and sync to disk) once per row.
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One statement, as bulk.insert does: executemany parses and plans once per row there.
            payload = json.dumps([{"id": entry_id, "category_search": text} for text, entry_id in rows])
            cursor.execute(
                f"UPDATE {table} SET category_search = page.category_search "
                f"FROM json_populate_recordset(NULL::{table}, %s) AS page WHERE {table}.id = page.id",
                [payload],
            )
        else:
            cursor.executemany(f"UPDATE {table} SET category_search = %s WHERE id = %s", rows)
        # Entries left without categories; a new entry already has "" from the column's default.
        Entry.objects.filter(id__in=[pk for pk in entry_ids if pk not in paths]).exclude(category_search="").update(
            category_search=""
        )


def category_paths() -> dict[int, str]:
    """Every stored category's id -> its full_ids path ("1>100>5000"), for store_entries."""
    return dict(Category.objects.values_list("id", "full_ids"))


def entry_row(
    entry: KEntry, flavors: list[KFlavor], synced_at: datetime, category_ids: set[int], paths: dict[int, str]
) -> dict:
    """The Entry row's values, by field name (plain values: a model instance costs more than the rest).

    `category_ids` are the entry's links that store_entries keeps; category_search is written from their
    `paths` in the same INSERT, as store_category_search would write it from the links afterwards: a
    second UPDATE of every row rewrote each of Entry's twenty-odd indexes again (a third of a full sync's
    time in PostgreSQL at 100,000 entries).
    """
    original = next((f for f in flavors if f.is_original), None)
    return {
        "id": entry.id,
        "name": mirror_text(entry.name),
        "description": entry.description,
        "owner_id": mirror_text(entry.owner_id),
        "creator_id": entry.creator_id,
        # As Entry.set_tags derives them (tests/mirror/test_sync.py checks the two agree).
        "tags": entry.tags,
        "tags_search": "," + ",".join(t.lower() for t in split_tags(entry.tags)) + ",",
        "category_search": category_search_text([paths[c] for c in category_ids]),
        "archive_state": archive_state_from_tags(entry.tags),
        "created_at": entry.created_at,
        "updated_at": entry.updated_at,
        "last_played_at": entry.last_played_at,
        "plays": entry.plays,
        "views": entry.views,
        "status": entry.status,
        "media_type": entry.media_type,
        "duration": entry.duration,
        "source_type": entry.source_type,
        "parent_entry_id": entry.parent_entry_id,
        "capabilities": entry.capabilities,
        "replacing_entry_id": entry.replacing_entry_id,
        "thumbnail_url": entry.thumbnail_url[:1000],
        "original_flavor_id": original.id if original else "",
        "original_status": original.status if original else None,
        "original_size_bytes": original.size_bytes if original else None,
        "total_flavor_bytes": sum(f.size_bytes for f in flavors if f.status == FlavorStatus.READY),
        "gone": entry.status == EntryStatus.DELETED,
        "synced_at": synced_at,
    }


def flavor_row(flavor: KFlavor) -> dict:
    """The Flavor row's values, by field name."""
    return {
        "id": flavor.id,
        "entry_id": flavor.entry_id,
        "flavor_params_id": flavor.flavor_params_id,
        "is_original": flavor.is_original,
        "status": flavor.status,
        "size_bytes": flavor.size_bytes,
        "size_exact": flavor.size_exact,
        "tags": flavor.tags,
        "file_ext": flavor.file_ext[:16],
        "width": flavor.width,
        "height": flavor.height,
        "bitrate": flavor.bitrate,
        "created_at": flavor.created_at,
        "updated_at": flavor.updated_at,
    }


def _upsert(model: type[models.Model], rows: list[dict], fields: list[str]) -> None:
    """Insert these rows (dicts of plain values by field name), or update `fields` of those whose id exists."""
    names = ["id", *fields]
    bulk.insert(model, names, list(map(itemgetter(*names), rows)), upsert=True)


def _entry_signature(values: dict) -> tuple:
    return tuple(values[name] for name in ENTRY_FIELDS)


def store_entries(
    entries: list[KEntry], flavors: dict[str, list[KFlavor]], paths: dict[int, str], synced_at: datetime
) -> PageResult:
    """Upsert one page of entries with their flavors and categories. Call inside a transaction.

    `paths` is category_paths(): links to categories not stored (yet) are left out."""
    result = PageResult()
    entries = list({e.id: e for e in entries}.values())
    wanted_categories = {e.id: {c for c in e.categories_ids if c in paths} for e in entries}
    rows = {e.id: entry_row(e, flavors.get(e.id, []), synced_at, wanted_categories[e.id], paths) for e in entries}
    existing = {values["id"]: values for values in Entry.objects.filter(id__in=rows).values("id", *ENTRY_FIELDS)}
    through = Entry.categories.through
    existing_categories: dict[str, set[int]] = {}
    if existing:
        for entry_id, category_id in through.objects.filter(entry_id__in=existing).values_list(
            "entry_id", "category_id"
        ):
            existing_categories.setdefault(entry_id, set()).add(category_id)

    changed: list[dict] = []
    for entry in entries:
        row = rows[entry.id]
        wanted = wanted_categories[entry.id]
        old = existing.get(entry.id)
        if old is None:
            result.created += 1
            changed.append(row)
        elif _entry_signature(old) != _entry_signature(row) or existing_categories.get(entry.id, set()) != wanted:
            result.updated += 1
            changed.append(row)
            if row["gone"] and not old["gone"]:
                result.gone += 1
        else:
            result.unchanged += 1

    changed_ids = [row["id"] for row in changed]
    _upsert(Entry, changed, [*ENTRY_FIELDS, "synced_at"])
    unchanged_ids = list(rows.keys() - set(changed_ids))
    if unchanged_ids:
        Entry.objects.filter(id__in=unchanged_ids).update(synced_at=synced_at)

    # New entries have no flavors or category links to remove (most of a first full sync).
    known_ids = [entry_id for entry_id in changed_ids if entry_id in existing]
    if known_ids:
        Flavor.objects.filter(entry_id__in=known_ids).exclude(
            id__in=[f.id for entry_id in known_ids for f in flavors.get(entry_id, [])]
        ).delete()
        through.objects.filter(entry_id__in=known_ids).delete()
    _upsert(Flavor, [flavor_row(f) for entry_id in changed_ids for f in flavors.get(entry_id, [])], FLAVOR_FIELDS)
    links = [(entry_id, category_id) for entry_id in changed_ids for category_id in wanted_categories[entry_id]]
    if links:
        bulk.insert(through, ["entry", "category"], links)
    return result


def _claim(kind: str) -> SyncRun:
    """Resume this kind's unfinished run (failed, or crashed and stale), or start a new one.

    Only one run of a kind may be RUNNING with a fresh heartbeat; the claim is a
    conditional update, so two workers cannot both take the same run.
    """
    now = timezone.now()
    with transaction.atomic():
        newest = SyncRun.objects.filter(kind=kind).order_by("-started_at").first()
        if newest is None or newest.status == SyncRun.Status.SUCCEEDED:
            return SyncRun.objects.create(kind=kind, heartbeat_at=now)
        claimable = SyncRun.objects.filter(id=newest.id, status=newest.status)
        if newest.status == SyncRun.Status.RUNNING:
            claimable = claimable.filter(heartbeat_at__lt=now - STALE_AFTER)
        if claimable.update(status=SyncRun.Status.RUNNING, heartbeat_at=now, error="", finished_at=None) != 1:
            raise SyncBusy(f"a {kind} sync is already running (started {newest.started_at:%Y-%m-%d %H:%M})")
        newest.refresh_from_db()
        log.info("resuming %s sync %s from its cursor", kind, newest.id)
        return newest


def _finish(run: SyncRun, *, kaltura_requests: int | None = None) -> None:
    if kaltura_requests is not None:
        run.kaltura_requests = kaltura_requests
    run.status = SyncRun.Status.SUCCEEDED
    run.finished_at = timezone.now()
    run.save()


def _fail(run: SyncRun, error: Exception) -> None:
    run.status = SyncRun.Status.FAILED
    run.error = str(error)[:2000]
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "finished_at"])


def _fetch_pages(
    kaltura: Kaltura, cursor: WindowCursor, **extra_filter
) -> Iterator[tuple[list[KEntry], dict[str, list[KFlavor]], dict]]:
    """Pages of (entries, their flavors, the cursor to save with them): everything but the database."""
    for entries in walk_entries(kaltura, cursor, **extra_filter):
        flavors = kaltura.flavors_for_entries(e.id for e in entries)
        # walk_entries has already moved the cursor past this page; snapshot it now, since
        # it moves on while this page is being stored.
        yield entries, flavors, cursor.to_json()


def _walk_and_store(
    kaltura: Kaltura,
    run: SyncRun,
    cursor: WindowCursor,
    progress: Callable[[SyncRun], None] | None,
    requests_before: int,
    **extra_filter,
) -> None:
    paths = category_paths()
    if connection.vendor == "sqlite":
        # A page of 500 entries touches thousands of pages of Entry's indexes: in SQLite's default 2 MB
        # cache they spill to the journal in the middle of each transaction and are read back from the file.
        with connection.cursor() as sql:
            sql.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
    pages = _fetch_pages(kaltura, cursor, **extra_filter)
    # Fetch the next page (Kaltura's time, and the client's parsing) on a second thread while this
    # one is being stored: exactly one page ahead, so memory stays bounded and a failure costs at most
    # that one page. Only this worker thread talks to Kaltura, only this thread to the database.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kaltura-fetch") as fetcher:
        upcoming = fetcher.submit(next, pages, None)
        try:
            while (fetched := upcoming.result()) is not None:
                upcoming = fetcher.submit(next, pages, None)
                _store_page(run, *fetched, paths, progress, requests_before + kaltura.requests_made)
        finally:
            upcoming.cancel()


def _store_page(
    run: SyncRun,
    entries: list[KEntry],
    flavors: dict[str, list[KFlavor]],
    cursor_json: dict,
    paths: dict[int, str],
    progress: Callable[[SyncRun], None] | None,
    kaltura_requests: int,
) -> None:
    """Store one page and, in the same transaction, the cursor after it: a crash loses this page at most."""
    with transaction.atomic():
        page = store_entries(entries, flavors, paths, synced_at=run.started_at)
        run.seen += len(entries)
        run.created += page.created
        run.updated += page.updated
        run.unchanged += page.unchanged
        run.gone += page.gone
        run.cursor = cursor_json
        run.kaltura_requests = kaltura_requests
        run.heartbeat_at = timezone.now()
        run.save()
    if progress:
        progress(run)


def sync_full(kaltura: Kaltura, progress: Callable[[SyncRun], None] | None = None) -> SyncRun:
    """Mirror every entry of every status, check the mirror against Kaltura's own counts, and mark gone the
    entries Kaltura no longer has (asked id by id)."""
    run = _claim(SyncRun.Kind.FULL)
    # Rows touched by this run carry its start time, so a resumed run still knows what it has seen.
    requests_before = run.kaltura_requests
    pacing_before = _pacing_now(kaltura)
    try:
        store_categories(kaltura)
        if not run.total_expected:
            run.total_expected = kaltura.list_entries(page_size=1).total_count
            run.save(update_fields=["total_expected"])
        cursor = WindowCursor.from_json(run.cursor, "createdAt")
        _walk_and_store(kaltura, run, cursor, progress, requests_before)
        details = {**cursor.summary(), **_reconcile(kaltura, run, progress, requests_before)}
        details.update(_mark_gone(kaltura, run, progress, requests_before))
        run.details = _with_pacing(details, kaltura, pacing_before)
        _finish(run, kaltura_requests=requests_before + kaltura.requests_made)
    except Exception as exc:
        _fail(run, exc)
        raise
    return run


def _with_pacing(details: dict, kaltura: Kaltura, before: tuple[float, int]) -> dict:
    """The run's details with the time this run's calls waited for the cap or after ACTION_BLOCKED."""
    paced, blocked = kaltura.paced_seconds - before[0], kaltura.blocked_count - before[1]
    return {**details, "paced_seconds": round(paced, 1), "blocked": blocked}


def _pacing_now(kaltura: Kaltura) -> tuple[float, int]:
    return kaltura.paced_seconds, kaltura.blocked_count


# Ranges where Kaltura and the mirror disagree are halved until Kaltura counts at most this many in one,
# then walked again (a walk of 2,000 costs about 8 requests; another halving 2).
RECONCILE_WALK_AT_MOST = 2000
# Count checks one reconciliation may spend (halving 10 years of seconds to one takes about 28 per gap).
RECONCILE_MAX_CHECKS = 200


def _reconcile(kaltura: Kaltura, run: SyncRun, progress, requests_before: int) -> dict:
    """Compare Kaltura's totalCount with the entries this run stored, by createdAt range, and walk again the
    ranges where they differ: entries a walk missed (ties, a lagging index) or created while it ran.

    One request when they agree. Returns what it did for the run's summary, with the difference left.
    """
    stored = Entry.objects.filter(synced_at=run.started_at)

    def differs(low: int, high: int) -> tuple[bool, int]:
        counted = kaltura.list_entries(
            page_size=1, createdAtGreaterThanOrEqual=low, createdAtLessThanOrEqual=high
        ).total_count
        have = stored.filter(created_at__gte=_at(low), created_at__lte=_at(high)).count()
        return counted != have, counted

    ranges, checks, walked = [(0, FIELD_MAX)], 0, 0
    while ranges and checks < RECONCILE_MAX_CHECKS:
        low, high = ranges.pop()
        checks += 1
        different, counted = differs(low, high)
        if not different:
            continue
        if counted <= RECONCILE_WALK_AT_MOST or low == high:
            log.info(
                "sync: Kaltura counts %s entries created %s..%s, the mirror another number: walking again",
                counted,
                low,
                high,
            )
            _walk_and_store(
                kaltura,
                run,
                WindowCursor("createdAt", start=low),
                progress,
                requests_before,
                createdAtLessThanOrEqual=high,
            )
            walked += 1
        else:
            middle = (low + high) // 2
            ranges += [(middle + 1, high), (low, middle)]
    left = kaltura.list_entries(page_size=1).total_count - stored.count() if walked or ranges else 0
    return {"reconcile_checks": checks, "reconcile_walks": walked, "difference": left}


def _at(stamp: int) -> datetime:
    return datetime.fromtimestamp(stamp, tz=UTC)


# Ids asked about in one HTTP request: 20 idIn lists of 150.
GONE_CHECK_CHUNK = 20 * MAX_ID_LIST


def _mark_gone(kaltura: Kaltura, run: SyncRun, progress, requests_before: int) -> dict:
    """Entries this run did not meet are asked about by id (every status, deleted included): Kaltura's own
    answer is stored (a deleted entry is gone), and only those it no longer knows at all are marked gone.
    A walk that missed an entry therefore never makes it vanish from the mirror."""
    unseen = Entry.objects.filter(gone=False).exclude(synced_at=run.started_at).order_by("id")
    paths = category_paths()
    asked = found = 0
    after = ""
    while chunk := list(unseen.filter(id__gt=after).values_list("id", flat=True)[:GONE_CHECK_CHUNK]):
        after = chunk[-1]
        asked += len(chunk)
        answered = kaltura.entries_by_ids(chunk)
        found += len(answered)
        entries = list(answered.values())
        flavors = kaltura.flavors_for_entries(answered) if entries else {}
        with transaction.atomic():
            page = store_entries(entries, flavors, paths, synced_at=run.started_at)
            vanished = Entry.objects.filter(id__in=set(chunk) - set(answered), gone=False).update(gone=True)
            run.seen += len(entries)
            run.updated += page.updated
            run.unchanged += page.unchanged
            run.gone += page.gone + vanished
            run.kaltura_requests = requests_before + kaltura.requests_made
            run.heartbeat_at = timezone.now()
            run.save()
        if progress:
            progress(run)
    return {"gone_asked": asked, "gone_still_in_kaltura": found}


def last_success(kind: str) -> SyncRun | None:
    return SyncRun.objects.filter(kind=kind, status=SyncRun.Status.SUCCEEDED).order_by("-started_at").first()


def sync_incremental(kaltura: Kaltura, progress: Callable[[SyncRun], None] | None = None) -> SyncRun:
    """Entries changed since the last successful sync (by updatedAt), deletions included."""
    previous = (
        SyncRun.objects.filter(kind__in=[SyncRun.Kind.FULL, SyncRun.Kind.INCREMENTAL], status=SyncRun.Status.SUCCEEDED)
        .order_by("-started_at")
        .first()
    )
    if previous is None:
        return sync_full(kaltura, progress)
    run = _claim(SyncRun.Kind.INCREMENTAL)
    requests_before = run.kaltura_requests
    pacing_before = _pacing_now(kaltura)
    try:
        if run.since is None:
            run.since = previous.started_at - INCREMENTAL_OVERLAP
            run.save(update_fields=["since"])
        cursor = WindowCursor.from_json(run.cursor, "updatedAt", start=int(run.since.timestamp()))
        _walk_and_store(kaltura, run, cursor, progress, requests_before)
        run.details = _with_pacing(cursor.summary(), kaltura, pacing_before)
        _finish(run, kaltura_requests=requests_before + kaltura.requests_made)
    except Exception as exc:
        _fail(run, exc)
        raise
    return run


def sync_plays(kaltura: Kaltura, progress: Callable[[SyncRun], None] | None = None) -> SyncRun:
    """Refresh lastPlayedAt, plays and views, which change without touching updatedAt.

    Only entries played since the last refresh (with a look-back for Kaltura's late
    daily analytics job) are listed, so this is cheap enough to run often.
    """
    previous = last_success(SyncRun.Kind.PLAYS) or last_success(SyncRun.Kind.FULL)
    run = _claim(SyncRun.Kind.PLAYS)
    requests_before = run.kaltura_requests
    pacing_before = _pacing_now(kaltura)
    try:
        if run.since is None:
            since = previous.started_at if previous else timezone.now() - timedelta(days=365 * 20)
            run.since = since - PLAYS_LOOKBACK
            run.save(update_fields=["since"])
        cursor = WindowCursor.from_json(run.cursor, "createdAt")
        for entries in walk_entries(kaltura, cursor, lastPlayedAtGreaterThanOrEqual=int(run.since.timestamp())):
            with transaction.atomic():
                known = set(Entry.objects.filter(id__in=[e.id for e in entries]).values_list("id", flat=True))
                rows = [
                    Entry(id=e.id, last_played_at=e.last_played_at, plays=e.plays, views=e.views)
                    for e in entries
                    if e.id in known
                ]
                Entry.objects.bulk_update(rows, ["last_played_at", "plays", "views"], batch_size=500)
                run.seen += len(entries)
                run.updated += len(rows)
                run.cursor = cursor.to_json()
                run.heartbeat_at = timezone.now()
                run.kaltura_requests = requests_before + kaltura.requests_made
                run.save()
            if progress:
                progress(run)
        run.details = _with_pacing(cursor.summary(), kaltura, pacing_before)
        _finish(run)
    except Exception as exc:
        _fail(run, exc)
        raise
    return run


def store_live(entry: KEntry, flavors: list[KFlavor]) -> None:
    """Mirror one entry as a job has just read it from Kaltura (refresh_entries without asking again)."""
    with transaction.atomic():
        store_entries([entry], {entry.id: flavors}, category_paths(), timezone.now())


def refresh_entries(entry_ids: list[str], kaltura: Kaltura | None = None) -> int:
    """Mirror these entries (entry, flavors, categories) from Kaltura now, as a sync would; how many were read.

    Called when a job has finished with an entry, so the pages show what the job did without
    waiting for the next sync. An entry Kaltura no longer has is marked gone. The mirror is only
    for browsing, so a failure here is logged and never fails the job that called it.
    """
    from django.core.exceptions import ImproperlyConfigured

    entry_ids = list(dict.fromkeys(entry_ids))
    if not entry_ids:
        return 0
    try:
        kaltura = kaltura or Kaltura.from_settings()
        entries = kaltura.entries_by_ids(entry_ids)
        flavors = kaltura.flavors_for_entries(list(entries)) if entries else {}
        with transaction.atomic():
            store_entries(list(entries.values()), flavors, category_paths(), timezone.now())
            Entry.objects.filter(id__in=[e for e in entry_ids if e not in entries], gone=False).update(gone=True)
    except (KalturaError, ImproperlyConfigured, OSError) as exc:
        log.warning("could not refresh the mirror of %s: %s", ", ".join(entry_ids[:10]), exc)
        return 0
    return len(entries)
