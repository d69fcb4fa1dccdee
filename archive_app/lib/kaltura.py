"""The only module that talks to Kaltura: a thin adapter over the official client.

It starts and renews the Kaltura session, retries what is worth retrying (the
client's own retry decorator never fires: it wraps every transport error first),
returns the project's own dataclasses, and raises one exception type, KalturaError.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import random
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import redis
import requests
from django.conf import settings
from KalturaClient import KalturaClient, KalturaConfiguration
from KalturaClient.Base import KalturaParams
from KalturaClient.exceptions import KalturaClientException, KalturaException
from KalturaClient.Plugins.Caption import KalturaCaptionAsset, KalturaCaptionAssetFilter
from KalturaClient.Plugins.Core import (
    KalturaCategoryFilter,
    KalturaDetachedResponseProfile,
    KalturaFilterPager,
    KalturaFlavorAssetFilter,
    KalturaMediaEntry,
    KalturaMediaEntryFilter,
    KalturaResponseProfileType,
    KalturaSessionType,
    KalturaUploadedFileTokenResource,
    KalturaUploadToken,
)
from KalturaClient.Plugins.Metadata import (
    KalturaMetadataFilter,
    KalturaMetadataObjectType,
    KalturaMetadataProfileFilter,
)

from archive_app.lib.config import require_kaltura

# Kaltura quotes the session in some error messages (and could quote anything): every message is
# redacted of sessions and configured secrets before it leaves this module.
from archive_app.lib.redaction import redact as redact_session

log = logging.getLogger(__name__)

PAGE_SIZE = 500  # Kaltura silently clamps larger pages to this
MAX_MATCHES = 10_000  # nothing is returned past this many matches of one filter
MAX_ID_LIST = 150  # idIn / idNotIn keep only this many ids
ALL_ENTRY_STATUSES = "-2,-1,0,1,2,3,4,5,6,7"
# Entries per flavorAsset.list in a multirequest: 6 flavors each at most keeps a
# sub-request within one 500-row page.
FLAVOR_LIST_CHUNK = 80

# Exactly the fields KEntry.from_client and KFlavor.from_client read. Listing with a response profile of
# these (instead of ~80 entry and ~40 flavor fields) makes the answers a quarter of the size, and the
# client's XML parsing, which walks every field of every object once per class level, as much faster.
ENTRY_RESPONSE_FIELDS = (
    "id,name,description,userId,creatorId,tags,categoriesIds,createdAt,updatedAt,lastPlayedAt,plays,views,"
    "status,mediaType,duration,sourceType,parentEntryId,capabilities,replacingEntryId,replacementStatus,thumbnailUrl"
)
FLAVOR_RESPONSE_FIELDS = (
    "id,entryId,flavorParamsId,isOriginal,status,size,sizeInBytes,tags,fileExt,width,height,bitrate,createdAt,updatedAt,"
    "version"
)
ENTRY_FIELD_NAMES = tuple(ENTRY_RESPONSE_FIELDS.split(","))
FLAVOR_FIELD_NAMES = tuple(FLAVOR_RESPONSE_FIELDS.split(","))

# Transport failures (connection, timeout, empty or HTML body) are worth retrying.
TRANSIENT_CLIENT_CODES = {
    KalturaClientException.ERROR_CONNECTION_FAILED,
    KalturaClientException.ERROR_READ_FAILED,
    KalturaClientException.ERROR_READ_TIMEOUT,
    KalturaClientException.ERROR_INVALID_XML,
    KalturaClientException.ERROR_RESULT_NOT_FOUND,
    KalturaClientException.ERROR_READ_GZIP_FAILED,
}
# Kaltura's own spelling of its internal error includes the typo.
TRANSIENT_KALTURA_CODES = {"INTERNAL_SERVERL_ERROR", "INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE"}
SESSION_CODES = {"INVALID_KS", "EXPIRED_KS", "MISSING_KS"}
# Kaltura's answer to a partner calling too fast; nothing ran, so the call is retried after a longer wait.
BLOCKED_CODE = "ACTION_BLOCKED"
BLOCKED_RETRY_DELAYS = (1, 2, 5, 10, 20, 30, 60)
# How long the pages say "paced" after the last wait for the cap or the last blocked answer.
PACING_SHOWN_SECONDS = 120
PACING_KEY = "kaltura-archive:pacing:{partner}:{what}"


class Pacer:
    """At most `per_second` requests to one Kaltura partner from every process sharing this Redis.

    Each request takes the next free slot (slots are 1/per_second apart, kept in Redis, so four workers and a
    sync share one budget) and sleeps until it. Without Redis it paces this process alone and says so once.
    """

    # GCRA with a burst of one: the key holds the next free slot in microseconds of Redis's clock.
    _TAKE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slot = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local interval = tonumber(ARGV[1])
local expiry_ms = math.floor((slot + interval - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%d', slot + interval), 'PX', expiry_ms)
if slot > now then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', tonumber(ARGV[3]))
end
return slot - now
"""

    def __init__(self, per_second: float, redis_url: str, partner_id: int):
        self.per_second = per_second
        self.partner_id = partner_id
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._take_slot = self._redis.register_script(self._TAKE_SLOT)
        self._local_next = 0.0
        self._local_lock = threading.Lock()
        self._warned = False

    def key(self, what: str) -> str:
        return PACING_KEY.format(partner=self.partner_id, what=what)

    def wait(self) -> float:
        """Sleep until this request's slot; returns the seconds slept."""
        interval = 1.0 / self.per_second
        try:
            shown = json.dumps({"per_second": self.per_second, "at": time.time()})
            delay = (
                int(
                    self._take_slot(
                        [self.key("slot"), self.key("capped")], [int(interval * 1e6), shown, PACING_SHOWN_SECONDS]
                    )
                )
                / 1e6
            )
        except redis.RedisError as exc:
            if not self._warned:
                log.warning("Kaltura pacing: Redis unavailable (%s); pacing this process alone", type(exc).__name__)
                self._warned = True
            with self._local_lock:
                now = time.monotonic()
                slot = max(self._local_next, now)
                self._local_next = slot + interval
            delay = slot - now
        if delay > 0:
            time.sleep(delay)
        return max(delay, 0.0)

    def note_blocked(self, what: str) -> None:
        try:
            shown = json.dumps({"call": what, "at": time.time()})
            self._redis.set(self.key("blocked"), shown, ex=PACING_SHOWN_SECONDS)
        except redis.RedisError:
            pass


