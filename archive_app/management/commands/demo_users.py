from __future__ import annotations

import secrets

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand

from archive_app.roles import assign_role

DEMO_USERS = {"librarian": "librarian", "admin": "admin"}


class Command(BaseCommand):
    help = "Create (or reset) the demo users with fresh random passwords and print their logins."

    def handle(self, *args, **options):
        self.stdout.write("Demo logins (new passwords every start):")
        for username, role in DEMO_USERS.items():
            user, _ = User.objects.get_or_create(username=username)
            password = secrets.token_urlsafe(9)
            user.set_password(password)
            user.save()
            assign_role(user, role)
            self.stdout.write(f"  {role:<10} user: {username:<10} password: {password}")
