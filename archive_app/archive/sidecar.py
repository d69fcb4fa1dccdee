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
- captions: every caption asset Kaltura had (list, maybe empty): id, language, label, format (KalturaCaptionType:
  "1" SRT, "2" DFXP, "3" WebVTT, ...), format_name, is_default, file_ext, status, and where its content is kept:
  key, version_id, bytes, sha256 (of the bytes Kaltura served). key is null (with `missing` saying why) for an
  asset without content, or with more than SIDE_OBJECT_LIMIT bytes.
- thumbnail: the entry's default thumbnail as Kaltura served it from thumbnail_url: key, version_id, bytes,
  sha256, content_type; null if the entry has no thumbnail URL.
- not_included: what this version of the sidecar does not hold yet (co-editors, custom metadata): a reader must
  not take their absence for "there were none".

Captions and the thumbnail are objects of their own beside the copy, written once like the sidecar (and before
it, so that what it lists exists): `<copy's key>/captions/<asset id>.<ext>` and `<copy's key>/thumbnail.<ext>`,
each with its SHA-256 in the object's metadata (x-amz-meta-sha256). A restore puts back from them the captions
Kaltura no longer has (archive_app/archive/restores.py, step restore_captions).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from archive_app.lib.kaltura import Kaltura, KCaption
from archive_app.lib.storage import APP_NAME, ArchiveStore, StorageError
from archive_app.models import ArchiveCopy, Category, split_tags

SCHEMA = "kaltura-archive-sidecar/1"
NOT_INCLUDED = ["co_editors", "custom_metadata"]
# Captions and thumbnails are small; anything bigger than this is named in the sidecar, not kept.
SIDE_OBJECT_LIMIT = 32 * 1024 * 1024
CAPTION_FORMAT_NAMES = {"1": "SRT", "2": "DFXP", "3": "WebVTT", "4": "CAP", "5": "SCC"}
CAPTION_CONTENT_TYPES = {"1": "application/x-subrip", "2": "application/ttml+xml", "3": "text/vtt"}
IMAGE_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp"}


def sidecar_key(copy_key: str) -> str:
    return f"{copy_key}/sidecar.json"


def caption_key(copy_key: str, caption: KCaption) -> str:
    extension = caption.file_ext or CAPTION_FORMAT_NAMES.get(caption.format, "txt").lower()
    return f"{copy_key}/captions/{caption.id}.{extension}"


def thumbnail_key(copy_key: str, content_type: str) -> str:
    return f"{copy_key}/thumbnail.{IMAGE_EXTENSIONS.get(content_type, 'img')}"


@dataclass
class _Fetched:
    data: bytes | None  # None: more than SIDE_OBJECT_LIMIT
    content_type: str


def _fetch(kaltura: Kaltura, url: str) -> _Fetched:
    """Kaltura's bytes at `url` (its own hosts only), read up to SIDE_OBJECT_LIMIT."""
    with kaltura.open_download(url) as response:
        if response.status_code != 200:
            raise StorageError(f"Kaltura answered {response.status_code} for {url}", code="DownloadFailed")
        parts, size = [], 0
        for part in response.iter_content(1024 * 1024):
            size += len(part)
            if size > SIDE_OBJECT_LIMIT:
                return _Fetched(None, "")
            parts.append(part)
        return _Fetched(b"".join(parts), response.headers.get("Content-Type", "").split(";")[0].strip())


def _keep(store: ArchiveStore, entry_id: str, key: str, data: bytes, content_type: str, **metadata: str) -> dict:
    """Write `data` at `key` once; a rerun finds it written (the first one stands) and lists that one."""
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        version_id = store.put_new_small(
            key, data, content_type=content_type, metadata={"entry-id": entry_id, "sha256": sha256, **metadata}
        )
    except StorageError as exc:
        if exc.code != "PreconditionFailed":
            raise
        head = store.head(entry_id, key=key)
        if head is None:
            raise
        return {
            "key": key,
            "version_id": head.version_id,
            "bytes": head.size,
            "sha256": head.metadata.get("sha256", ""),
        }
    return {"key": key, "version_id": version_id, "bytes": len(data), "sha256": sha256}


