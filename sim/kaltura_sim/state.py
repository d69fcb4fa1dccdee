"""The simulated partner's state and every change to it, behind one lock.

Entries, flavors, categories and users come from the seeded generator; sessions, upload tokens, pending
conversions, injected faults and request counters are added as the simulator is used. Test helpers (play,
add_entry, inject_fault, ...) live here too, and the HTTP control endpoints call the same methods.
"""

from __future__ import annotations

import base64
import copy
import os
import random
import shutil
import tempfile
import threading
import time
from bisect import bisect_left, bisect_right
from collections import Counter
from operator import itemgetter
from typing import Any

from . import content
from .errors import KalturaError
from .generator import (
    ENTRY_DELETED,
    ENTRY_ERROR_CONVERTING,
    ENTRY_NO_CONTENT,
    ENTRY_PRECONVERT,
    ENTRY_READY,
    FLAVOR_DELETED,
    FLAVOR_QUEUED,
    FLAVOR_READY,
    MEDIA_AUDIO,
    Generator,
    duration_type,
    normalise_tags,
)

FAULT_KINDS = ("http500", "kaltura_error", "drop", "bad_gateway")
UPLOAD_PENDING, UPLOAD_PARTIAL, UPLOAD_FULL, UPLOAD_CLOSED = 0, 1, 2, 3
CATEGORY_ENTRY_ACTIVE, CATEGORY_ENTRY_DELETED = 2, 3
ADMIN_SESSION = 2
# KalturaCaptionType and KalturaCaptionAssetStatus
CAPTION_SRT, CAPTION_DFXP, CAPTION_WEBVTT = "1", "2", "3"
CAPTION_EXTENSIONS = {CAPTION_SRT: "srt", CAPTION_DFXP: "xml", CAPTION_WEBVTT: "vtt"}
CAPTION_QUEUED, CAPTION_READY, CAPTION_DELETED = 0, 2, 3
# About one generated entry in this many has captions (from its own seeded stream: the catalogue is unchanged).
CAPTIONED_ONE_IN = 5
# The metadata plugin: KalturaMetadataObjectType ENTRY, KalturaMetadataStatus, KalturaMetadataProfileStatus.
METADATA_OBJECT_ENTRY = "1"
METADATA_VALID, METADATA_INVALID, METADATA_DELETED = 1, 2, 3
METADATA_PROFILE_ACTIVE = 1
# About one generated entry in this many has custom metadata, one in this many co-editors (own seeded streams).
METADATA_ONE_IN = 8
CO_EDITED_ONE_IN = 10
COURSE_PROFILE_XSD = """<?xml version="1.0"?>
<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <xsd:element name="metadata">
    <xsd:complexType>
      <xsd:sequence>
        <xsd:element name="CourseCode" minOccurs="0" maxOccurs="1" type="xsd:string"/>
        <xsd:element name="Term" minOccurs="0" maxOccurs="1" type="xsd:string"/>
        <xsd:element name="Instructor" minOccurs="0" maxOccurs="unbounded" type="xsd:string"/>
      </xsd:sequence>
    </xsd:complexType>
  </xsd:element>
</xsd:schema>"""


_LANGUAGE_CODES = {"English": "en", "French": "fr", "German": "de", "Spanish": "es", "Hebrew": "he"}


def public(record: dict[str, Any]) -> dict[str, Any]:
    """The fields the API shows (private bookkeeping starts with "_"); public values are all immutable."""
    return {key: value for key, value in record.items() if key[0] != "_"}


