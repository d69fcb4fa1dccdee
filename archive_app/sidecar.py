"""Self-describing copies (issue 15): beside each original we copy, a JSON sidecar with what the entry was at
archive time, so that it can be understood (and republished) from the bucket alone.

Key: `<copy's key>/sidecar.json` (a "folder" under the copy: never an entry id's key, which has no "/", and never
a content key, which is `<entry id>/<flavor id>-v<version>`). Written once, with the no-overwrite conditional
write, in STANDARD (readable without a restore), under the same Object Lock as the copies; its VersionId is
recorded on the copy. A rerun after a crash finds it written and keeps it.

Schema `kaltura-archive-sidecar/1` (a new number for any change that is not an added field):
- schema, written_at (ISO 8601, UTC), app
- entry: id, name, description, tags (list), categories (list of {id, full_name, full_ids}; names from the
  mirror's category tree at archive time), owner_id, creator_id, created_at, updated_at, last_played_at,
  plays, views, duration (seconds), media_type, status, thumbnail_url (Kaltura's, as it was)
- original: the copy this describes: flavor_id, flavor_version, bytes, sha256, crc32, bucket, key, version_id,
  storage_class
- flavors: every flavor Kaltura had: id, flavor_params_id, is_original, status, bytes, file_ext, width, height,
  bitrate, tags, version
- not_included: what this version of the sidecar does not hold yet (captions, the thumbnail's bytes, co-editors,
  custom metadata): a reader must not take their absence for "there were none".
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from archive_app.models import ArchiveCopy, Category, split_tags
from archive_app.storage import APP_NAME, ArchiveStore, StorageError

SCHEMA = "kaltura-archive-sidecar/1"
NOT_INCLUDED = ["captions", "thumbnail_bytes", "co_editors", "custom_metadata"]


def sidecar_key(copy_key: str) -> str:
    return f"{copy_key}/sidecar.json"


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def sidecar_document(state, copy: ArchiveCopy) -> dict:
    """The sidecar of `copy`, from the live state read for the archive run (entry and flavors)."""
    entry = state.entry
    categories = {c.id: c for c in Category.objects.filter(id__in=entry.categories_ids)}
    return {
        "schema": SCHEMA,
        "written_at": datetime.now(UTC).isoformat(),
        "app": APP_NAME,
        "entry": {
            "id": entry.id,
            "name": entry.name,
            "description": entry.description,
            "tags": split_tags(entry.tags),
            "categories": [
                {"id": cid, "full_name": categories[cid].full_name if cid in categories else None,
                 "full_ids": categories[cid].full_ids if cid in categories else None}
                for cid in entry.categories_ids
            ],  # fmt: skip
            "owner_id": entry.owner_id,
            "creator_id": entry.creator_id,
            "created_at": _time(entry.created_at),
            "updated_at": _time(entry.updated_at),
            "last_played_at": _time(entry.last_played_at),
            "plays": entry.plays,
            "views": entry.views,
            "duration": entry.duration,
            "media_type": entry.media_type,
            "status": entry.status,
            "thumbnail_url": entry.thumbnail_url,
        },
        "original": {
            "flavor_id": copy.flavor_id,
            "flavor_version": copy.flavor_version,
            "bytes": copy.size_bytes,
            "sha256": copy.sha256,
            "crc32": copy.crc32,
            "bucket": copy.bucket,
            "key": copy.key,
            "version_id": copy.version_id,
            "storage_class": copy.storage_class,
        },
        "flavors": [
            {"id": f.id, "flavor_params_id": f.flavor_params_id, "is_original": f.is_original, "status": f.status,
             "bytes": f.size_bytes, "file_ext": f.file_ext, "width": f.width, "height": f.height,
             "bitrate": f.bitrate, "tags": f.tags, "version": f.version}
            for f in state.flavors
        ],  # fmt: skip
        "not_included": NOT_INCLUDED,
    }


def write_sidecar(store: ArchiveStore, state, copy: ArchiveCopy) -> dict:
    """Write the copy's sidecar if it has none; record its key and version on the copy."""
    key = sidecar_key(copy.key)
    body = json.dumps(sidecar_document(state, copy), indent=2, ensure_ascii=False).encode()
    try:
        version_id = store.put_new_small(key, body, content_type="application/json",
                                         metadata={"entry-id": copy.entry_id, "schema": SCHEMA})  # fmt: skip
    except StorageError as exc:
        if exc.code != "PreconditionFailed":
            raise
        # Written by this copy's run before a crash: the first one stands.
        head = store.head(copy.entry_id, key=key)
        version_id = head.version_id if head else None
        written = False
    else:
        written = True
    ArchiveCopy.objects.filter(id=copy.id).update(sidecar_key=key, sidecar_version_id=version_id or "")
    return {"sidecar_key": key, "sidecar_version_id": version_id, "sidecar_written": written}


def read_sidecar(store: ArchiveStore, copy: ArchiveCopy) -> dict:
    return json.loads(store.read_small(copy.sidecar_key, copy.sidecar_version_id or None))