def keep_captions(store: ArchiveStore, kaltura: Kaltura, copy: ArchiveCopy) -> list[dict]:
    """Each caption asset Kaltura has for the entry now, its content kept beside the copy."""
    listed = []
    for caption in kaltura.captions(copy.entry_id):
        item = {
            "id": caption.id,
            "language": caption.language,
            "label": caption.label,
            "format": caption.format,
            "format_name": CAPTION_FORMAT_NAMES.get(caption.format, ""),
            "is_default": caption.is_default,
            "file_ext": caption.file_ext,
            "status": caption.status,
        }
        if caption.status != KCaption.READY:
            listed.append({**item, "key": None, "missing": "no content in Kaltura"})
            continue
        fetched = _fetch(kaltura, kaltura.caption_download_url(caption.id))
        if fetched.data is None:
            listed.append({**item, "key": None, "missing": f"more than {SIDE_OBJECT_LIMIT} bytes"})
            continue
        content_type = CAPTION_CONTENT_TYPES.get(caption.format, "text/plain")
        listed.append(
            {
                **item,
                **_keep(
                    store,
                    copy.entry_id,
                    caption_key(copy.key, caption),
                    fetched.data,
                    content_type,
                    **{"caption-id": caption.id},
                ),
            }
        )
    return listed


def keep_thumbnail(store: ArchiveStore, kaltura: Kaltura, state, copy: ArchiveCopy) -> dict | None:
    url = state.entry.thumbnail_url
    if not url:
        return None
    fetched = _fetch(kaltura, url)
    if fetched.data is None:
        return {"key": None, "missing": f"more than {SIDE_OBJECT_LIMIT} bytes"}
    content_type = fetched.content_type or "application/octet-stream"
    kept = _keep(store, copy.entry_id, thumbnail_key(copy.key, content_type), fetched.data, content_type)
    return {**kept, "content_type": content_type}


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def sidecar_document(state, copy: ArchiveCopy, *, captions: list[dict], thumbnail: dict | None) -> dict:
    """The sidecar of `copy`, from the live state read for the archive run (entry and flavors), with the captions
    and thumbnail kept beside it."""
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
                {
                    "id": cid,
                    "full_name": categories[cid].full_name if cid in categories else None,
                    "full_ids": categories[cid].full_ids if cid in categories else None,
                }
                for cid in entry.categories_ids
            ],
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
            {
                "id": f.id,
                "flavor_params_id": f.flavor_params_id,
                "is_original": f.is_original,
                "status": f.status,
                "bytes": f.size_bytes,
                "file_ext": f.file_ext,
                "width": f.width,
                "height": f.height,
                "bitrate": f.bitrate,
                "tags": f.tags,
                "version": f.version,
            }
            for f in state.flavors
        ],
        "captions": captions,
        "thumbnail": thumbnail,
        "not_included": NOT_INCLUDED,
    }


def write_sidecar(store: ArchiveStore, kaltura: Kaltura, state, copy: ArchiveCopy) -> dict:
    """Write the copy's sidecar, its captions and thumbnail first, if it has none; record its key and version on
    the copy."""
    key = sidecar_key(copy.key)
    head = store.head(copy.entry_id, key=key)
    if head is not None:
        # Written by this copy's run before a crash: the first one stands (with what it lists).
        ArchiveCopy.objects.filter(id=copy.id).update(sidecar_key=key, sidecar_version_id=head.version_id or "")
        return {"sidecar_key": key, "sidecar_version_id": head.version_id, "sidecar_written": False}
    captions = keep_captions(store, kaltura, copy)
    thumbnail = keep_thumbnail(store, kaltura, state, copy)
    document = sidecar_document(state, copy, captions=captions, thumbnail=thumbnail)
    body = json.dumps(document, indent=2, ensure_ascii=False).encode()
    try:
        version_id = store.put_new_small(
            key, body, content_type="application/json", metadata={"entry-id": copy.entry_id, "schema": SCHEMA}
        )
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
    kept = {
        "captions_kept": sum(1 for c in captions if c["key"]),
        "thumbnail_kept": bool(thumbnail and thumbnail["key"]),
    }
    return {"sidecar_key": key, "sidecar_version_id": version_id, "sidecar_written": written, **kept}