def _note_blocked_without_cap(partner_id: int, what: str) -> None:
    """Record a blocked answer for the pages when no cap (and so no Pacer) is configured."""
    try:
        conn = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        conn.set(
            PACING_KEY.format(partner=partner_id, what="blocked"),
            json.dumps({"call": what, "at": time.time()}),
            ex=PACING_SHOWN_SECONDS,
        )
        conn.close()
    except redis.RedisError:
        pass


def pacing_status() -> dict | None:
    """What the pages show: whether calls to the configured partner were paced or blocked in the last minutes."""
    if not settings.KALTURA_PARTNERID:
        return None
    conn = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        capped, blocked = conn.mget(
            [PACING_KEY.format(partner=settings.KALTURA_PARTNERID, what=what) for what in ("capped", "blocked")]
        )
    except redis.RedisError:
        return None
    finally:
        conn.close()
    if not capped and not blocked:
        return None

    def shown(raw: bytes | str | None) -> dict | None:
        if not raw:
            return None
        value = json.loads(raw)
        return {**value, "at": datetime.fromtimestamp(value["at"], tz=UTC)}

    return {"capped": shown(capped), "blocked": shown(blocked)}


def _only(fields: str) -> KalturaDetachedResponseProfile:
    return KalturaDetachedResponseProfile(type=KalturaResponseProfileType.INCLUDE_FIELDS, fields=fields)


class KalturaError(Exception):
    """A Kaltura call failed. `code` is Kaltura's error code, or a client code such as -4."""

    def __init__(self, message: str, code: str | int | None = None, *, transient: bool = False):
        super().__init__(message)
        self.code = code
        self.transient = transient

    @property
    def blocked(self) -> bool:
        """Kaltura refused the call because the partner calls too fast (nothing ran)."""
        return self.code == BLOCKED_CODE

    def __str__(self) -> str:
        message = super().__str__()
        return f"{message} ({self.code})" if self.code is not None else message


def _epoch(value: datetime) -> int:
    return int(value.timestamp())


def _int(value, default: int = 0) -> int:
    if value in (None, NotImplemented, ""):
        return default
    if hasattr(value, "getValue"):
        value = value.getValue()
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _str(value) -> str:
    if value in (None, NotImplemented):
        return ""
    if hasattr(value, "getValue"):
        value = value.getValue()
    return str(value)


# Entries and flavors are read from the text of the XML fields ("wire text"), as the hot list calls
# receive them; a client object is first turned into the same text (_client_text), so both roads
# go through one conversion and cannot disagree.


def _int_text(text: str | None, default: int | None = 0) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


def _time_text(text: str | None) -> datetime | None:
    stamp = _int_text(text)
    return datetime.fromtimestamp(stamp, tz=UTC) if stamp else None


def _client_text(value) -> str:
    """A client object's field as it was written in the XML: enums by value, booleans 1/0, null as ''."""
    if value is None or value is NotImplemented:
        return ""
    if hasattr(value, "getValue"):
        value = value.getValue()
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _client_fields(obj, names: tuple[str, ...]) -> dict[str, str]:
    return {name: _client_text(getattr(obj, name, None)) for name in names}


def _queue_list(client: KalturaClient, service: str, list_filter, pager: KalturaFilterPager) -> None:
    """Queue `<service>.list(filter, pager)` exactly as the client's generated service method does."""
    params = KalturaParams()
    params.addObjectIfDefined("filter", list_filter)
    params.addObjectIfDefined("pager", pager)
    client.queueServiceActionCall(service, "list", None, params)


@dataclass(frozen=True)
class _ListAnswer:
    """A list response: each object's fields as their XML text (an empty field is None), and totalCount."""

    objects: list[dict[str, str | None]]
    total_count: int

    @classmethod
    def from_node(cls, node) -> _ListAnswer:
        objects = node.find("objects")
        items = [] if objects is None else [{field.tag: field.text for field in item} for item in objects]
        return cls(items, _int_text(node.findtext("totalCount")))


@dataclass(frozen=True)
class KEntry:
    id: str
    name: str
    description: str
    owner_id: str
    creator_id: str
    tags: str
    categories_ids: tuple[int, ...]
    created_at: datetime
    updated_at: datetime
    last_played_at: datetime | None
    plays: int
    views: int
    status: int
    media_type: int | None
    duration: int
    source_type: str
    parent_entry_id: str
    capabilities: str
    replacing_entry_id: str
    replacement_status: int
    thumbnail_url: str

    @classmethod
    def from_client(cls, entry) -> KEntry:
        return cls.from_fields(_client_fields(entry, ENTRY_FIELD_NAMES))

    @classmethod
    def from_fields(cls, fields: dict[str, str | None]) -> KEntry:
        """From the text of the entry's XML fields (a missing or empty field reads as Kaltura's null)."""
        get = fields.get
        created_at = _time_text(get("createdAt"))
        return cls(
            id=fields["id"],
            name=get("name") or "",
            description=get("description") or "",
            owner_id=get("userId") or "",
            creator_id=get("creatorId") or "",
            tags=get("tags") or "",
            categories_ids=tuple(int(c) for c in (get("categoriesIds") or "").split(",") if c.strip().isdigit()),
            created_at=created_at,
            updated_at=_time_text(get("updatedAt")) or created_at,
            last_played_at=_time_text(get("lastPlayedAt")),
            plays=_int_text(get("plays")),
            views=_int_text(get("views")),
            status=_int_text(get("status")),
            media_type=_int_text(get("mediaType"), None),
            duration=_int_text(get("duration")),
            source_type=get("sourceType") or "",
            parent_entry_id=get("parentEntryId") or "",
            capabilities=get("capabilities") or "",
            replacing_entry_id=get("replacingEntryId") or "",
            replacement_status=_int_text(get("replacementStatus")),
            thumbnail_url=get("thumbnailUrl") or "",
        )


