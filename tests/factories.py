"""Mirror rows (entries, flavors, categories) made directly, for the browse tests and the benchmark.

The sync that fills the mirror from Kaltura is tested on its own; these rows only have
to look like what it writes: tags_search and archive_state come from Entry.set_tags,
original_size_bytes and total_flavor_bytes from the flavors.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import string

from django.utils import timezone

from archive_app.lib import bulk
from archive_app.mirror.sync import store_category_search
from archive_app.models import (
    TAG_ARCHIVED,
    TAG_REPLACED,
    Category,
    Entry,
    EntryStatus,
    Flavor,
    FlavorStatus,
    MediaType,
)

ALPHABET = string.ascii_lowercase + string.digits
YEAR = dt.timedelta(days=365.25)
# Near-misses on purpose: Kaltura's own tag filter would match several of these for
# "archived_to_s3" or "archived" (prefixes, "_" splits words); the app must not.
TAG_POOL = [
    "lecture",
    "lecture capture",
    "seminar",
    "biology",
    "chemistry",
    "zoom",
    "mediaspace",
    "archive",
    "archived",
    "not_archived",
    "archived_to_s3_old",
    "flavors",
    "Lecture",
]
# Names a spreadsheet would run as formulas, and other awkward text for the export.
AWKWARD_NAMES = [
    '=HYPERLINK("http://example.com","x")',
    "+1 talk",
    "-2 degrees",
    "@SUM(A1:A2)",
    "tab\tinside",
    'quote " inside',
    "newline\ninside",
    "Ünïcödé lecture — 講義",
]
_counter = itertools.count(1)


def next_entry_id() -> str:
    return f"0_t{next(_counter):07d}"


def make_category(category_id: int, name: str, parent: Category | None = None) -> Category:
    return Category.objects.create(**category_fields(category_id, name, parent))


def category_fields(category_id: int, name: str, parent: Category | None) -> dict:
    return {
        "id": category_id,
        "parent_id": parent.id if parent else None,
        "name": name,
        "full_name": f"{parent.full_name}>{name}" if parent else name,
        "full_ids": f"{parent.full_ids}>{category_id}" if parent else str(category_id),
        "depth": parent.depth + 1 if parent else 0,
    }


def make_entry(
    entry_id: str | None = None,
    *,
    tags: str = "",
    categories=(),
    flavor_sizes: tuple[int, ...] = (100_000_000, 20_000_000),
    has_original: bool = True,
    **fields,
) -> Entry:
    """One saved entry; the first of `flavor_sizes` is the original unless has_original=False."""
    now = timezone.now()
    values = {
        "name": "A lecture",
        "owner_id": "owner@example.edu",
        "creator_id": "creator@example.edu",
        "created_at": now - 2 * YEAR,
        "updated_at": now - YEAR,
        "status": EntryStatus.READY,
        "media_type": MediaType.VIDEO,
        "duration": 3600,
        "synced_at": now,
        "thumbnail_url": "https://cfvod.kaltura.com/p/1/thumbnail/entry_id/x/version/1",
    }
    values.update(fields)
    entry = Entry(id=entry_id or next_entry_id(), **values)
    entry.set_tags(tags)
    flavors = _flavors(entry, list(flavor_sizes), has_original)
    entry.total_flavor_bytes = sum(flavor.size_bytes for flavor in flavors)
    entry.original_size_bytes = flavors[0].size_bytes if has_original and flavors else None
    entry.original_flavor_id = flavors[0].id if has_original and flavors else ""
    entry.original_status = FlavorStatus.READY if has_original and flavors else None
    for name in ("total_flavor_bytes", "original_size_bytes"):
        if name in fields:
            setattr(entry, name, fields[name])
    entry.save()
    Flavor.objects.bulk_create(flavors)
    entry.categories.set(categories)
    store_category_search([entry.id])
    return entry


def _flavors(entry: Entry, sizes: list[int], has_original: bool) -> list[Flavor]:
    return [
        Flavor(
            id=f"{entry.id[:2]}f{entry.id[2:]}{index}",
            entry=entry,
            is_original=has_original and index == 0,
            status=FlavorStatus.READY,
            size_bytes=size,
            size_exact=True,
            file_ext="mp4",
            flavor_params_id=0 if has_original and index == 0 else 100 + index,
            width=1280 // (index + 1),
            height=720 // (index + 1),
            bitrate=2000 // (index + 1),
        )
        for index, size in enumerate(sizes)
    ]


# --- A varied data set ------------------------------------------------------------


def build_categories() -> list[Category]:
    """About 40 nested categories whose ids are prefixes of each other's ("1" and "12",
    "1>100" and "1>1000"), so a naive startswith test would take in the wrong ones."""
    categories: list[Category] = []
    roots = [1, 12, 2, 23, 3]
    children = {1: [100, 1000, 101], 12: [120, 1200, 121], 2: [200, 201, 202], 23: [230, 231, 232], 3: [300, 301, 302]}
    grandchild_ids = itertools.count(5000)
    for root_id in roots:
        root = Category(**category_fields(root_id, f"Root {root_id}", None))
        categories.append(root)
        for child_id in children[root_id]:
            child = Category(**category_fields(child_id, f"Course {child_id}", root))
            categories.append(child)
            for _ in range(1 if child_id % 2 else 2):
                grand_id = next(grandchild_ids)
                categories.append(Category(**category_fields(grand_id, f"Term {grand_id}", child)))
    return categories


def build_entries(rng: random.Random, count: int, now: dt.datetime, category_ids: list[int], awkward: bool = True):
    """Yield (entry, flavors, category ids), unsaved, with realistic spreads:
    ten years of creation, 30% never played, 2-5 flavors, a fifth archived, half of those replaced."""
    seen_ids: set[str] = set()
    status_weights = [
        (EntryStatus.READY, 90),
        (EntryStatus.NO_CONTENT, 3),
        (EntryStatus.ERROR_CONVERTING, 2),
        (EntryStatus.PENDING, 2),
        (EntryStatus.BLOCKED, 1),
        (EntryStatus.PRECONVERT, 2),
    ]
    media_weights = [
        (MediaType.VIDEO, 85),
        (MediaType.AUDIO, 8),
        (MediaType.IMAGE, 5),
        (MediaType.LIVE_STREAM_FLASH, 1),
        (None, 1),
    ]
    statuses, status_w = zip(*status_weights, strict=True)
    media_types, media_w = zip(*media_weights, strict=True)
    for number in range(count):
        while True:
            entry_id = f"{rng.choice('01')}_{''.join(rng.choices(ALPHABET, k=8))}"
            if entry_id not in seen_ids:
                seen_ids.add(entry_id)
                break
        # Uploads grew over time: more recent entries than old ones.
        created_at = now - 10 * YEAR * rng.random() ** 1.3 - dt.timedelta(seconds=rng.randrange(86400))
        if rng.random() < 0.3:
            last_played_at, plays = None, 0
        else:
            last_played_at = created_at + (now - created_at) * rng.random() ** 0.7
            plays = min(1_000_000, int(rng.paretovariate(1.1)))
        state_roll = rng.random()
        tags = rng.sample(TAG_POOL, rng.choice([0, 0, 1, 1, 2, 3]))
        if state_roll < 0.10:
            tags += [TAG_ARCHIVED, TAG_REPLACED]
        elif state_roll < 0.20:
            tags.append(TAG_ARCHIVED)
        elif state_roll < 0.21:
            tags.append(TAG_REPLACED)  # inconsistent, as real data can be
        rng.shuffle(tags)
        media_type = rng.choices(media_types, media_w)[0]
        name = f"{rng.choice(['Lecture', 'Seminar', 'Talk', 'Lab', 'Interview'])} {number}"
        if awkward and rng.random() < 0.03:
            name = rng.choice(AWKWARD_NAMES)
        entry = Entry(
            id=entry_id,
            name=name,
            owner_id=f"user{rng.randrange(200):03d}@example.edu",
            creator_id=f"user{rng.randrange(200):03d}@example.edu",
            created_at=created_at,
            updated_at=created_at + (now - created_at) * rng.random(),
            last_played_at=last_played_at,
            plays=plays,
            views=plays + rng.randrange(10),
            status=rng.choices(statuses, status_w)[0],
            media_type=media_type,
            duration=rng.randrange(10, 10_000),
            thumbnail_url=f"https://cfvod.kaltura.com/p/1/thumbnail/entry_id/{entry_id}/version/100002",
            synced_at=now,
            gone=rng.random() < 0.03,
        )
        entry.set_tags(", ".join(tags))
        has_original = rng.random() > 0.02
        if entry.archive_state == "placeholder":
            sizes = [rng.randrange(20_000, 60_000) for _ in range(rng.randint(2, 5))]
        else:
            scale = {MediaType.VIDEO: 300e6, MediaType.AUDIO: 30e6, MediaType.IMAGE: 2e6}.get(media_type, 50e6)
            original = max(1000, int(rng.lognormvariate(0, 1.0) * scale))
            sizes = [original] + [int(original * rng.uniform(0.05, 0.6)) for _ in range(rng.randint(1, 4))]
        flavors = _flavors(entry, sizes, has_original)
        entry.total_flavor_bytes = sum(sizes)
        entry.original_size_bytes = sizes[0] if has_original else None
        entry.original_flavor_id = flavors[0].id if has_original else ""
        entry.original_status = FlavorStatus.READY if has_original else None
        chosen = rng.sample(category_ids, rng.choices([0, 1, 2, 3], [20, 50, 20, 10])[0])
        yield entry, flavors, chosen


def save_dataset(
    count: int,
    *,
    seed: int = 1,
    now: dt.datetime | None = None,
    batch_size: int = 2000,
    awkward: bool = True,
    progress=None,
) -> None:
    """Categories and `count` entries with flavors, inserted through archive_app.lib.bulk.insert in batches.

    bulk.insert rather than bulk_create: bulk_create binds every parameter in Python (~250 entries/s on
    PostgreSQL, hours for bench/bench_browse.py's million); this loads ~2,900/s."""
    rng = random.Random(seed)
    now = now or timezone.now()
    categories = build_categories()
    _insert_instances(Category, categories)
    category_ids = [category.id for category in categories]
    rows = build_entries(rng, count, now, category_ids, awkward=awkward)
    done = 0
    while batch := list(itertools.islice(rows, batch_size)):
        _insert_instances(Entry, [entry for entry, _, _ in batch])
        _insert_instances(Flavor, [flavor for _, flavors, _ in batch for flavor in flavors])
        links = [[entry.id, pk] for entry, _, chosen in batch for pk in chosen]
        bulk.insert(Entry.categories.through, ["entry_id", "category_id"], links)
        store_category_search([entry.id for entry, _, _ in batch])
        done += len(batch)
        if progress:
            progress(done)


def _insert_instances(model, instances) -> None:
    """Unsaved model instances as rows of every concrete column (none of these models has auto_now fields)."""
    names = [field.attname for field in model._meta.concrete_fields]
    bulk.insert(model, names, [[getattr(obj, name) for name in names] for obj in instances])
