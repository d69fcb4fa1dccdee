"""Exemptions: entries tagged archive_exempt, and excluded categories (with their sub-categories).

The tag lives in Kaltura, so every job sees it when it re-reads the entry; the mirror is
updated too, for the exemptions page. Excluded categories come from the setting
ARCHIVE_EXEMPT_CATEGORY_IDS and from the ExcludedCategory table (managed on the page);
both take in every sub-category, resolved through the mirrored category tree.
"""

from __future__ import annotations

from django.conf import settings

from archive_app import audit
from archive_app.lib.kaltura import Kaltura
from archive_app.models import TAG_EXEMPT, Category, Entry, ExcludedCategory, split_tags


def excluded_roots() -> dict[int, str]:
    """Excluded category id -> where the exclusion comes from ("setting" or "page")."""
    roots = {int(c): "setting" for c in settings.ARCHIVE_EXEMPT_CATEGORY_IDS}
    for category_id in ExcludedCategory.objects.values_list("category_id", flat=True):
        roots.setdefault(category_id, "page")
    return roots


def excluded_category_ids() -> frozenset[int]:
    """Every excluded category id, sub-categories included."""
    roots = set(excluded_roots())
    if not roots:
        return frozenset()
    prefixes = list(Category.objects.filter(id__in=roots).values_list("full_ids", flat=True))
    found = set(roots)
    for pk, full_ids in Category.objects.values_list("id", "full_ids"):
        # "1>2" must not take in "1>23": a sub-category's path continues after a ">".
        if any(full_ids.startswith(prefix + ">") for prefix in prefixes):
            found.add(pk)
    return frozenset(found)


def _write_tags(kaltura: Kaltura, entry_id: str, *, add: str = "", remove: str = "") -> tuple[str, str]:
    """Add or remove one tag on the live entry (tags read right before writing); returns (before, after)."""
    current = split_tags(kaltura.get_entry(entry_id).tags)
    wanted = [t for t in current if t.lower() != remove] if remove else list(current)
    if add and add not in {t.lower() for t in wanted}:
        wanted.append(add)
    before = ", ".join(current)
    if wanted == current:
        return before, before
    entry = kaltura.set_tags(entry_id, wanted)
    mirror = Entry.objects.filter(id=entry_id).first()
    if mirror is not None:
        mirror.set_tags(entry.tags)
        mirror.save(update_fields=["tags", "tags_search", "archive_state"])
    return before, entry.tags


def entry_exempt(
    entry_id: str, *, kaltura: Kaltura, user=None, username: str | None = None, batch=None, reason: str = ""
) -> None:
    """Tag the entry archive_exempt in Kaltura, and audit it."""
    before, after = _write_tags(kaltura, entry_id, add=TAG_EXEMPT)
    audit.record(
        "exempt_entry",
        user=user,
        username=username,
        entry_id=entry_id,
        batch=batch,
        dry_run=False,
        message=reason,
        details={"tags_before": before, "tags_after": after},
    )


def entry_unexempt(entry_id: str, *, kaltura: Kaltura, user) -> None:
    before, after = _write_tags(kaltura, entry_id, remove=TAG_EXEMPT)
    audit.record(
        "unexempt_entry",
        user=user,
        entry_id=entry_id,
        dry_run=False,
        details={"tags_before": before, "tags_after": after},
    )


def category_exclude(category_id: int, *, user, reason: str = "") -> ExcludedCategory:
    excluded, created = ExcludedCategory.objects.get_or_create(
        category_id=category_id, defaults={"created_by": user, "reason": reason[:500]}
    )
    audit.record(
        "exclude_category",
        user=user,
        dry_run=False,
        message=reason,
        details={"category_id": category_id, "already": not created},
    )
    return excluded


def category_include(category_id: int, *, user) -> bool:
    deleted, _ = ExcludedCategory.objects.filter(category_id=category_id).delete()
    audit.record("include_category", user=user, dry_run=False, details={"category_id": category_id})
    return bool(deleted)


def exempt_entries():
    """The mirror's entries carrying the exemption tag."""
    return Entry.objects.filter(tags_search__contains=f",{TAG_EXEMPT},", gone=False).order_by("name", "id")