@dataclass(frozen=True)
class KFlavor:
    id: str
    entry_id: str
    flavor_params_id: int
    is_original: bool
    status: int
    size_kb: int
    size_in_bytes: int  # exact, but 0 on old flavors
    tags: str
    file_ext: str
    width: int
    height: int
    bitrate: int
    created_at: datetime | None
    updated_at: datetime | None
    # The identity of the flavor's content: it moves on whenever the content is replaced (DOMAIN.md §7).
    version: str = ""

    @property
    def size_bytes(self) -> int:
        """The exact size when Kaltura knows it, else its approximate KB figure."""
        return self.size_in_bytes or self.size_kb * 1024

    @property
    def size_exact(self) -> bool:
        return bool(self.size_in_bytes)

    @classmethod
    def from_client(cls, flavor) -> KFlavor:
        return cls.from_fields(_client_fields(flavor, FLAVOR_FIELD_NAMES))

    @classmethod
    def from_fields(cls, fields: dict[str, str | None]) -> KFlavor:
        """From the text of the flavor's XML fields (a missing or empty field reads as Kaltura's null)."""
        get = fields.get
        return cls(
            id=fields["id"],
            entry_id=fields["entryId"],
            flavor_params_id=_int_text(get("flavorParamsId")),
            is_original=get("isOriginal") in ("1", "true"),
            status=_int_text(get("status")),
            size_kb=_int_text(get("size")),
            size_in_bytes=_int_text(get("sizeInBytes")),
            tags=get("tags") or "",
            file_ext=get("fileExt") or "",
            width=_int_text(get("width")),
            height=_int_text(get("height")),
            bitrate=_int_text(get("bitrate")),
            created_at=_time_text(get("createdAt")),
            updated_at=_time_text(get("updatedAt")),
            version=get("version") or "",
        )


@dataclass(frozen=True)
class KCategory:
    id: int
    parent_id: int | None
    name: str
    full_name: str
    full_ids: str
    depth: int
    entries_count: int

    @classmethod
    def from_client(cls, category) -> KCategory:
        parent = _int(category.parentId)
        return cls(
            id=_int(category.id),
            parent_id=parent or None,
            name=_str(category.name),
            full_name=_str(category.fullName),
            full_ids=_str(category.fullIds),
            depth=_int(category.depth),
            entries_count=_int(category.entriesCount),
        )


@dataclass(frozen=True)
class KCaption:
    """A caption asset (the caption plugin's captionAsset). `format`: KalturaCaptionType (1 SRT, 2 DFXP,
    3 WebVTT, ...); `status`: 2 READY (content set), 0 QUEUED (added, no content yet)."""

    id: str
    entry_id: str
    language: str
    label: str
    format: str
    is_default: bool
    status: int
    size_in_bytes: int
    file_ext: str
    version: str

    READY = 2

    @classmethod
    def from_client(cls, caption) -> KCaption:
        return cls(
            id=_str(caption.id),
            entry_id=_str(caption.entryId),
            language=_str(caption.language),
            label=_str(caption.label),
            format=_str(caption.format),
            is_default=_int(caption.isDefault) == 1,
            status=_int(caption.status),
            size_in_bytes=_int(caption.sizeInBytes),
            file_ext=_str(caption.fileExt),
            version=_str(caption.version),
        )


# What the metadata plugin's services answer for a partner without the plugin (MetadataService::initService;
# older servers said SERVICE_FORBIDDEN): custom metadata is then "not available", not an error.
PLUGIN_OFF_CODES = {"FEATURE_FORBIDDEN", "SERVICE_FORBIDDEN"}


@dataclass(frozen=True)
class KMetadataProfile:
    """A custom metadata schema (the metadata plugin's metadataProfile): its XSD says what the values mean."""

    id: int
    name: str
    system_name: str
    version: int
    xsd: str


@dataclass(frozen=True)
class KMetadata:
    """One entry's values of one custom metadata profile, as XML."""

    id: int
    profile_id: int
    profile_version: int
    version: int
    created_at: datetime | None
    updated_at: datetime | None
    xml: str


@dataclass(frozen=True)
class KEntryDescription:
    """What a sidecar keeps beyond the entry's mirrored fields: who may edit, publish and view it besides its
    owner (entitledUsersEdit / entitledUsersPublish / entitledUsersView), and its custom metadata.

    `metadata` is None when Kaltura would not give it (`metadata_missing` says why): a partner without the
    plugin has no custom metadata to keep, which is not the same as an entry without any."""

    owner_id: str
    co_editors: tuple[str, ...]
    co_publishers: tuple[str, ...]
    co_viewers: tuple[str, ...]
    metadata: tuple[KMetadata, ...] | None
    metadata_profiles: dict[int, KMetadataProfile]
    metadata_missing: str
    captions: tuple[KCaption, ...] = ()  # its caption assets (all of them: an entry has a handful)


def _user_ids(value) -> tuple[str, ...]:
    return tuple(user_id.strip() for user_id in _str(value).split(",") if user_id.strip())


def _time_value(value) -> datetime | None:
    stamp = _int(value)
    return datetime.fromtimestamp(stamp, tz=UTC) if stamp else None


def _metadata_profile(profile) -> KMetadataProfile:
    return KMetadataProfile(
        id=_int(profile.id),
        name=_str(profile.name),
        system_name=_str(profile.systemName),
        version=_int(profile.version),
        xsd=_str(profile.xsd),
    )


@dataclass(frozen=True)
class EntryPage:
    entries: list[KEntry]
    total_count: int


class SharedSession:
    """The Kaltura session the app's processes share through Redis (KALTURA_SHARE_SESSION).

    Without it every RQ job (a forked process) starts a session of its own: one request more per job, and a
    wait that checks Kaltura every few seconds would double its cost. The KS is kept under a key named by a
    hash of the service URL, partner, user and secret (a new secret makes a new key) for 90% of its lifetime;
    a session Kaltura refuses is forgotten and a new one started. Redis holds the job queue already: whoever
    reads it can run jobs with the app's credentials anyway.
    """

    def __init__(self, redis_url: str, kaltura: Kaltura) -> None:
        import hashlib

        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5)
        who = f"{kaltura.service_url}|{kaltura.partner_id}|{kaltura.user_id}|{kaltura._secret}"
        self.key = f"kaltura-archive:session:{hashlib.sha256(who.encode()).hexdigest()[:32]}"

    def get(self) -> tuple[str, float] | None:
        """(ks, seconds it may still be used), or None."""
        try:
            with self._redis.pipeline() as pipe:
                pipe.get(self.key)
                pipe.pttl(self.key)
                ks, left_ms = pipe.execute()
        except redis.RedisError:
            return None  # a session of its own, then
        if not ks or left_ms is None or left_ms < 1000:
            return None
        return ks.decode(), left_ms / 1000

    def put(self, ks: str, seconds: float) -> None:
        with contextlib.suppress(redis.RedisError):
            self._redis.set(self.key, ks, px=int(seconds * 1000))

    def forget(self, ks: str | None) -> None:
        """Drop the shared session if it is still the one Kaltura refused (another process may have renewed it)."""
        with contextlib.suppress(redis.RedisError):
            if ks and self._redis.get(self.key) == ks.encode():
                self._redis.delete(self.key)


