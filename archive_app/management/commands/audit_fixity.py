"""audit_fixity: check every archive copy's S3 version, and re-hash a restored sample (dry run unless --execute)."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from archive_app.archive import fixity
from archive_app.lib.storage import StorageError

GB = 1024**3


class Command(BaseCommand):
    help = (
        "Fixity audit: one HEAD per recorded copy (no restore) compares its S3 version, size, storage class and "
        "CRC32 with the record; then the sample re-hash restores the copies longest unread, within the monthly "
        "byte budget, and compares their SHA-256. Without --execute nothing is recorded on the copies and no "
        "restore is requested (the audit's HEADs are still made, and logged as a dry run)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--execute", action="store_true", help="record the results, request the restores")
        parser.add_argument("--no-rehash", action="store_true", help="the audit only")
        parser.add_argument("--rehash-only", action="store_true", help="the sample re-hash only")
        parser.add_argument("--user", default="cli", help="who the audit log names (default: cli)")

    def handle(self, *args, **options):
        if options["no_rehash"] and options["rehash_only"]:
            raise CommandError("--no-rehash and --rehash-only exclude each other")
        execute, username = options["execute"], options["user"]
        failed = 0
        try:
            if not options["rehash_only"]:
                failed += self.audit(execute, username)
            if not options["no_rehash"]:
                failed += self.rehash(execute, username)
        except (ImproperlyConfigured, StorageError) as exc:
            raise CommandError(str(exc)) from None
        if not execute:
            self.stdout.write("dry run: nothing was recorded and no restore requested; add --execute to do it.")
        if failed:
            raise CommandError(f"{failed} copies failed their fixity check; see the messages above")

    def audit(self, execute: bool, username: str) -> int:
        summary = fixity.audit_fixity(execute=execute, username=username)
        for result in summary.failures:
            copy = result.copy
            self.stderr.write(f"{copy.entry_id}\ts3://{copy.bucket}/{copy.key}\tFAILED: {'; '.join(result.problems)}")
        self.stdout.write(
            f"audit: {summary.checked} copies checked, {summary.passed} passed, {summary.failed} failed, "
            f"{summary.requests} S3 requests"
        )
        return summary.failed

    def rehash(self, execute: bool, username: str) -> int:
        plan, summary = fixity.rehash_sample(execute=execute, username=username)
        left = max(0, plan.budget_bytes - plan.used_bytes)
        self.stdout.write(
            f"re-hash: {len(plan.chosen)} copies chosen ({plan.chosen_bytes / GB:.2f} GB, restore cost "
            f"${plan.cost:.2f}), {len(plan.pending)} restores pending; budget {plan.budget_bytes / GB:.2f} GB this "
            f"month, {left / GB:.2f} GB left before this run"
        )
        if plan.budget_short:
            self.stdout.write(
                f"warning: {plan.due_copies} copies ({plan.due_bytes / GB:.2f} GB) are due for a re-hash, more than "
                "the budget allows: raise FIXITY_REHASH_BYTES_PER_MONTH or they go longer than their period"
            )
        if execute:
            self.stdout.write(
                f"re-hash: {summary.passed} matched, {summary.failed} failed, {summary.requested} restores requested, "
                f"{summary.waiting} waiting on Glacier"
            )
        for result in summary.failures:
            copy = result.copy
            self.stderr.write(
                f"{copy.entry_id}\ts3://{copy.bucket}/{copy.key}\tRE-HASH FAILED: {'; '.join(result.problems)}"
            )
        return summary.failed
