"""Policies that archive on a schedule, the notices owners get, and their exemptions."""
