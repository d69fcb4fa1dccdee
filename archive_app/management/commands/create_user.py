from __future__ import annotations

import secrets
import sys

from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction

from archive_app import audit
from archive_app.cli import CLI_USERNAME, command_origin, username_option
from archive_app.roles import ROLE_GROUPS, assign_role


class Command(BaseCommand):
    help = (
        "Create a user with a role (librarian or admin), or change an existing user's role. "
        "Without a password option a random password is generated and printed once."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=sorted(ROLE_GROUPS))
        parser.add_argument("--email", default="")
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
        source.add_argument("--password-file", help="read the password from this file")
        parser.add_argument("--keep-password", action="store_true", help="for an existing user: leave the password")

    def handle(self, *args, username, role, email, password_stdin, password_file, keep_password, **options):
        username = username_option("username", username)
        email = email.strip()
        if email:
            try:
                validate_email(email)
            except ValidationError:
                raise CommandError(f"--email: not an email address: {email[:80]!r}") from None
        given_password = self._read_password(password_stdin, password_file)
        generated = None
        with transaction.atomic():  # a refused password leaves no new user behind
            user, created = User.objects.get_or_create(username=username)
            if created or not keep_password:
                password = given_password
                if password is None:
                    password = generated = secrets.token_urlsafe(12)
                try:
                    validate_password(password, user)
                except ValidationError as exc:
                    raise CommandError("password rejected: " + " ".join(exc.messages)) from None
                user.set_password(password)
            if email:
                user.email = email
            user.save()
            assign_role(user, role)
            # Who gave the role: the command line, named by its OS user and host (the password never).
            audit.record(
                "user_role",
                username=CLI_USERNAME,
                dry_run=False,
                message=f"{username} is {role}",
                details={"user": username, "role": role, "created": created, **command_origin()},
            )
        verb = "created" if created else "updated"
        self.stdout.write(f"{verb} {role} {username}")
        if generated:
            self.stdout.write(f"password: {generated}")

    def _read_password(self, from_stdin: bool, path: str | None) -> str | None:
        if from_stdin:
            return sys.stdin.readline().rstrip("\n")
        if path:
            try:
                with open(path) as handle:
                    return handle.readline().rstrip("\n")
            except OSError as exc:
                raise CommandError(f"cannot read --password-file {path}: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise CommandError(f"cannot read --password-file {path}: not a text file") from None
        return None
