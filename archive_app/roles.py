"""The two roles, as Django groups. A migration creates them; ensure_role_groups repairs them."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.models import Group, Permission, User
from django.core.exceptions import PermissionDenied

LIBRARIANS = "Librarians"
ARCHIVE_ADMINS = "Archive admins"
ROLE_GROUPS = {"librarian": LIBRARIANS, "admin": ARCHIVE_ADMINS}

LIBRARIAN_PERMISSIONS = [
    ("archive_app", "browse_entries"),
    ("archive_app", "run_batches"),
    ("archive_app", "view_entry"),
    ("archive_app", "view_category"),
]
ADMIN_PERMISSIONS = LIBRARIAN_PERMISSIONS + [
    ("archive_app", "restore_entries"),
    ("archive_app", "manage_archive"),
    ("auth", "view_user"),
    ("auth", "add_user"),
    ("auth", "change_user"),
    ("auth", "view_group"),
    ("archive_app", "view_auditevent"),  # the admin's read-only list of events (0007_audit)
]
GROUP_PERMISSIONS = {LIBRARIANS: LIBRARIAN_PERMISSIONS, ARCHIVE_ADMINS: ADMIN_PERMISSIONS}


def ensure_role_groups() -> None:
    """Create the role groups with their permissions if they are missing (idempotent)."""
    for name, permissions in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        # Adds what is missing (a permission introduced later, too); never removes what an admin added.
        group.permissions.add(
            *[
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
                for app_label, codename in permissions
            ]
        )


def user_role(user: User) -> str | None:
    if not user.is_authenticated:
        return None
    if user.is_superuser or user.groups.filter(name=ARCHIVE_ADMINS).exists():
        return "admin"
    if user.groups.filter(name=LIBRARIANS).exists():
        return "librarian"
    return None


def assign_role(user: User, role: str | None) -> None:
    """Put the user in exactly the group of `role` (None: no role); admins may use the Django admin."""
    ensure_role_groups()
    user.groups.remove(*Group.objects.filter(name__in=ROLE_GROUPS.values()))
    if role:
        user.groups.add(Group.objects.get(name=ROLE_GROUPS[role]))
    user.is_staff = role == "admin"
    user.save(update_fields=["is_staff"])


MANAGE = "archive_app.manage_archive"


def archive_admin_required(view):
    """For views that only archive admins may use (the RQ dashboard): a signed-in user without the
    role gets 403; an anonymous one is sent to sign in by LoginRequiredMiddleware before this runs."""

    # updated=(): django-rq's attributes (its login_url, the admin's sign-in) are not carried over.
    @wraps(view, updated=())
    def guarded(request, *args, **kwargs):
        if not request.user.has_perm(MANAGE):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    guarded.archive_admin_only = True  # tests check every RQ view carries this guard
    return guarded