class Kaltura:
    """One Kaltura session for one thread of work (a job, a command)."""

    def __init__(
        self,
        *,
        service_url: str,
        partner_id: int,
        secret: str,
        user_id: str = "",
        session_expiry: int = 86400,
        timeout: int = 120,
        retry_delays: Iterable[float] = (1, 2, 5, 10, 20),
        blocked_delays: Iterable[float] = BLOCKED_RETRY_DELAYS,
        max_requests_per_second: float = 0.0,
        redis_url: str | None = None,
        share_session: bool = False,
    ):
        self.service_url = service_url
        self.partner_id = int(partner_id)
        self._secret = secret
        self.user_id = user_id
        self.session_expiry = session_expiry
        self.retry_delays = tuple(retry_delays)
        self.blocked_delays = tuple(blocked_delays)
        self._pacer = (
            Pacer(max_requests_per_second, redis_url or settings.REDIS_URL, self.partner_id)
            if max_requests_per_second > 0
            else None
        )
        config = KalturaConfiguration(self.partner_id)
        config.serviceUrl = service_url
        config.requestTimeout = timeout
        self._client = KalturaClient(config)
        self._session_renew_at = 0.0
        # Every job of a forking worker is a new process: without a shared session each would start its own.
        self._shared_session = SharedSession(redis_url or settings.REDIS_URL, self) if share_session else None
        self._lock = threading.Lock()
        self.requests_made = 0
        # Seconds spent waiting for the requests-per-second cap or after ACTION_BLOCKED, and blocked answers.
        self.paced_seconds = 0.0
        self.blocked_count = 0

    def __repr__(self) -> str:
        # Never show the secret or the session.
        return f"Kaltura({self.service_url!r}, partner_id={self.partner_id})"

    @classmethod
    def from_settings(cls, **overrides) -> Kaltura:
        require_kaltura()
        options: dict[str, Any] = {
            "service_url": settings.KALTURA_SERVICE_URL,
            "partner_id": settings.KALTURA_PARTNERID,
            "secret": settings.KALTURA_SECRET,
            "user_id": settings.KALTURA_USERID,
            "session_expiry": settings.KALTURA_SESSION_EXPIRY,
            "timeout": settings.KALTURA_TIMEOUT,
        }
        # Not settings of the deployment: the tests shorten the pauses between retries.
        if hasattr(settings, "KALTURA_RETRY_DELAYS"):
            options["retry_delays"] = getattr(settings, "KALTURA_RETRY_DELAYS")  # noqa: B009
        if hasattr(settings, "KALTURA_BLOCKED_RETRY_DELAYS"):
            options["blocked_delays"] = getattr(settings, "KALTURA_BLOCKED_RETRY_DELAYS")  # noqa: B009
        if settings.KALTURA_MAX_REQUESTS_PER_SECOND > 0:
            options["max_requests_per_second"] = settings.KALTURA_MAX_REQUESTS_PER_SECOND
        options["redis_url"] = settings.REDIS_URL
        options["share_session"] = settings.KALTURA_SHARE_SESSION
        options.update(overrides)
        return cls(**options)

    # --- session and retries ----------------------------------------------------

    def _pace(self) -> None:
        """Every HTTP request to Kaltura goes through here first: the shared requests-per-second cap."""
        if self._pacer is not None:
            self.paced_seconds += self._pacer.wait()
        self.requests_made += 1

    def _start_session(self) -> None:
        if self._shared_session is not None:
            shared = self._shared_session.get()
            if shared is not None:
                ks, seconds_left = shared
                self._client.setKs(ks)
                self._session_renew_at = time.monotonic() + seconds_left
                return
        self._pace()
        try:
            ks = self._client.session.start(
                self._secret,
                self.user_id,
                KalturaSessionType.ADMIN,
                self.partner_id,
                self.session_expiry,
                "disableentitlement",
            )
        except KalturaException as exc:
            raise KalturaError(f"cannot start a Kaltura session: {redact_session(exc.message)}", exc.code) from None
        except KalturaClientException as exc:
            raise KalturaError(
                f"cannot reach Kaltura at {self.service_url}: {redact_session(exc.message)}", exc.code, transient=True
            ) from None
        self._client.setKs(ks)
        # Renew well before Kaltura would refuse it; INVALID_KS is handled too.
        lifetime = max(60, self.session_expiry * 0.9)
        self._session_renew_at = time.monotonic() + lifetime
        if self._shared_session is not None:
            self._shared_session.put(ks, lifetime)

    def _call(self, request, *, what: str, fields: str | None = None):
        """Run `request(client)` with a valid session, retrying transient failures.

        `fields`: ask Kaltura for only these fields of the result objects (a response profile).
        """
        delays = iter(self.retry_delays)
        blocked_delays = iter(self.blocked_delays)
        renewed = False
        while True:
            try:
                with self._lock:
                    if time.monotonic() >= self._session_renew_at:
                        self._start_session()
                    self._pace()
                    if fields:
                        self._client.setResponseProfile(_only(fields))
                    try:
                        return request(self._client)
                    finally:
                        # The client would send the profile with every later call (session.start too).
                        self._client.requestConfiguration.pop("responseProfile", None)
            except KalturaException as exc:
                if exc.code in SESSION_CODES and not renewed:
                    renewed = True
                    self._session_renew_at = 0.0
                    if self._shared_session is not None:
                        self._shared_session.forget(self._client.getKs())
                    continue
                transient = exc.code in TRANSIENT_KALTURA_CODES
                error = KalturaError(f"{what}: {redact_session(exc.message)}", exc.code, transient=transient)
            except KalturaClientException as exc:
                transient = exc.code in TRANSIENT_CLIENT_CODES
                error = KalturaError(f"{what}: {redact_session(exc.message)}", exc.code, transient=transient)
            except KalturaError as exc:
                error = exc
            except (AttributeError, ValueError) as exc:
                # A plain-text body such as "Bad Gateway" makes the client fail while parsing.
                error = KalturaError(
                    f"{what}: unreadable answer from Kaltura ({redact_session(exc)})", "BAD_RESPONSE", transient=True
                )
            if error.blocked:
                # Calling too fast: wait longer each time, with jitter so workers do not return together.
                self.blocked_count += 1
                if self._pacer is not None:
                    self._pacer.note_blocked(what)
                else:
                    _note_blocked_without_cap(self.partner_id, what)
                delay = next(blocked_delays, None)
                delay = None if delay is None else delay * random.uniform(0.75, 1.25)
                if delay is not None:
                    self.paced_seconds += delay
            else:
                delay = next(delays, None) if error.transient else None
            if delay is None:
                raise error
            log.warning("%s failed (%s); retrying in %.1fs", what, error.code, delay)
            time.sleep(delay)

    def _list(
        self, calls: list[tuple[str, object, KalturaFilterPager]], *, what: str, fields: str
    ) -> list[_ListAnswer]:
        """Send these (service, filter, pager) list calls in one HTTP request, a multirequest if more than one.

        `service` is spelled as on the wire (lower case), as the generated service methods spell it.

        The official client builds, signs and sends the request and parses the XML answer, as for any call;
        only its object factory is left out, for the lists of hundreds of entries and flavors: it builds a
        client object from every field of every object (the XML walked once per class level), which was
        half of a full sync's CPU. `_ListAnswer` keeps the fields' text instead, and KEntry/KFlavor.from_fields
        convert it, as from_client does for the other calls.
        """

        def send(client: KalturaClient) -> list:
            multi = len(calls) > 1
            if multi:
                client.startMultiRequest()
            try:
                for service, list_filter, pager in calls:
                    _queue_list(client, service, list_filter, pager)
                result = client.doQueue()  # raises a failure of the whole request
            finally:
                # Left set after a transport error, it would turn the next single call into a multirequest.
                client.multiRequestReturnType = None
            nodes = list(result) if multi else [result]
            for node in nodes:
                failed = client.getExceptionIfError(node)
                if failed is not None:
                    raise failed  # one failed call: retried (or the session renewed) like a failed request
            return nodes

        return [_ListAnswer.from_node(node) for node in self._call(send, what=what, fields=fields)]

    # --- entries ----------------------------------------------------------------

    def list_entries(
        self,
        *,
        page_index: int = 1,
        page_size: int = PAGE_SIZE,
        order_by: str = "+createdAt",
        all_statuses: bool = True,
        **filter_fields,
    ) -> EntryPage:
        """One page of media entries. Filter fields are KalturaMediaEntryFilter's (e.g. createdAtGreaterThanOrEqual)."""
        entry_filter = KalturaMediaEntryFilter()
        entry_filter.orderBy = order_by
        if all_statuses and "statusIn" not in filter_fields and "statusEqual" not in filter_fields:
            entry_filter.statusIn = ALL_ENTRY_STATUSES
        for name, value in filter_fields.items():
            if isinstance(value, datetime):
                value = _epoch(value)
            elif isinstance(value, list | tuple | set):
                value = ",".join(str(v) for v in value)
            setattr(entry_filter, name, value)
        pager = KalturaFilterPager(pageSize=page_size, pageIndex=page_index)
        [answer] = self._list([("media", entry_filter, pager)], what="media.list", fields=ENTRY_RESPONSE_FIELDS)
        return EntryPage([KEntry.from_fields(e) for e in answer.objects], answer.total_count)

    def get_entry(self, entry_id: str) -> KEntry:
        return KEntry.from_client(self._call(lambda c: c.media.get(entry_id), what=f"media.get {entry_id}"))

    def entry_and_flavors(self, entry_id: str) -> tuple[KEntry, list[KFlavor]]:
        """The entry and its flavors as they are now, in ONE HTTP request (a multirequest of media.get and
        flavorAsset.list): what a job reads before each step, and what each check of a wait costs."""

        def send(client: KalturaClient) -> list:
            client.startMultiRequest()
            try:
                _queue_entry_and_flavors(client, entry_id)
                results = client.doMultiRequest()
            finally:
                client.multiRequestReturnType = None
            for result in results:
                if isinstance(result, KalturaException):
                    raise result  # ENTRY_ID_NOT_FOUND among them, as media.get alone raises it
            return results

        entry, flavors = self._call(send, what=f"media.get and flavorAsset.list {entry_id}")
        return KEntry.from_client(entry), [KFlavor.from_client(flavor) for flavor in flavors.objects or []]

    def set_tags_and_thumbnail(self, entry_id: str, tags: Iterable[str], time_offset: int = 1) -> tuple[KEntry, str]:
        """media.update (tags) and media.updateThumbnail in one HTTP request; the entry, and '' or why the
        thumbnail was not cut (Kaltura may not be ready to cut one right after a replacement)."""
        entry, thumbnail = self._tags_and(
            entry_id,
            tags,
            lambda client: client.media.updateThumbnail(entry_id, time_offset),
            required=0,
            what=f"media.update and media.updateThumbnail {entry_id}",
        )
        failed = (
            redact_session(f"{thumbnail.code}: {thumbnail.message}") if isinstance(thumbnail, KalturaException) else ""
        )
        return KEntry.from_client(entry), failed

    def _tags_and(self, entry_id: str, tags: Iterable[str], also, *, required: int, what: str) -> list:
        """media.update of the entry's tags, then `also(client)`, in ONE HTTP request (a multirequest): both
        answers, a KalturaException in place of one that failed. The failure of answer `required` (0 or 1) is
        the request's: retried, or the session renewed, like any failed request."""
        update = KalturaMediaEntry()
        update.tags = ", ".join(tags)

        def send(client: KalturaClient) -> list:
            client.startMultiRequest()
            try:
                client.media.update(entry_id, update)
                also(client)
                results = client.doMultiRequest()
            finally:
                client.multiRequestReturnType = None
            if isinstance(results[required], KalturaException):
                raise results[required]
            return results

        return self._call(send, what=what)

    def set_tags(self, entry_id: str, tags: Iterable[str]) -> KEntry:
        update = KalturaMediaEntry()
        update.tags = ", ".join(tags)
        entry = self._call(lambda c: c.media.update(entry_id, update), what=f"media.update {entry_id}")
        return KEntry.from_client(entry)

    # --- flavors ----------------------------------------------------------------

    def flavors_for_entries(self, entry_ids: Iterable[str]) -> dict[str, list[KFlavor]]:
        """Every non-deleted flavor of these entries, in one HTTP request per 500 entries or so."""
        entry_ids = list(dict.fromkeys(entry_ids))
        result: dict[str, list[KFlavor]] = {entry_id: [] for entry_id in entry_ids}
        chunks = [entry_ids[i : i + FLAVOR_LIST_CHUNK] for i in range(0, len(entry_ids), FLAVOR_LIST_CHUNK)]
        for group_start in range(0, len(chunks), 20):
            group = chunks[group_start : group_start + 20]

            calls = [
                (
                    "flavorasset",
                    KalturaFlavorAssetFilter(entryIdIn=",".join(chunk)),
                    KalturaFilterPager(pageSize=PAGE_SIZE, pageIndex=1),
                )
                for chunk in group
            ]
            answers = self._list(calls, what="flavorAsset.list (multirequest)", fields=FLAVOR_RESPONSE_FIELDS)
            for (_, chunk_filter, _), answer in zip(calls, answers, strict=True):
                flavors = answer.objects
                # A chunk with unusually many flavors spills onto further pages.
                page = 1
                while len(flavors) < answer.total_count and page * PAGE_SIZE < MAX_MATCHES:
                    page += 1
                    pager = KalturaFilterPager(pageSize=PAGE_SIZE, pageIndex=page)
                    [more] = self._list(
                        [("flavorasset", chunk_filter, pager)], what="flavorAsset.list", fields=FLAVOR_RESPONSE_FIELDS
                    )
                    if not more.objects:
                        break
                    flavors = flavors + more.objects
                for fields in flavors:
                    parsed = KFlavor.from_fields(fields)
                    result.setdefault(parsed.entry_id, []).append(parsed)
        return result

    def entries_by_ids(self, entry_ids: Iterable[str]) -> dict[str, KEntry]:
        """These entries (any status; absent ones are left out), 150 ids a list call, 20 calls an HTTP request."""
        entry_ids = list(dict.fromkeys(entry_ids))
        chunks = [entry_ids[i : i + MAX_ID_LIST] for i in range(0, len(entry_ids), MAX_ID_LIST)]
        result: dict[str, KEntry] = {}
        for group_start in range(0, len(chunks), 20):
            group = chunks[group_start : group_start + 20]

            calls = [
                (
                    "media",
                    KalturaMediaEntryFilter(idIn=",".join(chunk), statusIn=ALL_ENTRY_STATUSES),
                    KalturaFilterPager(pageSize=MAX_ID_LIST, pageIndex=1),
                )
                for chunk in group
            ]
            for answer in self._list(calls, what="media.list (multirequest)", fields=ENTRY_RESPONSE_FIELDS):
                result.update((e.id, e) for e in map(KEntry.from_fields, answer.objects))
        return result

    def flavors(self, entry_id: str) -> list[KFlavor]:
        return self.flavors_for_entries([entry_id])[entry_id]

    def flavor_download_url(self, flavor_id: str) -> str:
        return self._call(lambda c: c.flavorAsset.getUrl(flavor_id), what=f"flavorAsset.getUrl {flavor_id}")

    # --- captions ---------------------------------------------------------------

    def captions(self, entry_id: str) -> list[KCaption]:
        """The entry's caption assets (all of them: an entry has a handful, never a page's worth)."""
        pager = KalturaFilterPager(pageSize=PAGE_SIZE, pageIndex=1)
        response = self._call(
            lambda c: c.caption.captionAsset.list(KalturaCaptionAssetFilter(entryIdEqual=entry_id), pager),
            what=f"captionAsset.list {entry_id}",
        )
        return [KCaption.from_client(caption) for caption in response.objects or []]

    def caption_download_url(self, caption_id: str) -> str:
        return self._call(lambda c: c.caption.captionAsset.getUrl(caption_id), what=f"captionAsset.getUrl {caption_id}")

    def add_caption(self, entry_id: str, *, language: str, label: str, caption_format: str, is_default: bool) -> str:
        """A new caption asset without content (captionAsset.add); returns its id."""
        asset = KalturaCaptionAsset(
            language=language, label=label, format=caption_format, isDefault=1 if is_default else 0
        )
        added = self._call(lambda c: c.caption.captionAsset.add(entry_id, asset), what=f"captionAsset.add {entry_id}")
        return _str(added.id)

    def set_caption_content(self, caption_id: str, upload_token_id: str) -> KCaption:
        """The caption's content from an upload (binary-safe, unlike a string resource)."""
        resource = KalturaUploadedFileTokenResource(token=upload_token_id)
        caption = self._call(
            lambda c: c.caption.captionAsset.setContent(caption_id, resource),
            what=f"captionAsset.setContent {caption_id}",
        )
        return KCaption.from_client(caption)

    # --- categories -------------------------------------------------------------

    def categories(self) -> Iterator[KCategory]:
        """Every category (up to Kaltura's 10,000-match cap; more is logged, not hidden)."""
        page_index = 1
        while (page_index - 1) * PAGE_SIZE < MAX_MATCHES:
            pager = KalturaFilterPager(pageSize=PAGE_SIZE, pageIndex=page_index)
            response = self._call(
                lambda c, p=pager: c.category.list(KalturaCategoryFilter(orderBy="+id"), p), what="category.list"
            )
            page = [KCategory.from_client(c) for c in response.objects or []]
            yield from page
            if len(page) < PAGE_SIZE:
                return
            page_index += 1
        log.warning("more than %s categories: only the first %s are mirrored", MAX_MATCHES, MAX_MATCHES)

    # --- uploads and content ----------------------------------------------------

    def upload(self, stream: BinaryIO, *, file_name: str, size: int, chunk_bytes: int = 8 * 1024 * 1024) -> str:
        """Upload a stream in chunks (the client gives a file upload only 10 s); returns the upload token id.
        What fits in one chunk (a placeholder, captions) goes with the token's creation in one multirequest."""
        if size <= chunk_bytes:
            return self._upload_whole(stream.read(chunk_bytes), file_name=file_name, size=size)
        token_id = self.add_upload_token(file_name=file_name, size=size)
        offset = 0
        while True:
            chunk = stream.read(chunk_bytes)
            final = offset + len(chunk) >= size or not chunk
            self.upload_chunk(token_id, chunk, file_name=file_name, offset=offset, final=final)
            offset += len(chunk)
            if final:
                return token_id

    def _upload_whole(self, data: bytes, *, file_name: str, size: int) -> str:
        """uploadToken.add and uploadToken.upload of all of `data` in ONE HTTP request; the token id. Retried
        whole: a token a lost answer left behind is never used and Kaltura times it out."""

        def send(client: KalturaClient) -> list:
            client.startMultiRequest()
            try:
                client.uploadToken.add(KalturaUploadToken(fileName=file_name, fileSize=size))
                client.uploadToken.upload("{1:result:id}", _NamedBytes(data, file_name), False, True, 0)
                results = client.doMultiRequest()
            finally:
                client.multiRequestReturnType = None
            for result in results:
                if isinstance(result, KalturaException):
                    raise result
            return results

        token, _ = self._call(send, what="uploadToken.add and uploadToken.upload")
        return token.id

    def add_upload_token(self, *, file_name: str, size: int) -> str:
        token = self._call(
            lambda c: c.uploadToken.add(KalturaUploadToken(fileName=file_name, fileSize=size)),
            what="uploadToken.add",
        )
        return token.id

    def upload_chunk(self, token_id: str, chunk: bytes, *, file_name: str, offset: int, final: bool) -> None:
        """Send `chunk` at `offset` (uploadToken.upload with resume/resumeAt/finalChunk).

        Sending the same chunk again at the same offset is harmless (the server writes it at its offset),
        so a retry after a lost answer is safe. The first chunk (offset 0) starts the file afresh.
        """
        self._call(
            lambda c: c.uploadToken.upload(token_id, _NamedBytes(chunk, file_name), offset > 0, final, offset),
            what=f"uploadToken.upload at {offset}",
        )

    def upload_token_state(self, token_id: str) -> tuple[int, int] | None:
        """(status, bytes received) of an upload token, or None if Kaltura no longer knows it.

        Status: 0 PENDING, 1 PARTIAL_UPLOAD, 2 FULL_UPLOAD, 3 CLOSED (used), 4 TIMED_OUT, 5 DELETED.
        """
        try:
            token = self._call(lambda c: c.uploadToken.get(token_id), what=f"uploadToken.get {token_id}")
        except KalturaError as exc:
            if exc.code == "UPLOAD_TOKEN_NOT_FOUND":
                return None
            raise
        return _int(token.status), _int(token.uploadedFileSize)

    def replace_content(self, entry_id: str, upload_token_id: str, *, tags: Iterable[str] | None = None):
        """Start a replacement: the entry stays READY and playable until the new flavors are made.

        `tags`: set the entry's tags first, in the same HTTP request (media.update, then media.updateContent).
        Returns the entry as media.updateContent answered, and the tag write's entry (None: none asked), or
        the KalturaError that refused it: the replacement is sent whatever became of the tags."""
        resource = KalturaUploadedFileTokenResource(token=upload_token_id)
        if tags is None:
            entry = self._call(
                lambda c: c.media.updateContent(entry_id, resource), what=f"media.updateContent {entry_id}"
            )
            return KEntry.from_client(entry), None
        tagged, entry = self._tags_and(
            entry_id,
            tags,
            lambda client: client.media.updateContent(entry_id, resource),
            required=1,  # the replacement itself
            what=f"media.update and media.updateContent {entry_id}",
        )
        if isinstance(tagged, KalturaException):
            refused = KalturaError(f"media.update {entry_id}: {redact_session(tagged.message)}", tagged.code)
            return KEntry.from_client(entry), refused
        return KEntry.from_client(entry), KEntry.from_client(tagged)

    def set_thumbnail_image(self, entry_id: str, data: bytes, *, file_name: str) -> None:
        """Make this image the entry's default thumbnail (media.updateThumbnailJpeg, which takes any image)."""
        self._call(
            lambda c: c.media.updateThumbnailJpeg(entry_id, _NamedBytes(data, file_name)),
            what=f"media.updateThumbnailJpeg {entry_id}",
        )

    def update_thumbnail(self, entry_id: str, time_offset: int = 1) -> None:
        self._call(lambda c: c.media.updateThumbnail(entry_id, time_offset), what=f"media.updateThumbnail {entry_id}")

    def user_email(self, user_id: str) -> str:
        user = self._call(lambda c: c.user.get(user_id), what=f"user.get {user_id}")
        return _str(user.email)

    # --- co-editors and custom metadata (for the sidecar) ------------------------------------------

    def describe_entry(self, entry_id: str) -> KEntryDescription:
        """The entry's owner, co-editors, co-publishers and co-viewers, its custom metadata with the profiles
        that define it, and its caption assets, in one HTTP request (a multirequest of baseEntry.get,
        metadataProfile.list and metadata.list through the client's Metadata plugin, and captionAsset.list)."""

        def send(client: KalturaClient) -> list:
            client.startMultiRequest()
            try:
                client.baseEntry.get(entry_id)
                _queue_description(client, entry_id)
                results = client.doMultiRequest()
            finally:
                client.multiRequestReturnType = None
            _raise_description_failure(results)
            return results

        entry, *described = self._call(send, what=f"baseEntry.get, metadata.list and captionAsset.list {entry_id}")
        return self._description(entry, *described)

    def read_for_copy(self, entry_id: str, flavor_id: str) -> tuple[KEntry, list[KFlavor], KEntryDescription, str]:
        """What a copy of the original needs, in ONE HTTP request: the entry and its flavors (as
        entry_and_flavors), its description (as describe_entry) and the download URL of `flavor_id`, the
        original as the mirror knows it ("" when Kaltura will not give it: the original is another now, or not
        ready; the caller compares with the live flavors)."""

        def send(client: KalturaClient) -> list:
            client.startMultiRequest()
            try:
                _queue_entry_and_flavors(client, entry_id)
                _queue_description(client, entry_id)
                client.flavorAsset.getUrl(flavor_id)
                results = client.doMultiRequest()
            finally:
                client.multiRequestReturnType = None
            for result in results[:2]:
                if isinstance(result, KalturaException):
                    raise result  # ENTRY_ID_NOT_FOUND among them, as media.get alone raises it
            _raise_description_failure([results[0], *results[2:5]])
            return results

        entry, flavors, profiles, values, captions, url = self._call(
            send, what=f"media.get, flavorAsset.list, metadata.list, captionAsset.list, flavorAsset.getUrl {entry_id}"
        )
        return (
            KEntry.from_client(entry),
            [KFlavor.from_client(flavor) for flavor in flavors.objects or []],
            self._description(entry, profiles, values, captions),
            "" if isinstance(url, KalturaException) else _str(url),
        )

    def _description(self, entry, profiles, values, captions) -> KEntryDescription:
        """A KEntryDescription from the answers of _queue_description's calls (and the entry's)."""
        # Who may edit, publish and view it: the same whatever Kaltura says of custom metadata.
        people = KEntryDescription(
            owner_id=_str(entry.userId),
            co_editors=_user_ids(entry.entitledUsersEdit),
            co_publishers=_user_ids(entry.entitledUsersPublish),
            co_viewers=_user_ids(entry.entitledUsersView),
            metadata=None,
            metadata_profiles={},
            metadata_missing="",
            captions=tuple(KCaption.from_client(caption) for caption in captions.objects or []),
        )
        refused = next((a for a in (profiles, values) if isinstance(a, KalturaException)), None)
        if refused is not None:
            missing = f"Kaltura refused the custom metadata plugin's service: {refused.code} ({refused.message})"
            return dataclasses.replace(people, metadata_missing=missing)
        known = {p.id: p for p in map(_metadata_profile, profiles.objects or [])}
        metadata = tuple(
            KMetadata(
                id=_int(value.id),
                profile_id=_int(value.metadataProfileId),
                profile_version=_int(value.metadataProfileVersion),
                version=_int(value.version),
                created_at=_time_value(value.createdAt),
                updated_at=_time_value(value.updatedAt),
                xml=_str(value.xml),
            )
            for value in values.objects or []
        )
        used = {}
        for value in metadata:
            if value.profile_id not in known:  # beyond the first page of profiles: rare, asked for by id
                profile = self._call(
                    lambda c, i=value.profile_id: c.metadata.metadataProfile.get(i),
                    what=f"metadataProfile.get {value.profile_id}",
                )
                known[value.profile_id] = _metadata_profile(profile)
            used[value.profile_id] = known[value.profile_id]
        return dataclasses.replace(people, metadata=metadata, metadata_profiles=used)

    def open_download(self, url: str) -> requests.Response:
        """The flavor at `url` as a streaming response, from Kaltura's own hosts only (see open_download)."""
        return open_download(url, service_url=self.service_url)


