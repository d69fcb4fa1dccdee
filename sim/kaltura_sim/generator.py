"""A seeded, deterministic partner: users, a category tree, entries and their flavors.

Everything is drawn from `random.Random(seed)`; times are offsets back from `now`, so two generators with the
same seed and `now` produce identical data, and the same seed on another day produces the same ids and shape.

Source types used (KalturaSourceType): "1" FILE for ordinary uploads; "37" LECTURE_CAPTURE for Kaltura Capture
recordings (ordinary flavors); "5" URL for external entries whose media lives elsewhere: they have no flavor
assets at all. Source-only ("static") entries are FILE entries whose conversion profile keeps just the source:
one web-playable original flavor and `flavorParamsIds` "0".
"""

from __future__ import annotations

import itertools
import math
import random
import string
from typing import Any

from . import content

YEAR = 365 * 86400
ID_ALPHABET = string.digits + string.ascii_lowercase
_ID_TABLE = bytes(ord(ID_ALPHABET[b % 36]) for b in range(256))  # random byte -> id character

# Entry statuses (KalturaEntryStatus) and flavor statuses (KalturaFlavorAssetStatus).
ENTRY_ERROR_CONVERTING, ENTRY_IMPORT, ENTRY_PRECONVERT, ENTRY_READY = -1, 0, 1, 2
ENTRY_DELETED, ENTRY_PENDING, ENTRY_NO_CONTENT = 3, 4, 7
FLAVOR_ERROR, FLAVOR_QUEUED, FLAVOR_CONVERTING, FLAVOR_READY, FLAVOR_DELETED, FLAVOR_IMPORTING = -1, 0, 1, 2, 3, 7
MEDIA_VIDEO, MEDIA_IMAGE, MEDIA_AUDIO = 1, 2, 5

# The old tool's placeholder was a short clip; its flavors are identical on every entry it replaced. It is not
# scaled by content_scale: it is small anyway, and a fixed size keeps it recognisable.
PLACEHOLDER_SIZE = 61_440

# flavorParamsId -> name, width, height, video kbps, audio kbps
FLAVOR_PARAMS: dict[int, tuple[str, int, int, int, int]] = {
    0: ("Source", 0, 0, 0, 0),
    487041: ("Basic/Small - WEB/MBL (H264/400)", 640, 360, 400, 64),
    487051: ("Basic/Small - WEB/MBL (H264/600)", 640, 360, 600, 64),
    487061: ("SD/Small - WEB/MBL (H264/900)", 640, 480, 900, 96),
    487071: ("SD/Large - WEB/MBL (H264/1500)", 1024, 576, 1500, 128),
    487081: ("HD/720 - WEB (H264/2500)", 1280, 720, 2500, 128),
    487091: ("HD/1080 - WEB (H264/4000)", 1920, 1080, 4000, 192),
    487111: ("Audio-only - WEB/MBL (AAC/128)", 0, 0, 0, 128),
}
VIDEO_PROFILE = [487041, 487051, 487061, 487071, 487081, 487091]
AUDIO_PROFILE = [487111, 487041]
CONVERSION_PROFILE_ID = 7_801_234

FIRST_NAMES = [
    "Ada",
    "Ben",
    "Chloe",
    "Dan",
    "Eva",
    "Farid",
    "Grace",
    "Hugo",
    "Ines",
    "Jon",
    "Kira",
    "Liam",
    "Maya",
    "Nils",
    "Olga",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tara",
    "Umar",
    "Vera",
    "Wen",
    "Yara",
    "Zoe",
]
LAST_NAMES = [
    "Adams",
    "Baker",
    "Chen",
    "Doe",
    "Evans",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ito",
    "Jensen",
    "Khan",
    "Lopez",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Patel",
    "Quist",
    "Rossi",
    "Smith",
    "Tanaka",
    "Ueda",
    "Vargas",
    "Weber",
    "Young",
]
COURSES = ["BIO101", "CHEM210", "PHYS101", "HIST300", "ECON200", "MUS150", "MATH221", "CS126", "PSY101", "ENG210"]
TOPICS = [
    "Cell Biology",
    "Thermodynamics",
    "Organic Reactions",
    "The Cold War",
    "Market Design",
    "Counterpoint",
    "Linear Maps",
    "Recursion",
    "Memory",
    "Close Reading",
    "Enzymes",
    "Optics",
    "Game Theory",
    "Sonata Form",
]
TAG_WORDS = [
    "lecture",
    "seminar",
    "lab",
    "webinar",
    "orientation",
    "interview",
    "zoom",
    "kaltura_capture",
    "mediaspace",
    "student_project",
    "guest_lecture",
    "archive",
    "archived",
    "review",
    "exam_prep",
    "bio101",
    "chem210",
    "phys101",
    "hist300",
    "s3",
    "lecture_capture",
    "flipped",
    "demo",
]


