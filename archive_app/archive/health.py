"""The invariants every entry must keep (the old tool's, and ours), checked on live state.

Custody is checked on content identity, not on "a copy exists": the recorded copy must hold the content Kaltura
has (or had, behind a placeholder), and a placeholder tag must sit on the placeholder that was put in.
"""

from __future__ import annotations

from archive_app.archive.restores import placeholder_refusal
from archive_app.archive.runner import REPLACEMENT_FAILED
from archive_app.archive.workflow import LiveState, content_changed, sizes_agree
from archive_app.models import TAG_ARCHIVED, TAG_REPLACED, FlavorStatus

UNVERSIONED_BUCKET = (
    "the archive bucket has no versioning: an object written over from outside the app would be lost "
    "(turn versioning on; see README, Custody model)"
)


def entry_problems(state: LiveState, *, known_placeholder_sizes: frozenset[int] = frozenset()) -> list[str]:
    """What is wrong with this entry, or [] when it is healthy."""
    if state.entry is None:
        return ["archive copy recorded but the entry is gone from Kaltura"] if state.copy else []
    problems = []
    tags = set(state.tags)
    archived, replaced = TAG_ARCHIVED in tags, TAG_REPLACED in tags
    original = state.original
    if original is None:
        problems.append("no original flavor")
    elif original.status != FlavorStatus.READY:
        problems.append(f"original flavor not ready (status {original.status})")
    if state.entry.replacement_status == REPLACEMENT_FAILED:
        problems.append("Kaltura's last replacement of the content failed; cancel it in the KMC")
    if state.s3 is not None and not archived:
        problems.append(f"S3 object exists but the entry lacks tag {TAG_ARCHIVED}")
    if archived and state.s3 is None:
        problems.append(f"tagged {TAG_ARCHIVED} but no S3 object")
    if replaced and not archived:
        problems.append(f"tagged {TAG_REPLACED} without {TAG_ARCHIVED}")
    if state.copy is not None and state.s3 is None:
        problems.append("archive copy recorded but the S3 object is missing")
    if state.copy is not None and state.s3 is not None:
        if state.s3.size != state.copy.size:
            problems.append(f"S3 object is {state.s3.size} bytes, the recorded copy {state.copy.size}")
        s3_sha = getattr(state.s3, "sha256", None)
        if s3_sha and state.copy.sha256 and s3_sha.lower() != state.copy.sha256.lower():
            problems.append("the S3 object's SHA-256 differs from the recorded copy's")
    if state.copy is not None and any(state.copy.size == size for size in known_placeholder_sizes):
        problems.append("the recorded copy has a placeholder's size: check that it is not a copy of a placeholder")
    if replaced and (state.copy is None or not state.copy.sha256):
        problems.append(f"tagged {TAG_REPLACED} but no copy with a SHA-256 is recorded")
    if replaced and original is not None:
        reason = placeholder_refusal(state, known_sizes=known_placeholder_sizes)
        if reason:
            problems.append(reason.split(". Nothing was changed")[0])
    if archived and not replaced and content_changed(state) and state.copy.flavor_version:
        if any(sizes_agree(size, original) for size in known_placeholder_sizes):
            problems.append(
                f"holds a placeholder without the tag {TAG_REPLACED} (a replacement finished after "
                "its job stopped): retry the batch item"
            )
        else:
            problems.append(f"content replaced in Kaltura after its copy ({content_changed(state)}): archive it again")
    if original is not None and state.s3 is not None and state.copy is None:
        # No record of ours (the old tool's archive): only sizes can be compared.
        same_size = sizes_agree(state.s3.size, original)
        if archived and not replaced and not same_size:
            problems.append("archived but the S3 size does not match the original flavor")
    if original is not None and state.s3 is not None and replaced and sizes_agree(state.s3.size, original):
        problems.append("replaced but the original flavor still has the archived size")
    return problems