def _queue_entry_and_flavors(client: KalturaClient, entry_id: str) -> None:
    """Queue, in a multirequest, media.get of the entry and flavorAsset.list of its flavors."""
    client.media.get(entry_id)
    client.flavorAsset.list(
        KalturaFlavorAssetFilter(entryIdIn=entry_id), KalturaFilterPager(pageSize=PAGE_SIZE, pageIndex=1)
    )


def _queue_description(client: KalturaClient, entry_id: str) -> None:
    """Queue, in a multirequest, the calls that describe an entry beyond itself: the custom metadata profiles,
    its custom metadata (the Metadata plugin) and its caption assets."""
    entry_type = KalturaMetadataObjectType.ENTRY
    client.metadata.metadataProfile.list(
        KalturaMetadataProfileFilter(metadataObjectTypeEqual=entry_type),
        KalturaFilterPager(pageSize=PAGE_SIZE, pageIndex=1),
    )
    client.metadata.metadata.list(
        KalturaMetadataFilter(objectIdEqual=entry_id, metadataObjectTypeEqual=entry_type),
        KalturaFilterPager(pageSize=PAGE_SIZE, pageIndex=1),
    )
    # The captions too: the sidecar keeps them, and asking here saves a request per entry.
    client.caption.captionAsset.list(
        KalturaCaptionAssetFilter(entryIdEqual=entry_id), KalturaFilterPager(pageSize=PAGE_SIZE, pageIndex=1)
    )