def read_sidecar(store: ArchiveStore, copy: ArchiveCopy) -> dict:
    return json.loads(store.read_small(copy.sidecar_key, copy.sidecar_version_id or None))


# --- putting captions back (a restore's step restore_captions) ------------------------------


def _caption_sha256(kaltura: Kaltura, caption: KCaption) -> str | None:
    fetched = _fetch(kaltura, kaltura.caption_download_url(caption.id))
    return hashlib.sha256(fetched.data).hexdigest() if fetched.data is not None else None


def restore_captions(store: ArchiveStore, kaltura: Kaltura, copy: ArchiveCopy | None, added: dict, remember) -> dict:
    """Add back from S3 the captions the copy's sidecar lists and Kaltura no longer has; leave alone those it has.

    Kaltura "has" an archived caption when one of its captions is that asset, or has the same language and label,
    or the same content (SHA-256). `added` (archived asset id -> the asset added for it) is this restore's record
    from an earlier run, and `remember(added)` saves it right after each captionAsset.add, so a rerun after a
    crash at any line adds none twice: an asset added without its content yet (ours, or the same language and
    label) gets the content instead.
    """
    if copy is None or not copy.sidecar_key:
        return {"captions": "no sidecar recorded for this copy"}
    archived = [c for c in read_sidecar(store, copy).get("captions", []) if c.get("key")]
    if not archived:
        return {"captions": "none archived"}
    live = kaltura.captions(copy.entry_id)
    hashes: dict[str, str | None] = {}

    def has_it(caption: dict) -> KCaption | None:
        for asset in live:
            if asset.id in (caption["id"], added.get(caption["id"])):
                return asset
            if (asset.language, asset.label) == (caption["language"], caption["label"]):
                return asset
        for asset in live:
            if asset.status == KCaption.READY and caption.get("sha256"):
                if asset.id not in hashes:
                    hashes[asset.id] = _caption_sha256(kaltura, asset)
                if hashes[asset.id] == caption["sha256"]:
                    return asset
        return None

    kept, restored, refused = [], [], []
    has_default = any(asset.is_default for asset in live)
    for caption in archived:
        asset = has_it(caption)
        if asset is not None and asset.status == KCaption.READY:
            kept.append({"id": caption["id"], "in_kaltura": asset.id})
            continue
        data = store.read_small(caption["key"], caption.get("version_id"), limit=SIDE_OBJECT_LIMIT)
        sha256 = hashlib.sha256(data).hexdigest()
        if caption.get("sha256") and sha256 != caption["sha256"]:
            refused.append(
                {
                    "id": caption["id"],
                    "key": caption["key"],
                    "reason": f"SHA-256 {sha256} in S3, {caption['sha256']} recorded",
                }
            )
            continue
        if asset is None:
            new_id = kaltura.add_caption(
                copy.entry_id,
                language=caption["language"],
                label=caption["label"],
                caption_format=caption["format"],
                is_default=caption.get("is_default", False) and not has_default,
            )
            added = {**added, caption["id"]: new_id}
            remember(added)
        else:
            new_id = asset.id  # added before a crash, still without content
        extension = caption["key"].rsplit(".", 1)[-1]
        token = kaltura.upload(io.BytesIO(data), file_name=f"{caption['id']}.{extension}", size=len(data))
        kaltura.set_caption_content(new_id, token)
        restored.append(
            {
                "id": caption["id"],
                "language": caption["language"],
                "label": caption["label"],
                "as": new_id,
                "bytes": len(data),
                "sha256": sha256,
            }
        )
    return {"captions_kept": kept, "captions_restored": restored, "captions_refused": refused}
