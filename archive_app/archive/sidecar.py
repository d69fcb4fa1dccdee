"""Self-describing copies (issue 15): beside each original we copy, a JSON sidecar with what the entry was at
archive time, so that it can be understood (and republished) from the bucket alone.

Key: `<copy's key>/sidecar.json` (a "folder" under the copy: never an entry id's key, which has no "/", and never
a content key, which is `<entry id>/<flavor id>-v<version>`). Written once, with the no-overwrite conditional
write, in STANDARD (readable without a restore), under the same Object Lock as the copies; its VersionId is
recorded on the copy. A rerun after a crash finds it written and keeps it.

The schema (`kaltura-archive-sidecar/2`, every field, and what changed from /1) is documented for auditors and
re-publishers in docs/sidecar.md; keep it in step with sidecar_document below.

Captions and the thumbnail are objects of their own beside the copy, written once like the sidecar (and before
it, so that what it lists exists): `<copy's key>/captions/<asset id>.<ext>` and `<copy's key>/thumbnail.<ext>`,
each with its SHA-256 in the object's metadata (x-amz-meta-sha256). A restore puts back from them the captions
Kaltura no longer has (archive_app/archive/restores.py, step restore_captions).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import requests

from archive_app.lib.kaltura import Kaltura, KalturaError, KCaption, KEntryDescription
from archive_app.lib.storage import APP_NAME, ArchiveStore, StorageError
from archive_app.models import ArchiveCopy, Category, split_tags

# A new number whenever what a sidecar holds changes (an added field too): a reader knows from the number alone
# which fields to expect. /1 had no co-editors and no custom metadata (it listed them under not_included).
SCHEMA = "kaltura-archive-sidecar/2"
NOT_INCLUDED: list[str] = []
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


def keep_captions(store: ArchiveStore, kaltura: Kaltura, copy: ArchiveCopy, captions: Iterable[KCaption]) -> list[dict]:
    """Each caption asset Kaltura has for the entry now (`captions`, read just now), its content kept beside the
    copy."""
    listed = []
    for caption in captions:
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


def custom_metadata_document(description: KEntryDescription) -> dict:
    """The entry's custom metadata as the sidecar keeps it: each profile's values as Kaltura's XML, and each
    profile's XSD (what the values mean). Not available (a partner without the metadata plugin) is said so, with
    Kaltura's answer, never shown as "no custom metadata"."""
    if description.metadata is None:
        return {"available": False, "missing": description.metadata_missing, "values": None, "profiles": None}
    profiles = description.metadata_profiles
    return {
        "available": True,
        "missing": "",
        "values": [
            {
                "id": value.id,
                "profile_id": value.profile_id,
                "profile_system_name": profiles[value.profile_id].system_name,
                "profile_version": value.profile_version,
                "version": value.version,
                "created_at": _time(value.created_at),
                "updated_at": _time(value.updated_at),
                "xml": value.xml,
            }
            for value in description.metadata
        ],
        "profiles": [
            {
                "id": profile.id,
                "name": profile.name,
                "system_name": profile.system_name,
                "version": profile.version,
                "xsd": profile.xsd,
            }
            for profile in profiles.values()
        ],
    }


def sidecar_document(
    state, copy: ArchiveCopy, *, captions: list[dict], thumbnail: dict | None, description: KEntryDescription
) -> dict:
    """The sidecar of `copy`, from the live state read for the archive run (entry and flavors), with the captions
    and thumbnail kept beside it, and the co-editors and custom metadata read from Kaltura right before."""
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
            "co_editors": list(description.co_editors),
            "co_publishers": list(description.co_publishers),
            "co_viewers": list(description.co_viewers),
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
        "custom_metadata": custom_metadata_document(description),
        "not_included": NOT_INCLUDED,
    }


def write_sidecar(
    store: ArchiveStore, kaltura: Kaltura, state, copy: ArchiveCopy, description: KEntryDescription | None = None
) -> dict:
    """Write the copy's sidecar, its captions and thumbnail first, if it has none; record its key and version on
    the copy. `description`: the entry's, read by this job in the same request as the live state it copied."""
    key = sidecar_key(copy.key)
    # No HeadObject first (one S3 request per copy): a sidecar written before a crash makes the conditional
    # writes below fail with PreconditionFailed, and the first one stands (with what it lists).
    description = description or kaltura.describe_entry(copy.entry_id)
    captions = keep_captions(store, kaltura, copy, description.captions)
    thumbnail = keep_thumbnail(store, kaltura, state, copy)
    document = sidecar_document(state, copy, captions=captions, thumbnail=thumbnail, description=description)
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
    kept: dict[str, int | bool | str] = {
        "captions_kept": sum(1 for c in captions if c["key"]),
        "thumbnail_kept": bool(thumbnail and thumbnail["key"]),
        "custom_metadata_kept": len(description.metadata or ()),
    }
    if description.metadata is None:
        kept["custom_metadata_missing"] = description.metadata_missing
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


# --- putting the thumbnail back (also the restore's step restore_captions) ---------------------


def restore_thumbnail(store: ArchiveStore, kaltura: Kaltura, copy: ArchiveCopy | None) -> dict:
    """Make the thumbnail the sidecar lists the entry's default thumbnail again, unless Kaltura's default one is
    that image already (same SHA-256).

    The placeholder got a thumbnail cut from the placeholder video; the restored original does not bring its own
    back. A rerun after a crash finds the archived image in place and leaves it.
    """
    if copy is None or not copy.sidecar_key:
        return {"thumbnail": "no sidecar recorded for this copy"}
    archived = read_sidecar(store, copy).get("thumbnail") or {}
    if not archived.get("key"):
        return {"thumbnail": "none archived"}
    url = kaltura.get_entry(copy.entry_id).thumbnail_url
    current = None
    if url:
        fetched = _fetch_or_none(kaltura, url)
        current = hashlib.sha256(fetched).hexdigest() if fetched is not None else None
    if current == archived.get("sha256"):
        return {"thumbnail": "kept: Kaltura's default thumbnail is the archived one"}
    data = store.read_small(archived["key"], archived.get("version_id"), limit=SIDE_OBJECT_LIMIT)
    sha256 = hashlib.sha256(data).hexdigest()
    if archived.get("sha256") and sha256 != archived["sha256"]:
        return {"thumbnail_refused": f"SHA-256 {sha256} in S3, {archived['sha256']} recorded ({archived['key']})"}
    extension = archived["key"].rsplit(".", 1)[-1]
    kaltura.set_thumbnail_image(copy.entry_id, data, file_name=f"{copy.entry_id}.{extension}")
    return {"thumbnail_restored": {"key": archived["key"], "sha256": sha256, "replaced_sha256": current}}


def _fetch_or_none(kaltura: Kaltura, url: str) -> bytes | None:
    """Kaltura's thumbnail bytes, or None when it serves none (an error answer, a refused host, a broken
    connection, or too large to compare): the archived one then goes back."""
    try:
        return _fetch(kaltura, url).data
    except (StorageError, KalturaError, requests.RequestException):
        return None
