"""The one writer of an entry's Kaltura tags (archived_to_s3, flavors_deleted, archive_exempt).

Tags are read from Kaltura right before they are written, never from the mirror or from a read made before a
long copy: an owner may have edited them meanwhile, and their tags are kept. Kaltura lowercases tags on write
(DOMAIN.md §3), so ours are compared in lower case. The mirror takes what Kaltura answered.
"""

from __future__ import annotations

from collections.abc import Iterable

from archive_app.lib.kaltura import Kaltura, KEntry
from archive_app.models import Entry, split_tags


def write_tags(kaltura: Kaltura, entry_id: str, *, add: Iterable[str] = (), remove: Iterable[str] = ()) -> dict:
    """Add and remove tags on the live entry; {"tags_before", "tags_after"} for the audit event."""
    return write_tags_reading(kaltura, entry_id, add=add, remove=remove)[0]


def write_tags_reading(
    kaltura: Kaltura,
    entry_id: str,
    *,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
    fresh: KEntry | None = None,
    thumbnail: bool = False,
) -> tuple[dict, KEntry | None]:
    """write_tags, and the entry as Kaltura answered (None when nothing was written).

    `fresh`: the entry as read in this same step, right before (a runner step's live read), which saves a read.
    `thumbnail`: the default thumbnail is cut from the entry's new content in the same request as the tags.
    Nothing is written when the tags are already as wanted and no thumbnail is asked for (a rerun after a crash
    finds them so).
    """
    current, wanted = merged((fresh or kaltura.get_entry(entry_id)).tags, add=add, remove=remove)
    before = ", ".join(current)
    if wanted == current and not thumbnail:
        return {"tags_before": before, "tags_after": before}, None
    details = {}
    if thumbnail:
        entry, failed = kaltura.set_tags_and_thumbnail(entry_id, wanted)
        details["thumbnail"] = f"not updated: {failed}" if failed else "updated"
    else:
        entry = kaltura.set_tags(entry_id, wanted)
    store_in_mirror(entry)
    return {"tags_before": before, "tags_after": entry.tags, **details}, entry


def merged(tags: str, *, add: Iterable[str] = (), remove: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """The entry's tags now (`tags`, as Kaltura gave them) and as they should be: the owner's kept, in their
    order, ours added at the end and removed, compared in lower case."""
    add, remove = [tag.lower() for tag in add], {tag.lower() for tag in remove}
    current = split_tags(tags)
    wanted = [tag for tag in current if tag.lower() not in remove]
    lowered = {tag.lower() for tag in wanted}
    wanted += [tag for tag in dict.fromkeys(add) if tag not in lowered]
    return current, wanted


def store_in_mirror(entry: KEntry) -> None:
    """The tags Kaltura answered a write with, in the mirror (and the archive state they imply)."""
    mirror = Entry.objects.filter(id=entry.id).first()
    if mirror is not None:
        mirror.set_tags(entry.tags)
        mirror.save(update_fields=["tags", "tags_search", "archive_state"])
