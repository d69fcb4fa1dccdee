"""Custody: plans (the dry run), the runner, batches, restores, invariants, holds, sidecars, fixity."""