class SimState:
    def __init__(
        self,
        *,
        entries: int = 2000,
        seed: int = 1,
        content_scale: float = 0.001,
        conversion_delay: float = 0.0,
        ks_expiry_cap: int = 86400,
        partner_id: int = 1234567,
        admin_secret: str = "sim-admin-secret",
        now: float | None = None,
        archive_tags: bool = True,
        stable_ties: bool = False,
        rate_limit: float | None = None,
        bursts: tuple[int, ...] = (),
        latency_ms: float = 0.0,
        download_bytes_per_second: float | None = None,
        metadata_plugin: bool = True,
    ) -> None:
        self.lock = threading.RLock()
        # False: a partner without the custom metadata plugin; its services answer FEATURE_FORBIDDEN.
        self.metadata_plugin = metadata_plugin
        # A remote service's round trip, added to every API call, download, thumbnail and caption (not /sim/).
        self.latency_ms = latency_ms
        # Every download connection's speed cap (None: as fast as the loopback goes); a download fault's own
        # bytes_per_second, when set, wins for the downloads it covers.
        self.download_bytes_per_second = download_bytes_per_second
        # Kaltura's search index has no order among equal sort keys: each list request may return ties in
        # another order. stable_ties keeps them in creation order, for tests that need determinism.
        self.stable_ties = stable_ties
        self._ties_rng = random.Random(f"{seed}:ties")
        # Requests per second above which API calls answer ACTION_BLOCKED (None: no limit); see RateLimit.
        self.rate_limit = RateLimit(rate_limit)
        self.seed = seed
        self.partner_id = partner_id
        self.admin_secret = admin_secret
        self.conversion_delay = conversion_delay
        self.ks_expiry_cap = ks_expiry_cap
        self.base_url = "http://127.0.0.1"
        self.generator = Generator(
            seed, partner_id, int(time.time() if now is None else now), content_scale, archive_tags
        )
        self._added_rng = random.Random(f"{seed}:added")
        self._seq = 0
        self._entries_version = 0  # moves on every entry insertion
        self._status_version = 0  # moves on every entry status change (set_status)
        self._entry_indexes: dict[str, tuple[int, list[dict], list[Any], list[int]]] = {}
        self._entry_statuses: dict[str, tuple[tuple[int, int], list[dict], list[int]]] = {}

        self.users: dict[str, dict] = {u["id"]: u for u in self.generator.make_users()}
        self.categories: dict[int, dict] = {c["id"]: {**c, "_seq": c["id"]} for c in self.generator.make_categories()}
        self.entries: dict[str, dict] = {}
        self.flavors: dict[str, dict] = {}
        self.category_entries: dict[tuple[int, str], dict] = {}
        self._categories_of: dict[str, list[int]] = {}
        generated, flavors, rows = self.generator.make_catalogue(entries, extra_bursts=bursts)
        for flavor in flavors:
            self._insert_flavor(flavor)
        for entry in generated:
            self._insert_entry(entry)
        for category_id, entry_id, created in rows:
            self._link_category(category_id, entry_id, created)
        for entry in generated:
            self._sync_categories(entry)
        self.captions: dict[str, dict] = {}
        # Each entry's caption ids, and each object's metadata ids, in the order they were added: looked up per
        # entry, so that generating a million entries is not a scan of every caption per entry.
        self._captions_of: dict[str, list[str]] = {}
        self._caption_rng = random.Random(f"{seed}:captions")
        for entry in generated:
            if self._caption_rng.randrange(CAPTIONED_ONE_IN) == 0 and entry["status"] == ENTRY_READY:
                self._generate_captions(entry)
        self.thumbnail_images: dict[tuple[str, int], bytes] = {}  # (entry id, thumbnail version) -> uploaded image
        self.metadata_profiles: dict[int, dict] = {}
        self.metadata: dict[int, dict] = {}
        self._metadata_of: dict[str, list[int]] = {}
        self._metadata_ids = 0
        self._generate_metadata(generated, random.Random(f"{seed}:metadata"))
        self._generate_co_editors(generated, random.Random(f"{seed}:co-editors"))

        self.sessions: dict[str, dict] = {}
        self.upload_tokens: dict[str, dict] = {}
        self.pending: dict[str, dict] = {}
        # The next this many replacements fail to convert (replacementStatus 4), as Kaltura's do on a bad file.
        self.failing_conversions = 0
        self.faults: list[dict] = []
        self.download_faults: dict[str, Any] = {"truncate_next": 0, "truncate_at": 0.5, "bytes_per_second": None}
        self.download_redirects: dict[str, dict[str, Any]] = {}  # flavor id -> where its next downloads go
        self._counters: Counter[str] = Counter()
        self._subrequest_counters: Counter[str] = Counter()
        self._workdir: str | None = None

    def shuffle_ties(self, items: list[dict], key) -> list[dict]:
        """`items` (sorted by `key`) with each run of equal keys in a random order, unless stable_ties."""
        if self.stable_ties or len(items) < 2:
            return items
        result: list[dict] = []
        group: list[dict] = []
        for item in items:
            if group and key(group[0]) != key(item):
                self._ties_rng.shuffle(group)
                result += group
                group = []
            group.append(item)
        self._ties_rng.shuffle(group)
        return result + group

    # --- bookkeeping ------------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def set_status(self, entry: dict, status: int) -> None:
        """Change an entry's status; every status change goes through here (entry_index counts statuses)."""
        if entry["status"] != status:
            entry["status"] = status
            self._status_version += 1

    def _insert_entry(self, entry: dict) -> None:
        entry.setdefault("_seq", self._next_seq())
        entry.setdefault("_hidden", False)
        self.entries[entry["id"]] = entry
        self._entries_version += 1

    def _insert_flavor(self, flavor: dict) -> None:
        flavor.setdefault("_seq", self._next_seq())
        self.flavors[flavor["id"]] = flavor

    def _link_category(self, category_id: int, entry_id: str, created: int) -> None:
        entry = self.entries[entry_id]
        self._categories_of.setdefault(entry_id, []).append(category_id)
        self.category_entries[(category_id, entry_id)] = {
            "categoryId": category_id,
            "entryId": entry_id,
            "createdAt": created,
            "categoryFullIds": self.categories[category_id]["fullIds"],
            "status": CATEGORY_ENTRY_DELETED if entry["status"] == ENTRY_DELETED else CATEGORY_ENTRY_ACTIVE,
            "creatorUserId": entry["userId"],
            "_seq": self._next_seq(),
        }

    def _sync_categories(self, entry: dict) -> None:
        rows = [self.category_entries[key] for key in self._category_keys(entry["id"])]
        active = [self.categories[r["categoryId"]] for r in rows if r["status"] == CATEGORY_ENTRY_ACTIVE]
        entry["categories"] = ",".join(c["fullName"] for c in active)
        entry["categoriesIds"] = ",".join(str(c["id"]) for c in active)

    def _category_keys(self, entry_id: str) -> list[tuple[int, str]]:
        return [(category_id, entry_id) for category_id in self._categories_of.get(entry_id, [])]

    def entry_statuses(self, field: str) -> list[int]:
        """The statuses of entry_index(field)'s entries, in its order: a compact list to count a range's statuses
        from without touching a million entries (kept current through set_status)."""
        ordered, _, _ = self.entry_index(field)
        cached = self._entry_statuses.get(field)
        if cached is None or cached[0] != (self._entries_version, self._status_version) or cached[1] is not ordered:
            cached = ((self._entries_version, self._status_version), ordered, list(map(itemgetter("status"), ordered)))
            self._entry_statuses[field] = cached
        return cached[2]

    def entry_index(self, field: str) -> tuple[list[dict], list[Any], list[int]]:
        """Every entry (hidden ones too) sorted by (entry[field], _seq), the field's values in that order, and the
        positions of the hidden entries in it (`_hidden` is set at insertion and never changes).

        Built lazily and rebuilt when an entry was inserted or, for a field that can change (not createdAt, set
        at insertion only), when any entry's value no longer matches the snapshot (checked on every call: a
        C-speed pass, so no mutation site has to remember to invalidate). Callers hold the lock and must not
        change the lists."""
        get = itemgetter(field)
        cached = self._entry_indexes.get(field)
        if cached is not None:
            version, ordered, keys, hidden = cached
            if version == self._entries_version and (field == "createdAt" or list(map(get, ordered)) == keys):
                return ordered, keys, hidden
        ordered = sorted(self.entries.values(), key=lambda e: (e[field], e["_seq"]))
        keys = list(map(get, ordered))
        hidden = [position for position, entry in enumerate(ordered) if entry["_hidden"]]
        self._entry_indexes[field] = (self._entries_version, ordered, keys, hidden)
        return ordered, keys, hidden

    def entry_index_range(self, field: str, low: Any, high: Any) -> tuple[list[dict], list[int], int, int]:
        """(index, hidden positions, start, stop): index[start:stop] are the entries with low <= entry[field] <=
        high (None: open); see entry_index."""
        ordered, keys, hidden = self.entry_index(field)
        start = 0 if low is None else bisect_left(keys, low)
        stop = len(keys) if high is None else bisect_right(keys, high)
        return ordered, hidden, start, max(start, stop)

    def entry_flavors(self, entry: dict, *, live_only: bool = False) -> list[dict]:
        flavors = [self.flavors[flavor_id] for flavor_id in entry["_flavors"]]
        return [f for f in flavors if f["status"] != FLAVOR_DELETED] if live_only else flavors

    def original_flavor(self, entry: dict) -> dict | None:
        return next((f for f in self.entry_flavors(entry, live_only=True) if f["isOriginal"]), None)

    def public_entry(self, entry: dict) -> dict[str, Any]:
        record = public(entry)
        prefix = f"{self.base_url}/p/{self.partner_id}/sp/{self.partner_id}00"
        record["thumbnailUrl"] = f"{prefix}/thumbnail/entry_id/{entry['id']}/version/{entry['_thumb_version']}"
        manifest = f"{prefix}/playManifest/entryId/{entry['id']}"
        record["downloadUrl"] = f"{manifest}/format/download/protocol/http/flavorParamsId/0"
        record["dataUrl"] = f"{manifest}/format/url/protocol/http"
        return record

    def flavor_url(self, flavor: dict) -> str:
        return (
            f"{self.base_url}/p/{self.partner_id}/sp/{self.partner_id}00/serveFlavor/entryId/{flavor['entryId']}"
            f"/v/{flavor['version']}/flavorId/{flavor['id']}/name/a.{flavor['fileExt']}"
        )

    def find_entry(self, entry_id: str | None, *, include_hidden: bool = True) -> dict:
        """The entry as the API's get sees it: deleted entries do not exist."""
        entry = self.entries.get(entry_id or "")
        if entry is None or entry["status"] == ENTRY_DELETED or (entry["_hidden"] and not include_hidden):
            raise KalturaError("ENTRY_ID_NOT_FOUND", entry_id)
        return entry

    @property
    def workdir(self) -> str:
        with self.lock:
            if self._workdir is None:
                self._workdir = tempfile.mkdtemp(prefix="kaltura-sim-")
            return self._workdir

    def close(self) -> None:
        with self.lock:
            if self._workdir:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None

    # --- test and control helpers -----------------------------------------------------------------

    def play(self, entry_id: str, when: float | None = None) -> dict:
        """What Kaltura's daily analytics job does: lastPlayedAt, plays and views move; updatedAt does not."""
        with self.lock:
            entry = self.entries[entry_id]
            entry["lastPlayedAt"] = int(time.time() if when is None else when)
            entry["plays"] += 1
            entry["views"] += 1
            return self.public_entry(entry)

    def add_entry(self, **fields: Any) -> str:
        """Add a plain READY video entry (created now, never played, untagged, three transcodes) unless
        `fields` say otherwise. Besides KalturaMediaEntry fields: original_size_bytes (exact, not scaled),
        original_status (None for no original flavor), transcode_count, category_ids."""
        with self.lock:
            now = int(time.time())
            options: dict[str, Any] = {
                "createdAt": now,
                "lastPlayedAt": None,
                "status": ENTRY_READY,
                "mediaType": 1,
                "sourceType": "1",
                "tags": "",
                "category_ids": [],
                "original_status": FLAVOR_READY,
                "transcode_count": 3,
            }
            options.update(fields)
            options.setdefault("updatedAt", options["createdAt"])
            entry, flavors, category_ids = self.generator.make_entry(self._added_rng, **options)
            for flavor in flavors:
                self._insert_flavor(flavor)
            self._insert_entry(entry)
            for category_id in category_ids:
                self._link_category(int(category_id), entry["id"], entry["createdAt"])
            self._sync_categories(entry)
            return entry["id"]

    def replace_media(self, entry_id: str, data: bytes | None = None, *, size: int = 150_000) -> None:
        """What an owner does with "Replace media" in KMC or KMS (media.updateContent): new bytes for the
        original, which keeps its id and gets a new version; the entry keeps its id, tags and categories.
        The conversion finishes as any replacement does (after `conversion_delay`)."""
        with self.lock:
            entry = self.entries[entry_id]
            path = os.path.join(self.workdir, f"owner-{entry_id}-{self._next_seq()}.mp4")
            with open(path, "wb") as handle:
                handle.write(data if data is not None else random.Random(path).randbytes(size))
            self.start_replacement(entry, path)

    def add_user(self, user_id: str, email: str | None = None, **fields: Any) -> dict:
        """Add (or replace) a Kaltura user; `email=None` is an account without one, as service accounts are."""
        with self.lock:
            now = int(time.time())
            user = {
                "id": user_id,
                "partnerId": self.partner_id,
                "screenName": user_id,
                "fullName": user_id,
                "email": email,
                "status": 1,
                "createdAt": now,
                "updatedAt": now,
                "type": 0,
                "isAdmin": False,
                "firstName": "",
                "lastName": "",
                "loginEnabled": False,
                **fields,
            }
            self.users[user_id] = user
            return public(user)

    def delete_entry(self, entry_id: str) -> None:
        with self.lock:
            entry = self.entries[entry_id]
            now = int(time.time())
            self.set_status(entry, ENTRY_DELETED)
            entry["updatedAt"] = now
            for flavor in self.entry_flavors(entry, live_only=True):
                flavor.update(status=FLAVOR_DELETED, deletedAt=now, updatedAt=now)
            for key in self._category_keys(entry_id):
                self.category_entries[key]["status"] = CATEGORY_ENTRY_DELETED
            self._sync_categories(entry)

    def set_tags(self, entry_id: str, tags: str) -> dict:
        with self.lock:
            entry = self.entries[entry_id]
            self.update_entry(entry, {"tags": tags})
            return self.public_entry(entry)

    def get_entry(self, entry_id: str) -> dict:
        with self.lock:
            return self.public_entry(self.entries[entry_id])

    def get_flavors(self, entry_id: str) -> list[dict]:
        """All the entry's flavors, DELETED ones included."""
        with self.lock:
            return [public(f) for f in self.entry_flavors(self.entries[entry_id])]

    def all_entries(self) -> list[dict]:
        """Every entry a list with all statuses would show (not the hidden replacement entries)."""
        with self.lock:
            return [self.public_entry(e) for e in self.entries.values() if not e["_hidden"]]

    def original_bytes_sha256(self, entry_id: str) -> str | None:
        """SHA-256 of what downloading the entry's original flavor returns now (None: no original)."""
        with self.lock:
            flavor = self.original_flavor(self.entries[entry_id])
            source = flavor["_content"] if flavor else None
        return content.sha256(source) if source else None

    def expire_sessions(self) -> None:
        with self.lock:
            for session in self.sessions.values():
                session["expiresAt"] = 0.0

    def inject_fault(
        self,
        kind: str,
        count: int = 1,
        service: str | None = None,
        action: str | None = None,
        code: str = "INTERNAL_SERVER_ERROR",
        message: str | None = None,
        after: int = 0,
    ) -> None:
        """Fail the next `count` matching calls, once `after` matching calls have gone through unharmed."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}")
        with self.lock:
            self.faults.append(
                {
                    "kind": kind,
                    "remaining": int(count),
                    "service": service,
                    "action": action,
                    "code": code,
                    "message": message,
                    "after": int(after),
                }
            )

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()
            self.download_faults.update(truncate_next=0, truncate_at=0.5, bytes_per_second=None)
            self.download_redirects.clear()

    def redirect_download(self, flavor_id: str, location: str, count: int = 1, status: int = 302) -> None:
        """Answer the flavor's next `count` downloads with a redirect to `location` (a CDN, or anywhere)."""
        if status not in (301, 302, 303, 307, 308):
            raise ValueError("status must be a redirect: 301, 302, 303, 307 or 308")
        with self.lock:
            if flavor_id not in self.flavors:
                raise KeyError(flavor_id)
            self.download_redirects[flavor_id] = {
                "location": str(location),
                "remaining": int(count),
                "status": int(status),
            }

    def take_download_redirect(self, flavor_id: str) -> tuple[int, str] | None:
        with self.lock:
            redirect = self.download_redirects.get(flavor_id)
            if redirect is None or redirect["remaining"] <= 0:
                return None
            redirect["remaining"] -= 1
            return redirect["status"], redirect["location"]

    def set_download_faults(
        self, truncate_next: int = 0, truncate_at: float = 0.5, bytes_per_second: float | None = None
    ) -> None:
        if not 0 <= truncate_at < 1:
            raise ValueError("truncate_at is a fraction in [0, 1)")
        with self.lock:
            self.download_faults.update(
                truncate_next=int(truncate_next), truncate_at=float(truncate_at), bytes_per_second=bytes_per_second
            )

    @property
    def counters(self) -> dict[str, int]:
        with self.lock:
            return dict(self._counters)

    @property
    def subrequest_counters(self) -> dict[str, int]:
        with self.lock:
            return dict(self._subrequest_counters)

    def reset_counters(self) -> None:
        with self.lock:
            self._counters.clear()
            self._subrequest_counters.clear()

    def count(self, key: str, *, subrequest: bool = False) -> None:
        with self.lock:
            (self._subrequest_counters if subrequest else self._counters)[key] += 1

    def complete_conversions(self) -> None:
        """Finish every pending replacement and content addition now."""
        with self.lock:
            for entry_id in list(self.pending):
                self._finish_conversion(self.pending.pop(entry_id))

    def tick(self) -> None:
        """Finish conversions whose delay has passed; called on every request, so completion is lazy but
        never observed late."""
        with self.lock:
            now = time.time()
            for entry_id, job in list(self.pending.items()):
                if job["due"] <= now:
                    self._finish_conversion(self.pending.pop(entry_id))

    # --- faults as the server applies them --------------------------------------------------------

    @staticmethod
    def _fault_hits(fault: dict, service: str, action: str) -> bool:
        return (fault["service"] is None or fault["service"].lower() == service.lower()) and (
            fault["action"] is None or fault["action"].lower() == action.lower()
        )

    def take_request_fault(self, service: str, action: str, subcalls: list[tuple[str, str]] | None) -> dict | None:
        """The fault to apply to a whole HTTP request, if any (and count it as used).

        A multirequest is hit by faults for any call or for "multirequest"; transport faults (http500, drop,
        bad_gateway) aimed at a service also hit a multirequest that contains such a call. kaltura_error faults
        aimed at a service hit only that item of a multirequest (see take_item_fault).
        """
        with self.lock:
            for fault in self.faults:
                if fault["remaining"] <= 0:
                    continue
                if subcalls is None:
                    hit = self._fault_hits(fault, service, action)
                elif fault["service"] is None or fault["service"].lower() == "multirequest":
                    hit = True
                else:
                    hit = fault["kind"] != "kaltura_error" and any(self._fault_hits(fault, s, a) for s, a in subcalls)
                if hit and not self._let_through(fault):
                    return self._use(fault)
            return None

    def take_item_fault(self, service: str, action: str) -> dict | None:
        with self.lock:
            for fault in self.faults:
                if (
                    fault["remaining"] > 0
                    and fault["kind"] == "kaltura_error"
                    and fault["service"] not in (None, "multirequest")
                    and self._fault_hits(fault, service, action)
                    and not self._let_through(fault)
                ):
                    return self._use(fault)
            return None

    @staticmethod
    def _let_through(fault: dict) -> bool:
        """True (and one fewer to let through) while the fault still lets matching calls pass."""
        if fault.get("after", 0) > 0:
            fault["after"] -= 1
            return True
        return False

    def _use(self, fault: dict) -> dict:
        fault["remaining"] -= 1
        self.faults = [f for f in self.faults if f["remaining"] > 0]
        return dict(fault)

    def take_download_plan(self) -> tuple[float | None, float | None]:
        """(fraction after which to cut the connection or None, bytes per second or None)."""
        with self.lock:
            plan = self.download_faults
            truncate = None
            if plan["truncate_next"] > 0:
                plan["truncate_next"] -= 1
                truncate = plan["truncate_at"]
            return truncate, plan["bytes_per_second"] or self.download_bytes_per_second

    # --- sessions ---------------------------------------------------------------------------------

    def start_session(
        self,
        secret: str | None,
        user_id: str,
        ks_type: int,
        partner_id: int | None,
        expiry: int | None,
        privileges: str,
    ) -> str:
        if partner_id != self.partner_id or secret != self.admin_secret:
            raise KalturaError("START_SESSION_ERROR", partner_id if partner_id is not None else "")
        expiry = expiry if expiry and expiry > 0 else 86400
        expiry = min(expiry, self.ks_expiry_cap)
        # Shaped like a v2 KS: base64 of "v2|<partner>|" and opaque bytes (here random; the real ones are
        # encrypted fields). Clients must treat it as opaque.
        ks = base64.urlsafe_b64encode(f"v2|{self.partner_id}|".encode() + os.urandom(96)).decode()
        with self.lock:
            self.sessions[ks] = {
                "userId": user_id,
                "type": ks_type,
                "privileges": privileges,
                "expiresAt": time.time() + expiry,
            }
        return ks

    def check_session(self, ks: str | None) -> dict:
        if not ks:
            raise KalturaError("MISSING_KS")
        with self.lock:
            session = self.sessions.get(ks)
        if session is None:
            raise KalturaError("INVALID_KS", ks, -1, "INVALID_STR")
        if session["expiresAt"] <= time.time():
            raise KalturaError("INVALID_KS", ks, -5, "EXPIRED")
        return session

    # --- entry changes ----------------------------------------------------------------------------

    def update_entry(self, entry: dict, changes: dict[str, Any]) -> None:
        """Apply changes; updatedAt moves only if a value really changed (as Propel saves only modified
        columns)."""
        changed = False
        for key, value in changes.items():
            if key == "tags":
                value = normalise_tags(value)
            if key == "categoriesIds":
                changed |= self._set_categories(entry, value)
                continue
            if entry.get(key) != value:
                entry[key] = value
                changed = True
        if changed:
            entry["updatedAt"] = int(time.time())

    def _set_categories(self, entry: dict, ids: str | None) -> bool:
        wanted = [int(i) for i in (ids or "").split(",") if i.strip().isdigit() and int(i) in self.categories]
        before = entry["categoriesIds"]
        now = int(time.time())
        for key in self._category_keys(entry["id"]):
            if key[0] not in wanted:
                self.category_entries[key]["status"] = CATEGORY_ENTRY_DELETED
        for category_id in wanted:
            row = self.category_entries.get((category_id, entry["id"]))
            if row is None:
                self._link_category(category_id, entry["id"], now)
            else:
                row["status"] = CATEGORY_ENTRY_ACTIVE
        self._sync_categories(entry)
        return entry["categoriesIds"] != before

    def delete_flavor(self, flavor_id: str) -> None:
        flavor = self.flavors.get(flavor_id or "")
        if flavor is None or flavor["status"] == FLAVOR_DELETED:
            raise KalturaError("FLAVOR_ASSET_ID_NOT_FOUND", flavor_id)
        now = int(time.time())
        flavor.update(status=FLAVOR_DELETED, deletedAt=now, updatedAt=now)
        entry = self.entries[flavor["entryId"]]
        live = self.entry_flavors(entry, live_only=True)
        entry["flavorParamsIds"] = ",".join(str(f["flavorParamsId"]) for f in live)
        # flavorAsset::postUpdate: an entry left without a READY flavor has no content any more.
        has_ready = any(f["status"] == FLAVOR_READY for f in live)
        if not has_ready and entry["status"] not in (ENTRY_DELETED, ENTRY_NO_CONTENT):
            self.set_status(entry, ENTRY_NO_CONTENT)
            entry["updatedAt"] = now

    # --- captions (the caption plugin's captionAsset) ------------------------------------------------

    def _generate_captions(self, entry: dict) -> None:
        self.add_caption(
            entry["id"], "English", "English", CAPTION_SRT, content.caption_text(entry["name"], "srt"), is_default=True
        )
        if self._caption_rng.randrange(2) == 0:
            self.add_caption(
                entry["id"], "French", "Français (auto)", CAPTION_WEBVTT, content.caption_text(entry["name"], "vtt")
            )

    def add_caption(
        self,
        entry_id: str,
        language: str,
        label: str,
        caption_format: str = CAPTION_SRT,
        data: bytes | None = None,
        *,
        is_default: bool = False,
    ) -> str:
        """A caption asset on the entry (captionAsset.add, then setContent if `data`); returns its id."""
        with self.lock:
            entry = self.find_entry(entry_id)
            now = int(time.time())
            caption_id = self.generator.new_id(self._caption_rng)
            self.captions[caption_id] = {
                "id": caption_id,
                "entryId": entry["id"],
                "partnerId": self.partner_id,
                "version": "0",
                "size": 0,
                "sizeInBytes": 0,
                "tags": "",
                "fileExt": CAPTION_EXTENSIONS.get(caption_format, "txt"),
                "createdAt": now,
                "updatedAt": now,
                "deletedAt": None,
                "description": "",
                "captionParamsId": 0,
                "language": language,
                "languageCode": _LANGUAGE_CODES.get(language, ""),
                "isDefault": 0,
                "label": label,
                "format": caption_format,
                "status": CAPTION_QUEUED,
                "accuracy": 100,
                "displayOnPlayer": True,
                "_content": b"",
                "_seq": self._next_seq(),
            }
            self._captions_of.setdefault(entry["id"], []).append(caption_id)
            if is_default:
                self.set_default_caption(caption_id)
            if data is not None:
                self.set_caption_content(caption_id, data)
            return caption_id

    def find_caption(self, caption_id: str | None) -> dict:
        caption = self.captions.get(caption_id or "")
        if caption is None or caption["status"] == CAPTION_DELETED:
            raise KalturaError("CAPTION_ASSET_ID_NOT_FOUND", caption_id)
        return caption

    def entry_captions(self, entry_id: str) -> list[dict]:
        captions = (self.captions[caption_id] for caption_id in self._captions_of.get(entry_id, ()))
        return [c for c in captions if c["status"] != CAPTION_DELETED]  # added in _seq order

    def set_caption_content(self, caption_id: str, data: bytes) -> dict:
        with self.lock:
            caption = self.find_caption(caption_id)
            caption.update(
                _content=bytes(data),
                size=max(1, len(data) // 1024),
                sizeInBytes=len(data),
                status=CAPTION_READY,
                version=str(int(caption["version"]) + 1),
                updatedAt=int(time.time()),
            )
            return caption

    def set_default_caption(self, caption_id: str) -> None:
        with self.lock:
            chosen = self.find_caption(caption_id)
            for caption in self.entry_captions(chosen["entryId"]):
                caption["isDefault"] = 1 if caption is chosen else 0

    def delete_caption(self, caption_id: str) -> None:
        with self.lock:
            caption = self.find_caption(caption_id)
            now = int(time.time())
            caption.update(status=CAPTION_DELETED, deletedAt=now, updatedAt=now, isDefault=0)

    def caption_url(self, caption: dict) -> str:
        return (
            f"{self.base_url}/p/{self.partner_id}/sp/{self.partner_id}00/serveCaption/captionAssetId/"
            f"{caption['id']}/v/{caption['version']}/a.{caption['fileExt']}"
        )

    # --- co-editors (entitledUsersEdit / entitledUsersPublish / entitledUsersView) ---------------------

    def entitled_users(self, value: str | None) -> str:
        """What Kaltura stores for an entitledUsers* list (entry::setEntitledPusersEdit): each id trimmed, each an
        active user of the partner (INVALID_USER_ID otherwise), once each, joined with ","."""
        if not (value or "").strip():
            return ""
        ids: list[str] = []
        for user_id in value.split(","):
            user_id = user_id.strip()
            if user_id not in self.users:
                raise KalturaError("INVALID_USER_ID")
            if user_id not in ids:
                ids.append(user_id)
        return ",".join(ids)

    def _generate_co_editors(self, generated: list[dict], rng: random.Random) -> None:
        user_ids = sorted(self.users)
        for entry in generated:
            if rng.randrange(CO_EDITED_ONE_IN) == 0:
                others = [u for u in rng.sample(user_ids, 3) if u != entry["userId"]]
                entry["entitledUsersEdit"] = ",".join(others[:2])
                entry["entitledUsersPublish"] = others[0] if rng.randrange(2) == 0 else ""

    # --- custom metadata (the metadata plugin's metadataProfile and metadata) --------------------------

    def _generate_metadata(self, generated: list[dict], rng: random.Random) -> None:
        profile_id = self.add_metadata_profile("Course information", "CourseInfo", COURSE_PROFILE_XSD)
        user_ids = sorted(self.users)
        for entry in generated:
            if rng.randrange(METADATA_ONE_IN) == 0:
                code = f"{rng.choice(['HIS', 'MAT', 'PHY', 'BIO', 'ECO'])} {rng.randint(100, 499)}"
                term = f"{rng.choice(['Fall', 'Spring'])} {rng.randint(2012, 2024)}"
                xml = (
                    f"<metadata><CourseCode>{code}</CourseCode><Term>{term}</Term>"
                    f"<Instructor>{rng.choice(user_ids)}</Instructor></metadata>"
                )
                self.set_metadata(profile_id, entry["id"], xml, when=entry["createdAt"])

    def add_metadata_profile(
        self, name: str, system_name: str, xsd: str, object_type: str = METADATA_OBJECT_ENTRY
    ) -> int:
        """A custom metadata schema (metadataProfile.add); returns its id."""
        with self.lock:
            now = int(time.time())
            profile_id = 9000 + len(self.metadata_profiles) + 1
            self.metadata_profiles[profile_id] = {
                "id": profile_id,
                "partnerId": self.partner_id,
                "metadataObjectType": object_type,
                "version": 1,
                "name": name,
                "systemName": system_name,
                "description": "",
                "createdAt": now,
                "updatedAt": now,
                "status": METADATA_PROFILE_ACTIVE,
                "xsd": xsd,
                "views": None,
                "xslt": None,
                "createMode": 1,
                "disableReIndexing": False,
            }
            return profile_id

    def find_metadata_profile(self, profile_id: int | None) -> dict:
        profile = self.metadata_profiles.get(profile_id or 0)
        if profile is None:
            raise KalturaError("METADATA_PROFILE_NOT_FOUND", profile_id)
        return profile

    def find_metadata(self, metadata_id: int | None) -> dict:
        metadata = self.metadata.get(metadata_id or 0)
        if metadata is None or metadata["status"] == METADATA_DELETED:
            raise KalturaError("METADATA_NOT_FOUND", metadata_id)
        return metadata

    def entry_metadata(self, entry_id: str) -> list[dict]:
        values = (self.metadata[metadata_id] for metadata_id in self._metadata_of.get(entry_id, ()))
        return [m for m in values if m["status"] == METADATA_VALID]

    def set_metadata(self, profile_id: int, object_id: str, xml: str, *, when: int | None = None) -> dict:
        """The object's values of that profile (metadata.add, or metadata.update when it has some: the version
        moves on when the XML changes)."""
        with self.lock:
            profile = self.find_metadata_profile(profile_id)
            now = int(time.time()) if when is None else when
            for metadata in self.entry_metadata(object_id):
                if metadata["metadataProfileId"] == profile_id:
                    if metadata["xml"] != xml:
                        metadata.update(xml=xml, version=metadata["version"] + 1, updatedAt=now)
                    return metadata
            self._metadata_ids += 1
            metadata = {
                "id": self._metadata_ids,
                "partnerId": self.partner_id,
                "metadataProfileId": profile_id,
                "metadataProfileVersion": profile["version"],
                "metadataObjectType": profile["metadataObjectType"],
                "objectId": object_id,
                "version": 1,
                "createdAt": now,
                "updatedAt": now,
                "status": METADATA_VALID,
                "xml": xml,
            }
            self.metadata[metadata["id"]] = metadata
            self._metadata_of.setdefault(metadata["objectId"], []).append(metadata["id"])
            return metadata

    def delete_metadata(self, metadata_id: int) -> None:
        with self.lock:
            metadata = self.find_metadata(metadata_id)
            metadata.update(status=METADATA_DELETED, updatedAt=int(time.time()))

    def thumbnail_from_video(self, entry: dict) -> None:
        if self.original_flavor(entry) is None or self.original_flavor(entry)["status"] != FLAVOR_READY:
            raise KalturaError("ORIGINAL_FLAVOR_ASSET_IS_MISSING")
        entry["_thumb_version"] += 1
        entry["updatedAt"] = int(time.time())

    def thumbnail_from_image(self, entry: dict, data: bytes) -> None:
        """media.updateThumbnailJpeg: the uploaded image is the entry's thumbnail from its next version on."""
        with self.lock:
            entry["_thumb_version"] += 1
            self.thumbnail_images[(entry["id"], entry["_thumb_version"])] = bytes(data)
            entry["updatedAt"] = int(time.time())

    def thumbnail_bytes(self, entry: dict, version: int) -> tuple[bytes, str]:
        """A thumbnail version's image and content type: an uploaded one as it came, else one cut from the video."""
        uploaded = self.thumbnail_images.get((entry["id"], version))
        if uploaded is None:
            return content.thumbnail_png(entry["id"], version), "image/png"
        return uploaded, "image/jpeg" if uploaded[:2] == b"\xff\xd8" else "image/png"

    # --- upload tokens ----------------------------------------------------------------------------

    def add_upload_token(
        self, user_id: str, file_name: str | None, file_size: float | None, auto_finalize: bool
    ) -> dict:
        now = int(time.time())
        token_id = "0_" + os.urandom(16).hex()
        token = {
            "id": token_id,
            "partnerId": self.partner_id,
            "userId": user_id,
            "status": UPLOAD_PENDING,
            "fileName": file_name,
            "fileSize": file_size,
            "uploadedFileSize": None,
            "createdAt": now,
            "updatedAt": now,
            "uploadUrl": None,
            "autoFinalize": 1 if auto_finalize else None,
            "attachedObjectType": None,
            "attachedObjectId": None,
            "_path": None,
            "_chunks": {},
        }
        with self.lock:
            self.upload_tokens[token_id] = token
        return token

    def find_upload_token(self, token_id: str | None) -> dict:
        token = self.upload_tokens.get(token_id or "")
        if token is None:
            raise KalturaError("UPLOAD_TOKEN_NOT_FOUND")
        return token

    def upload_chunk(
        self, token: dict, chunk_path: str, file_name: str | None, resume: bool, final: bool, resume_at: int
    ) -> None:
        """kUploadTokenMgr::uploadFileToToken. resume=False replaces the content. resume=True appends at the
        end when resumeAt is -1 or equals the current size; any other resumeAt is kept as a pending chunk and
        appended once the bytes before it have arrived (chunks may come in parallel, out of order). A final
        chunk with resumeAt > 0 must leave the file exactly resumeAt + its size long, else
        UPLOAD_TOKEN_CANNOT_MATCH_EXPECTED_SIZE (the real server waits up to 30 s for missing chunks first)."""
        if token["status"] not in (UPLOAD_PENDING, UPLOAD_PARTIAL):
            raise KalturaError("UPLOAD_TOKEN_INVALID_STATUS_FOR_UPLOAD")
        if not token["fileName"] and file_name:
            token["fileName"] = os.path.basename(file_name)
        chunk_size = os.path.getsize(chunk_path)
        if chunk_size == 0 and not final and resume_at > 0:
            os.unlink(chunk_path)
            return
        if not resume:
            path = os.path.join(self.workdir, f"upload-{token['id']}")
            os.replace(chunk_path, path)
            token["_path"], token["_chunks"] = path, {}
            size = chunk_size
        else:
            path = token["_path"]
            if not path or not os.path.exists(path):
                raise KalturaError("UPLOAD_TOKEN_CANNOT_RESUME")
            current = os.path.getsize(path)
            if resume_at == -1:
                resume_at = current
            token["_chunks"][resume_at] = chunk_path
            size = self._append_available_chunks(token)
            if final and resume_at > 0 and size != resume_at + chunk_size:
                raise KalturaError("UPLOAD_TOKEN_CANNOT_MATCH_EXPECTED_SIZE")
        finalize = final or (token["autoFinalize"] and token["fileSize"] and size >= token["fileSize"])
        token["status"] = UPLOAD_FULL if finalize else UPLOAD_PARTIAL
        token["uploadedFileSize"] = size
        token["updatedAt"] = int(time.time())

    @staticmethod
    def _append_available_chunks(token: dict) -> int:
        path, chunks = token["_path"], token["_chunks"]
        size = os.path.getsize(path)
        with open(path, "r+b") as target:
            while True:
                # A chunk that starts within or at the end of the file and makes it longer is written at its
                # offset (overlapping bytes are overwritten, as the real server does).
                usable = [o for o, p in chunks.items() if o <= size and o + os.path.getsize(p) > size]
                stale = [o for o, p in chunks.items() if o + os.path.getsize(p) <= size]
                for offset in stale:
                    os.unlink(chunks.pop(offset))
                if not usable:
                    return size
                offset = min(usable)
                chunk_path = chunks.pop(offset)
                target.seek(offset)
                with open(chunk_path, "rb") as source:
                    shutil.copyfileobj(source, target, content.BLOCK)
                os.unlink(chunk_path)
                size = max(size, target.tell())

    def take_uploaded_file(self, token_id: str | None) -> str:
        """Close a FULL_UPLOAD token and hand its file over; anything else is
        UPLOAD_TOKEN_INVALID_STATUS_FOR_ADD_ENTRY (so is an unknown token: the real code maps both alike)."""
        token = self.upload_tokens.get(token_id or "")
        if token is None or token["status"] != UPLOAD_FULL:
            raise KalturaError("UPLOAD_TOKEN_INVALID_STATUS_FOR_ADD_ENTRY")
        token["status"] = UPLOAD_CLOSED
        token["updatedAt"] = int(time.time())
        path = os.path.join(self.workdir, f"content-{token['id']}")
        os.replace(token["_path"], path)
        return path

    # --- content replacement and addition ---------------------------------------------------------

    def start_replacement(self, entry: dict, path: str) -> None:
        """MediaService::replaceResource on an entry with content: a hidden temporary entry takes the new
        file and converts; the entry itself keeps playing its current flavors until the swap."""
        if entry["replacingEntryId"]:
            raise KalturaError("ENTRY_REPLACEMENT_ALREADY_EXISTS")
        now = int(time.time())
        temp = copy.deepcopy({k: v for k, v in entry.items() if k not in ("_seq", "_flavors", "_earlier_content")})
        temp.update(
            id=self.generator.new_id(self._added_rng),
            status=ENTRY_PRECONVERT,
            createdAt=now,
            updatedAt=now,
            replacedEntryId=entry["id"],
            replacingEntryId=None,
            replacementStatus="0",
            displayInSearch=-1,
            plays=0,
            views=0,
            lastPlayedAt=None,
            categories="",
            categoriesIds="",
            _hidden=True,
            _flavors=[],
        )
        temp["rootEntryId"] = temp["id"]
        self._insert_entry(temp)
        entry["replacingEntryId"] = temp["id"]
        # NOT_READY_AND_NOT_APPROVED becomes APPROVED_BUT_NOT_READY at once for partners without the
        # replacement-approval feature (the usual case): no approveReplace call is needed.
        entry["replacementStatus"] = "1"
        entry["updatedAt"] = now
        self.pending[entry["id"]] = {
            "kind": "replace",
            "entry": entry["id"],
            "temp": temp["id"],
            "path": path,
            "due": time.time() + self.conversion_delay,
        }

    def attach_content(self, entry: dict, path: str) -> None:
        """Content for an entry without any (addContent, or updateContent on NO_CONTENT): a new original
        flavor is queued and the entry converts (PRECONVERT) until the conversion delay has passed."""
        now = int(time.time())
        source = content.from_file(path, os.path.getsize(path))
        flavor = self.generator.flavor_record(
            self.generator.new_id(self._added_rng),
            entry,
            0,
            source,
            FLAVOR_QUEUED,
            1,
            now,
            now,
            width=entry["width"] or 1280,
            height=entry["height"] or 720,
            frame_rate=25.0,
            duration=entry["duration"],
            web=not entry["_profile"],
        )
        self._insert_flavor(flavor)
        entry["_flavors"].append(flavor["id"])
        self.set_status(entry, ENTRY_PRECONVERT)
        entry["updatedAt"] = now
        self.pending[entry["id"]] = {
            "kind": "add",
            "entry": entry["id"],
            "path": path,
            "due": time.time() + self.conversion_delay,
        }

    def _finish_conversion(self, job: dict) -> None:
        entry = self.entries[job["entry"]]
        # Kaltura stamps the time its conversion finished, not that of the request that first sees it (this
        # simulator finishes conversions lazily, at the first request after they are due).
        now = int(min(time.time(), job.get("due", time.time())))
        if job["kind"] == "replace" and self.failing_conversions > 0:
            # Kaltura keeps the entry as it was, marks the replacement failed and leaves replacingEntryId set:
            # nothing ends by itself, and another updateContent is refused until the replacement is cancelled.
            self.failing_conversions -= 1
            self.set_status(self.entries[job["temp"]], ENTRY_ERROR_CONVERTING)
            self.entries[job["temp"]]["updatedAt"] = now
            entry.update(replacementStatus="4", updatedAt=now)
            return
        source = content.from_file(job["path"], os.path.getsize(job["path"]))
        live = self.entry_flavors(entry, live_only=True)
        original = next((f for f in live if f["isOriginal"]), None)
        if original is not None:
            entry.setdefault("_earlier_content", []).append(
                (original["_content"], entry["duration"], entry["msDuration"])
            )
        probed = self._probe_duration(entry, source)
        if probed is not None:
            entry.update(duration=probed[0], msDuration=probed[1], durationType=duration_type(probed[0]))
        if original is None:
            original = self.generator.flavor_record(
                self.generator.new_id(self._added_rng),
                entry,
                0,
                source,
                FLAVOR_READY,
                0,
                now,
                now,
                width=entry["width"] or 1280,
                height=entry["height"] or 720,
                frame_rate=25.0,
                duration=entry["duration"],
                web=not entry["_profile"],
            )
            self._insert_flavor(original)
            entry["_flavors"].append(original["id"])
        if job["kind"] == "add":
            original["version"] -= 1  # the queued original gets its first version, not a new one
        self._set_content(original, source, now, entry["duration"])

        # Transcodes are made again from the new source; a flavor of the same params keeps its id.
        by_params = {f["flavorParamsId"]: f for f in live if not f["isOriginal"]}
        for params_id in entry["_profile"]:
            size = self.generator.transcode_size(params_id, content.size_of(source), entry["duration"])
            flavor = by_params.pop(params_id, None)
            if flavor is None:
                flavor = self.generator.flavor_record(
                    self.generator.new_id(self._added_rng),
                    entry,
                    params_id,
                    source,
                    FLAVOR_READY,
                    0,
                    now,
                    now,
                    width=original["width"] or 1280,
                    height=original["height"] or 720,
                    frame_rate=original["frameRate"],
                    duration=entry["duration"],
                )
                self._insert_flavor(flavor)
                entry["_flavors"].append(flavor["id"])
            key = f"{self.seed}:{flavor['id']}:{flavor['version'] + 1}"
            self._set_content(flavor, content.generated(key, size), now, entry["duration"])
        for flavor in by_params.values():
            flavor.update(status=FLAVOR_DELETED, deletedAt=now, updatedAt=now)

        live = self.entry_flavors(entry, live_only=True)
        entry["flavorParamsIds"] = ",".join(str(f["flavorParamsId"]) for f in live)
        self.set_status(entry, ENTRY_READY)
        entry.update(replacingEntryId=None, replacementStatus="0", updatedAt=now)
        if entry["mediaType"] != MEDIA_AUDIO:
            entry["width"], entry["height"] = original["width"], original["height"]
        if job["kind"] == "replace":
            self.set_status(self.entries[job["temp"]], ENTRY_DELETED)
            self.entries[job["temp"]]["updatedAt"] = now

    @staticmethod
    def _probe_duration(entry: dict, source: content.Content) -> tuple[int, int] | None:
        """(duration, msDuration) as Kaltura would probe them from new content: an MP4's own header; for other
        bytes (generated "video") what they had when they were this entry's original before, so a restored
        original lasts as long as it did before it was archived; None (unchanged) otherwise."""
        duration_ms = content.mp4_duration_ms(source[1])
        if duration_ms is not None:
            return round(duration_ms / 1000), duration_ms
        size, digest = content.size_of(source), None
        for earlier, duration, ms_duration in reversed(entry.get("_earlier_content", [])):
            if content.size_of(earlier) == size:
                digest = digest or content.sha256(source)
                if content.sha256(earlier) == digest:
                    return duration, ms_duration
        return None

    @staticmethod
    def _set_content(flavor: dict, source: content.Content, now: int, duration: int) -> None:
        size = content.size_of(source)
        flavor.update(
            _content=source,
            size=round(size / 1024),
            sizeInBytes=size,
            version=flavor["version"] + 1,
            status=FLAVOR_READY,
            updatedAt=now,
            deletedAt=None,
            bitrate=int(size * 8 / 1000 / max(duration, 1)),
        )


class RateLimit:
    """A partner's request rate limit: more than `per_second` API requests within any one second are refused
    (the refused ones do not count), as Kaltura refuses partners that call too fast with ACTION_BLOCKED.
    `per_second` may be changed at run time; None or 0 turns the limit off."""

    def __init__(self, per_second: float | None = None) -> None:
        self.per_second = per_second
        self.blocked = 0
        self._accepted: list[float] = []
        self._lock = threading.Lock()

    def allow(self) -> bool:
        if not self.per_second:
            return True
        with self._lock:
            now = time.monotonic()
            self._accepted = [t for t in self._accepted if now - t < 1.0]
            if len(self._accepted) >= self.per_second:
                self.blocked += 1
                return False
            self._accepted.append(now)
            return True
