"""The invariants every entry must keep (the old tool's, and ours), checked on live state."""

from __future__ import annotations

from archive_app.models import TAG_ARCHIVED, TAG_REPLACED, FlavorStatus
from archive_app.workflow import LiveState, sizes_agree


def entry_problems(state: LiveState) -> list[str]:
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
    if state.s3 is not None and not archived:
        problems.append(f"S3 object exists but the entry lacks tag {TAG_ARCHIVED}")
    if archived and state.s3 is None:
        problems.append(f"tagged {TAG_ARCHIVED} but no S3 object")
    if replaced and not archived:
        problems.append(f"tagged {TAG_REPLACED} without {TAG_ARCHIVED}")
    if state.copy is not None and state.s3 is None:
        problems.append("archive copy recorded but the S3 object is missing")
    if state.copy is not None and state.s3 is not None and state.s3.size != state.copy.size:
        problems.append(f"S3 object is {state.s3.size} bytes, the recorded copy {state.copy.size}")
    if replaced and (state.copy is None or not state.copy.sha256):
        problems.append(f"tagged {TAG_REPLACED} but no copy with a SHA-256 is recorded")
    if original is not None and state.s3 is not None:
        same_size = sizes_agree(state.s3.size, original)
        if archived and not replaced and not same_size:
            problems.append("archived but the S3 size does not match the original flavor")
        if replaced and same_size:
            problems.append("replaced but the original flavor still has the archived size")
    return problems
