"""From an identity provider's answer to a signed-in user: the account, its role, the audit events.

Both protocols end in `sign_in_from_idp`; a refusal anywhere ends in `refused_page`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import user_logged_in, user_logged_out
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from archive_app import audit
from archive_app.models import AuditEvent
from archive_app.roles import ROLE_GROUPS, assign_role, user_role

log = logging.getLogger(__name__)

SESSION_KEY = "sso_identity"  # protocol, IdP and subject of the session's sign-in, for the sign-out event


@dataclass
class IdpIdentity:
    """What an IdP said about a person, after the protocol library verified it."""

    protocol: str  # "saml" or "oidc"
    idp: str  # the IdP's entity id or issuer
    subject: str  # its NameID or `sub`
    username: str
    email: str = ""
    name: str = ""
    role_values: list[str] = field(default_factory=list)

    def audit_details(self) -> dict:
        # The subject and the IdP only: never the assertion, a token or the attributes themselves.
        return {"protocol": self.protocol, "idp": self.idp, "subject": self.subject}


class SignInRefused(Exception):
    """An IdP's answer that is not let in; the message is for the person on the refusal page."""


def role_from_idp(values: list[str]) -> str | None:
    """The role the IdP's values map to: archive admin wins over librarian; nothing mapped, no role."""
    given = set(values)
    if given & set(settings.SSO_ADMIN_VALUES):
        return "admin"
    if given & set(settings.SSO_LIBRARIAN_VALUES):
        return "librarian"
    return None


def is_break_glass(username: str) -> bool:
    return username in settings.SSO_BREAK_GLASS_USERS


def sign_in_from_idp(request: HttpRequest, identity: IdpIdentity) -> User:
    """The user for a verified identity, created on first sign-in, with name, e-mail and role as the IdP
    says now (a value removed at the IdP removes the role here). The caller logs the user in.

    Before: the protocol library checked signature, audience, lifetime and replay.
    After: the user exists, is active and holds exactly the mapped role; each change of role is audited.
    """
    username = identity.username.strip()
    if not username:
        raise SignInRefused("The identity provider sent no username for you.")
    if len(username) > 150:
        raise SignInRefused("The identity provider's username for you is longer than 150 characters.")
    if is_break_glass(username):
        # A break-glass account is local on purpose: an IdP must never be able to sign in as it.
        raise SignInRefused(f"{username} is a local break-glass account; it cannot sign in through an IdP.")
    with transaction.atomic():
        user, created = User.objects.select_for_update().get_or_create(username=username)
        if created:
            user.set_unusable_password()
        elif user.has_usable_password():
            # Else an IdP user whose name happens to be a local account's (a `sub` of "admin") would take it over.
            raise SignInRefused(
                f"{username} is a local account with a password; an archive admin must remove its password "
                "(or the account) before it can sign in through the identity provider."
            )
        if not user.is_active:
            raise SignInRefused("Your account here is deactivated; ask an archive admin.")
        user.email = identity.email[:254] or user.email
        if identity.name:
            # displayName is one string; Django's full name is first + last, so it all goes in first_name.
            user.first_name, user.last_name = identity.name[:150], ""
        user.save()
        _apply_role(user, role_from_idp(identity.role_values), identity)
    # Read by the sign-in event below; an attribute of our own on the request.
    request.sso_identity = identity  # type: ignore[attr-defined]  # not one HttpRequest declares
    return user


def _apply_role(user: User, role: str | None, identity: IdpIdentity) -> None:
    before = user_role(user) if not user.is_superuser else None
    if user.is_superuser or role == before:
        return  # a superuser's powers are not the IdP's to give or take
    if before:
        audit.record(
            "sso_role_removed",
            user=user,
            dry_run=False,
            message=f"{ROLE_GROUPS[before]} removed: the identity provider no longer maps to it",
            details={**identity.audit_details(), "role": before},
        )
    assign_role(user, role)
    if role:
        audit.record(
            "sso_role_granted",
            user=user,
            dry_run=False,
            message=f"{ROLE_GROUPS[role]} granted by the identity provider",
            details={**identity.audit_details(), "role": role},
        )


def refused_page(request: HttpRequest, *, protocol: str, reason: str, idp: str = "", status: int = 403) -> HttpResponse:
    """The page for a refused sign-in, and its audit event (the reason, never the assertion or token).
    The IdP's subject and username are known when the answer was verified but then refused."""
    log.warning("%s sign-in refused: %s", protocol, reason)
    identity = getattr(request, "sso_attempt", None)
    subject = identity.subject if identity else ""
    audit.record(
        "sso_sign_in_refused",
        username=(identity.username[:150] if identity else "") or "anonymous",
        dry_run=False,
        outcome=AuditEvent.Outcome.REFUSED,
        message=reason,
        details={"protocol": protocol, "idp": identity.idp if identity else idp, "subject": subject},
    )
    return render(request, "archive_app/sso_refused.html", {"reason": reason}, status=status)


class LocalPasswordBackend(ModelBackend):
    """Django's password check, unless local sign-in is off: then only the break-glass accounts may use it."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        username = username if username is not None else kwargs.get(User.USERNAME_FIELD)
        if username is not None and not settings.SSO_LOCAL_SIGN_IN and not is_break_glass(username):
            if request is not None:
                request.local_sign_in_refused = True
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


@receiver(user_logged_in)
def _record_sign_in(sender, request, user, **kwargs):
    if request is None or request.method is None:
        return  # the test client's force_login (a bare HttpRequest): nobody signed in
    identity = getattr(request, "sso_identity", None)
    details = identity.audit_details() if identity else {"protocol": "local"}
    request.session[SESSION_KEY] = details
    audit.record("sign_in", user=user, dry_run=False, message=f"signed in ({details['protocol']})", details=details)


@receiver(user_logged_out)
def _record_sign_out(sender, request, user, **kwargs):
    details = request.session.get(SESSION_KEY) if request is not None else None
    if user is None or details is None:
        return  # not a session that signed in through a form or an IdP

    audit.record("sign_out", user=user, dry_run=False, message="signed out", details=details)
