"""Adapters to what lies outside: Kaltura, S3, bulk SQL, redaction of secrets and personal data."""