def _raise_description_failure(answers: list) -> None:
    """The entry's and captions' failures are the request's; the Metadata plugin's refusal is a fact to keep."""
    entry, profiles, values, captions = answers
    for answer in (entry, captions):
        if isinstance(answer, KalturaException):
            raise answer
    for answer in (profiles, values):
        if isinstance(answer, KalturaException) and answer.code not in PLUGIN_OFF_CODES:
            raise answer  # retried, or the session renewed, like a failed request


class _NamedBytes(io.BytesIO):
    """The client names the multipart part after the file object's `name`."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name = name


# --- downloads -----------------------------------------------------------------------------
# Flavor bytes come from a plain URL (flavorAsset.getUrl), not through the client: the one rule of
# where they may come from is here.

MAX_DOWNLOAD_REDIRECTS = 5
DOWNLOAD_TIMEOUT = (10, 300)  # connect, and between two reads of the body
KALTURA_HOSTS = "*.kaltura.com"


def _host_matches(host: str, pattern: str) -> bool:
    pattern = pattern.strip().lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def download_refusal(url: str, *, service_url: str) -> str:
    """Why `url` may not be fetched, or "" if it may: only Kaltura's service host, the CDN hosts
    of KALTURA_CDN_HOSTS and *.kaltura.com, over HTTPS (plain HTTP only if the service URL is
    plain HTTP itself, as the simulator's is)."""
    parts, service = urlsplit(url), urlsplit(service_url)
    host = (parts.hostname or "").lower().rstrip(".")
    schemes = {"https", "http"} if service.scheme == "http" else {"https"}
    if parts.scheme not in schemes:
        return f"{parts.scheme or 'no'} scheme for host {host or '(none)'}: only {' or '.join(sorted(schemes))}"
    allowed = [service.hostname or "", *settings.KALTURA_CDN_HOSTS, KALTURA_HOSTS]
    if not host or not any(_host_matches(host, pattern) for pattern in allowed if pattern):
        return f"host {host or '(none)'} is not Kaltura's (allowed: {', '.join(p for p in allowed if p)})"
    return ""


def open_download(url: str, *, service_url: str) -> requests.Response:
    """GET `url` as a stream, following redirects here, each checked by download_refusal first.

    Raises KalturaError (not transient: a retry would go to the same place) naming the refused
    host before a byte of the body is read; the caller closes the response (`with`).
    """
    for _ in range(MAX_DOWNLOAD_REDIRECTS + 1):
        refusal = download_refusal(url, service_url=service_url)
        if refusal:
            raise KalturaError(f"flavor download refused: {refusal}", "DOWNLOAD_REFUSED")
        response = requests.get(url, stream=True, timeout=DOWNLOAD_TIMEOUT, allow_redirects=False)
        if not response.is_redirect:
            return response
        response.close()
        url = urljoin(url, response.headers["Location"])
    raise KalturaError(f"flavor download: more than {MAX_DOWNLOAD_REDIRECTS} redirects", "DOWNLOAD_REFUSED")
