"""The two roles, as Django groups. The groups are created by a migration."""

from __future__ import annotations

from django.contrib.auth.models import Group, User

LIBRARIANS = "Librarians"
ARCHIVE_ADMINS = "Archive admins"
ROLE_GROUPS = {"librarian": LIBRARIANS, "admin": ARCHIVE_ADMINS}


def user_role(user: User) -> str | None:
    if not user.is_authenticated:
        return None
    if user.is_superuser or user.groups.filter(name=ARCHIVE_ADMINS).exists():
        return "admin"
    if user.groups.filter(name=LIBRARIANS).exists():
        return "librarian"
    return None


def assign_role(user: User, role: str) -> None:
    """Put the user in exactly the group of `role`; admins may use the Django admin."""
    group = Group.objects.get(name=ROLE_GROUPS[role])
    user.groups.remove(*Group.objects.filter(name__in=ROLE_GROUPS.values()))
    user.groups.add(group)
    user.is_staff = role == "admin"
    user.save(update_fields=["is_staff"])