def normalise_tags(value: str | None) -> str:
    """Kaltura's tag normalisation on write: lowercase, split on commas, trim, drop tags under 2 characters,
    deduplicate keeping the first, join with ", "."""
    if not value:
        return ""
    seen: list[str] = []
    for tag in value.lower().split(","):
        tag = tag.strip()
        if len(tag) >= 2 and tag not in seen:
            seen.append(tag)
    return ", ".join(seen)


def duration_type(seconds: int) -> str:
    if seconds <= 0:
        return "notavailable"
    if seconds < 240:
        return "short"
    return "medium" if seconds < 1200 else "long"


class Generator:
    def __init__(self, seed: int, partner_id: int, now: int, content_scale: float, archive_tags: bool = True) -> None:
        self.seed = seed
        # False: a library the old tool never touched (no archived_to_s3, flavors_deleted or not_archived tags),
        # so nothing claims an S3 copy that is not there (the demo archives its own with the real jobs).
        self.archive_tags = archive_tags
        self.partner_id = partner_id
        self.now = now
        self.content_scale = content_scale
        self.rng = random.Random(seed)
        self.used_ids: set[str] = set()
        self.users: list[dict[str, Any]] = []
        self.categories: list[dict[str, Any]] = []
        self._owner_weights: list[float] = []
        self._category_ids: list[int] = []
        self._leaf_ids: list[int] = []

    # --- ids and sizes ----------------------------------------------------------------------------

    def new_id(self, rng: random.Random | None = None) -> str:
        rng = rng or self.rng
        while True:
            candidate = "0_" + rng.randbytes(8).translate(_ID_TABLE).decode()
            if candidate not in self.used_ids:
                self.used_ids.add(candidate)
                return candidate

    def scaled(self, real_bytes: float) -> int:
        # A floor of 1 KiB keeps every flavor a real download even at content_scale=1e-4.
        return max(1024, round(real_bytes * self.content_scale))

    # --- users and categories ---------------------------------------------------------------------

    def make_users(self, count: int = 50) -> list[dict[str, Any]]:
        rng = self.rng
        ids: set[str] = set()
        for index in range(count):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            while True:
                user_id = f"{first[0]}{last}{rng.randint(10, 99)}".lower()
                if user_id not in ids:
                    ids.add(user_id)
                    break
            created = self.now - 11 * YEAR + rng.randint(0, YEAR)
            self.users.append(
                {
                    "id": user_id,
                    "partnerId": self.partner_id,
                    "screenName": user_id,
                    "fullName": f"{first} {last}",
                    # A few accounts (service accounts, departed staff) carry no email.
                    "email": None if index % 17 == 5 else f"{user_id}@example.edu",
                    "status": 1,
                    "createdAt": created,
                    "updatedAt": created + rng.randint(0, 5 * YEAR),
                    "type": 0,
                    "isAdmin": False,
                    "firstName": first,
                    "lastName": last,
                    "loginEnabled": False,
                }
            )
        # Uploads follow a long tail: a few people own most of the videos.
        self._owner_weights = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(count)))
        return self.users

    def make_categories(self) -> list[dict[str, Any]]:
        rng = self.rng
        base_id = 100_000_000 + rng.randint(0, 899) * 100_000
        tree: list[tuple[str, list]] = [
            ("Lectures", [(str(year), [(c, []) for c in rng.sample(COURSES, 2)]) for year in range(2019, 2024)]),
            ("Departments", [(d, []) for d in ["Biology", "Chemistry", "History", "Physics", "Music", "Economics"]]),
            ("Events", [(e, []) for e in ["Commencement", "Orientation", "Guest Lectures", "Symposia"]]),
            (
                "MediaSpace",
                [
                    (
                        "site",
                        [
                            (
                                "channels",
                                [
                                    (f"{c} Channel", [])
                                    for c in ["Biology", "Chemistry", "History", "Physics", "Music", "Campus Life"]
                                ],
                            )
                        ],
                    )
                ],
            ),
            ("Training", [(t, []) for t in ["IT Training", "HR Onboarding"]]),
        ]

        def add(name: str, children: list, parent: dict[str, Any] | None) -> None:
            category_id = base_id + len(self.categories) + 1
            created = self.now - 10 * YEAR + len(self.categories) * 30 * 86400
            category = {
                "id": category_id,
                "parentId": parent["id"] if parent else 0,
                "depth": parent["depth"] + 1 if parent else 0,
                "partnerId": self.partner_id,
                "name": name,
                "fullName": f"{parent['fullName']}>{name}" if parent else name,
                "fullIds": f"{parent['fullIds']}>{category_id}" if parent else str(category_id),
                "createdAt": created,
                "updatedAt": created + rng.randint(0, YEAR),
                "description": "",
                "tags": "",
                "appearInList": 1,
                "privacy": 1,
                "inheritanceType": 2,
                "status": 2,
                "owner": None,
                "referenceId": None,
                "moderation": 0,
                "_leaf": not children,
            }
            self.categories.append(category)
            for child_name, grandchildren in children:
                add(child_name, grandchildren, category)

        for name, children in tree:
            add(name, children, None)
        return self.categories

    # --- entries ----------------------------------------------------------------------------------

    def make_catalogue(
        self, count: int, extra_bursts: tuple[int, ...] = ()
    ) -> tuple[list[dict], list[dict], list[tuple[int, str, int]]]:
        """Entries, flavors and (categoryId, entryId, createdAt) rows for `count` entries.

        `extra_bursts`: sizes of further bulk uploads, each in a createdAt second of its own (within `count`)."""
        rng = self.rng
        if count >= 12_000:
            burst_size = 600
        elif count >= 2000:
            burst_size = 520
        else:
            burst_size = max(2, count // 20)
        burst_size = min(burst_size, count)
        bursts = [(burst_size, self.now - rng.randint(YEAR, 8 * YEAR))]
        if count >= 200:
            bursts += [(max(5, count // 200), self.now - rng.randint(30 * 86400, 9 * YEAR)) for _ in range(3)]
        seconds = {when for _, when in bursts}
        for size in extra_bursts:
            when = self.now - rng.randint(30 * 86400, 9 * YEAR)
            while when in seconds:
                when -= 1
            seconds.add(when)
            bursts.append((size, when))
        burst_times: list[int | None] = []
        for size, when in bursts:
            burst_times += [when] * size
        burst_times = burst_times[:count]
        burst_times += [None] * (count - len(burst_times))
        rng.shuffle(burst_times)

        entries, flavors, rows = [], [], []
        burst_owner: dict[int, str] = {}
        for created in burst_times:
            overrides: dict[str, Any] = {}
            if created is not None:
                # A bulk upload: one person, one createdAt second for all of it.
                overrides = {
                    "createdAt": created,
                    "_bulk": True,
                    "userId": burst_owner.setdefault(created, self.pick_owner(rng)),
                }
            entry, entry_flavors, category_ids = self.make_entry(rng, **overrides)
            entries.append(entry)
            flavors += entry_flavors
            rows += [(category_id, entry["id"], entry["createdAt"] + 60) for category_id in category_ids]

        # Multi-stream: a few READY videos are secondary streams of another READY video.
        videos = [e for e in entries if e["status"] == ENTRY_READY and e["mediaType"] == MEDIA_VIDEO and e["_flavors"]]
        parents: set[str] = set()
        for child in rng.sample(videos, len(videos) // 100):
            parent = rng.choice(videos)
            if parent is not child and not parent["parentEntryId"] and child["id"] not in parents:
                parents.add(parent["id"])
                child["parentEntryId"] = parent["id"]
                child["name"] = f"{parent['name']} (secondary stream)"
        return entries, flavors, rows

    def pick_owner(self, rng: random.Random) -> str:
        return rng.choices(self.users, cum_weights=self._owner_weights)[0]["id"]

    def make_entry(self, rng: random.Random, **fields: Any) -> tuple[dict, list[dict], list[int]]:
        """One entry drawn from `rng`; any KalturaMediaEntry field given in `fields` (None included) replaces
        what would be drawn.

        Special keys: original_size_bytes (exact, not scaled), original_status (None: no original flavor),
        transcode_count, category_ids, _bulk (part of a bulk upload).
        """
        bulk = fields.pop("_bulk", False)
        forced_original = "original_status" in fields
        original_status = fields.pop("original_status", FLAVOR_READY)
        original_size = fields.pop("original_size_bytes", None)
        transcode_count = fields.pop("transcode_count", None)
        category_ids = fields.pop("category_ids", None)

        drawn_created = self.now - int(10 * YEAR * rng.random() ** 0.7)
        created = fields.get("createdAt", drawn_created)
        now = max(self.now, created)
        media_type = rng.choices([MEDIA_VIDEO, MEDIA_AUDIO, MEDIA_IMAGE], [85, 12, 3])[0]
        media_type = fields.get("mediaType", media_type)
        roll = rng.random()
        status = next(
            s
            for limit, s in [
                (0.02, ENTRY_DELETED),
                (0.035, ENTRY_ERROR_CONVERTING),
                (0.05, ENTRY_NO_CONTENT),
                (0.06, ENTRY_PENDING),
                (0.065, ENTRY_IMPORT),
                (0.07, ENTRY_PRECONVERT),
                (2.0, ENTRY_READY),
            ]
            if roll < limit
        )
        status = fields.get("status", status)
        roll = rng.random()
        source_type = "5" if roll < 0.02 else "37" if roll < 0.05 else "1"
        source_type = fields.get("sourceType", source_type)
        if media_type == MEDIA_IMAGE:
            source_type = "1"

        # The old tool's tags: archived (copied to S3), placeholder (flavors replaced), or marked by hand.
        roll = rng.random()
        state_tags = []
        if media_type == MEDIA_VIDEO and source_type != "5" and self.archive_tags:
            if roll < 0.06:
                state_tags = ["archived_to_s3", "flavors_deleted"]
            elif roll < 0.16:
                state_tags = ["archived_to_s3"]
            elif roll < 0.19:
                state_tags = ["not_archived"]
        words = rng.sample(TAG_WORDS, rng.randint(0, 3))
        if bulk:
            words = ["bulk_upload"]
        tags = normalise_tags(fields.get("tags", ", ".join(words + state_tags)))
        placeholder = "flavors_deleted" in tags.split(", ") and "tags" not in fields

        if media_type == MEDIA_IMAGE:
            duration = 0
        elif media_type == MEDIA_AUDIO:
            duration = int(math.exp(rng.uniform(math.log(60), math.log(7200))))
        else:
            duration = int(math.exp(rng.uniform(math.log(30), math.log(3 * 3600))))
        if placeholder:
            duration = 8  # Kaltura re-probes replaced content: the entry now lasts as long as the placeholder.
        duration = fields.get("duration", duration)

        updated = min(now, created + rng.randint(60, 3600)) if rng.random() < 0.7 else rng.randint(created, now)
        if rng.random() < 0.3:
            last_played, plays, views = None, 0, 0
        else:
            last_played = created + int((now - created) * rng.random() ** 0.5)
            plays = 1 + int(rng.expovariate(1 / 20))
            views = plays + int(rng.expovariate(1 / 10))
        owner = fields["userId"] if "userId" in fields else self.pick_owner(rng)
        course, topic = rng.choice(COURSES), rng.choice(TOPICS)
        if bulk:
            name = f"Imported recording {rng.randint(1, 9999):04d}"
        elif media_type == MEDIA_IMAGE:
            name = f"{course} slide {rng.randint(1, 40)}"
        else:
            name = f"{course} {rng.choice(['Lecture', 'Seminar', 'Lab', 'Review'])} {rng.randint(1, 30)}: {topic}"
        entry_id = self.new_id(rng)
        entry: dict[str, Any] = {
            "id": entry_id,
            "name": name,
            "description": rng.choice(["", f"Recorded for {course}.", f"{topic}, part {rng.randint(1, 4)}."]),
            "partnerId": self.partner_id,
            "userId": owner,
            "creatorId": owner,
            "tags": tags,
            "adminTags": "",
            "categories": "",
            "categoriesIds": "",
            "status": status,
            "moderationStatus": 1 if status == ENTRY_PENDING else 6,
            "moderationCount": 0,
            "type": "1",
            "createdAt": created,
            "updatedAt": max(updated, created),
            "rank": 0.0,
            "totalRank": 0,
            "votes": 0,
            "partnerData": None,
            "downloadUrl": None,
            "licenseType": -1,
            "version": 100000,
            "thumbnailUrl": None,
            "accessControlId": 2_345_678,
            "startDate": None,
            "endDate": None,
            "referenceId": None,
            "replacingEntryId": None,
            "replacedEntryId": None,
            "replacementStatus": "0",
            "partnerSortValue": 0,
            "conversionProfileId": CONVERSION_PROFILE_ID,
            "redirectEntryId": None,
            "rootEntryId": entry_id,
            "parentEntryId": None,
            "entitledUsersEdit": "",
            "entitledUsersPublish": "",
            "entitledUsersView": "",
            "capabilities": "quiz.quiz" if media_type == MEDIA_VIDEO and rng.random() < 0.01 else "",
            "displayInSearch": 1,
            "plays": plays,
            "views": views,
            "lastPlayedAt": last_played,
            "width": 0,
            "height": 0,
            "duration": duration,
            "msDuration": duration * 1000 + (rng.randint(0, 999) if duration else 0),
            "durationType": duration_type(duration),
            "mediaType": media_type,
            "conversionQuality": str(CONVERSION_PROFILE_ID),
            "sourceType": source_type,
            "creditUserName": None,
            "creditUrl": None,
            "mediaDate": None,
            "dataUrl": None,
            "flavorParamsIds": "",
        }
        unknown = set(fields) - set(entry)
        if unknown:
            raise TypeError(f"not KalturaMediaEntry fields: {sorted(unknown)}")
        for key, value in fields.items():
            if key != "tags":
                entry[key] = value
        if entry["lastPlayedAt"] is None and "plays" not in fields:
            entry["plays"] = entry["views"] = 0

        # The conversion profile's transcodes, made again whenever new content arrives.
        entry["_profile"] = {MEDIA_IMAGE: [], MEDIA_AUDIO: AUDIO_PROFILE[:1]}.get(media_type, VIDEO_PROFILE[:3])
        entry["_thumb_version"] = 100_002
        # External (URL) entries and images have no flavor assets; half the NO_CONTENT entries never had any,
        # the other half still list the flavors someone deleted.
        has_media = source_type != "5" and media_type != MEDIA_IMAGE
        if status == ENTRY_NO_CONTENT:
            has_media = has_media and "status" not in fields and rng.random() < 0.5
        flavors: list[dict[str, Any]] = []
        if has_media:
            flavors = self._make_flavors(
                rng, entry, original_size, original_status, forced_original, transcode_count, placeholder
            )
        entry["_flavors"] = [f["id"] for f in flavors]
        originals = [f for f in flavors if f["isOriginal"]]
        if originals:
            entry["width"], entry["height"] = originals[0]["width"], originals[0]["height"]
        live = [f for f in flavors if f["status"] != FLAVOR_DELETED]
        entry["flavorParamsIds"] = ",".join(str(f["flavorParamsId"]) for f in live)
        if placeholder and originals:
            entry["updatedAt"] = max(entry["updatedAt"], min(originals[0]["updatedAt"] + 120, now))

        if category_ids is None:
            if len(self._category_ids) != len(self.categories):
                self._category_ids = [c["id"] for c in self.categories]
                self._leaf_ids = [c["id"] for c in self.categories if c["_leaf"]] or self._category_ids
            leaves, others = self._leaf_ids, self._category_ids
            picks = rng.choices([0, 1, 2, 3], [20, 50, 20, 10])[0]
            category_ids = []
            for _ in range(picks if others else 0):
                candidate = rng.choice(leaves if rng.random() < 0.8 else others)
                if candidate not in category_ids:
                    category_ids.append(candidate)
        return entry, flavors, list(category_ids)

    def _make_flavors(
        self,
        rng: random.Random,
        entry: dict,
        original_size: int | None,
        original_status: int | None,
        forced_original: bool,
        transcode_count: int | None,
        placeholder: bool,
    ) -> list[dict]:
        status, media_type = entry["status"], entry["mediaType"]
        duration = max(entry["duration"], 1)
        source_only = not forced_original and transcode_count is None and rng.random() < 0.02
        audio = media_type == MEDIA_AUDIO
        profile = AUDIO_PROFILE[: rng.randint(1, 2)] if audio else VIDEO_PROFILE[: rng.randint(2, 5)]
        if transcode_count is not None:
            profile = (AUDIO_PROFILE if media_type == MEDIA_AUDIO else VIDEO_PROFILE)[:transcode_count]
        if source_only:
            profile = []
        entry["_profile"] = list(profile)

        # Flavor anomalies the health check has to find, on otherwise READY entries.
        if not forced_original and status == ENTRY_READY:
            roll = rng.random()
            original_status = (
                None
                if roll < 0.015
                else FLAVOR_ERROR
                if roll < 0.025
                else FLAVOR_CONVERTING
                if roll < 0.03
                else FLAVOR_READY
            )
        transcode_status = FLAVOR_READY
        if status == ENTRY_ERROR_CONVERTING:
            transcode_status = FLAVOR_ERROR
        elif status == ENTRY_PRECONVERT:
            transcode_status = FLAVOR_CONVERTING
        elif status == ENTRY_IMPORT:
            original_status, profile = FLAVOR_IMPORTING, []
        if status in (ENTRY_DELETED, ENTRY_NO_CONTENT):
            original_status = transcode_status = FLAVOR_DELETED

        created = entry["createdAt"]
        if placeholder:
            replaced_at = rng.randint(created, max(created, self.now))
            source = content.generated(f"{self.seed}:placeholder", PLACEHOLDER_SIZE)
            width, height, version, updated = 640, 360, 2, replaced_at
        else:
            if original_size is not None:
                source_size = int(original_size)
            else:
                source_size = self.scaled(math.exp(rng.uniform(math.log(1e6), math.log(6e9))))
            width, height = rng.choice([(1920, 1080), (1280, 720), (1280, 720), (3840, 2160), (640, 480)])
            version, updated = 1, created + rng.randint(30, 600)
            source = None  # needs the flavor id
        if media_type == MEDIA_AUDIO:
            width = height = 0
        frame_rate = 0.0 if media_type == MEDIA_AUDIO else rng.choice([25.0, 29.97, 30.0])
        old = created < self.now - 3 * YEAR
        latest = max(self.now, created)  # nothing is updated in the future
        updated = min(updated, latest)
        flavors: list[dict[str, Any]] = []
        if original_status is not None:
            flavor_id = self.new_id(rng)
            if source is None:
                source = content.generated(f"{self.seed}:{flavor_id}:{version}", source_size)
            extension, container, codec = (
                ("mp3", "mpeg audio", "")
                if media_type == MEDIA_AUDIO
                else rng.choice(
                    [("mp4", "isom", "avc1"), ("mp4", "mp42", "avc1"), ("mov", "qt", "avc1"), ("mp4", "isom", "hev1")]
                )
            )
            flavors.append(
                self.flavor_record(
                    flavor_id,
                    entry,
                    0,
                    source,
                    original_status,
                    version,
                    created,
                    updated,
                    width=width,
                    height=height,
                    frame_rate=frame_rate,
                    duration=duration,
                    extension=extension,
                    container=container,
                    codec=codec,
                    web=source_only,
                    hide_exact_size=old and rng.random() < 0.14,
                )
            )
        source_bytes = content.size_of(source) if source else self.scaled(5e8)
        for params_id in profile:
            flavor_id = self.new_id(rng)
            size = self.transcode_size(params_id, source_bytes, duration)
            flavors.append(
                self.flavor_record(
                    flavor_id,
                    entry,
                    params_id,
                    content.generated(f"{self.seed}:{flavor_id}:1", size),
                    transcode_status,
                    1,
                    min(created + 300, latest),
                    min(updated + rng.randint(60, 1800), latest),
                    width=width,
                    height=height,
                    frame_rate=frame_rate,
                    duration=duration,
                    hide_exact_size=old and rng.random() < 0.14,
                )
            )
        if status in (ENTRY_DELETED, ENTRY_NO_CONTENT):
            for flavor in flavors:
                flavor["deletedAt"] = flavor["updatedAt"] = max(flavor["updatedAt"], entry["updatedAt"])
        return flavors

    @staticmethod
    def transcode_size(params_id: int, source_bytes: int, duration: int) -> int:
        _, _, _, video_kbps, audio_kbps = FLAVOR_PARAMS[params_id]
        source_kbps = source_bytes * 8 / 1000 / max(duration, 1)
        fraction = min(0.85, (video_kbps + audio_kbps) / max(source_kbps, 1))
        return max(1, int(source_bytes * max(fraction, 0.02)))

    def flavor_record(
        self,
        flavor_id: str,
        entry: dict,
        params_id: int,
        source: content.Content,
        status: int,
        version: int,
        created: int,
        updated: int,
        *,
        width: int,
        height: int,
        frame_rate: float,
        duration: int,
        extension: str = "mp4",
        container: str = "mp42",
        codec: str = "avc1",
        web: bool = True,
        hide_exact_size: bool = False,
    ) -> dict[str, Any]:
        size = content.size_of(source)
        name, p_width, p_height, video_kbps, audio_kbps = FLAVOR_PARAMS[params_id]
        original = params_id == 0
        if not original:
            if p_width and width:
                scale = min(1.0, p_height / max(height, 1))
                width, height = int(width * scale) // 2 * 2, int(height * scale) // 2 * 2
            elif not p_width:
                width = height = 0
        audio_only = entry["mediaType"] == MEDIA_AUDIO or (not original and not p_width)
        return {
            "id": flavor_id,
            "entryId": entry["id"],
            "partnerId": self.partner_id,
            "version": version,
            "size": round(size / 1024),
            "tags": ("source,web" if web else "source") if original else "mobile,web,mbr",
            "fileExt": extension,
            "createdAt": created,
            "updatedAt": max(updated, created),
            "deletedAt": None,
            "description": "",
            "actualSourceAssetParamsIds": None if original else "0",
            "sizeInBytes": 0 if hide_exact_size else size,
            "flavorParamsId": params_id,
            "width": width,
            "height": height,
            "bitrate": int(size * 8 / 1000 / max(duration, 1)),
            "frameRate": 0.0 if audio_only else frame_rate,
            "isOriginal": original,
            "isWeb": web if original else True,
            "containerFormat": container,
            "videoCodecId": "" if audio_only else codec,
            "status": status,
            "language": None,
            "label": None,
            "isDefault": None,
            "_content": source,
        }
