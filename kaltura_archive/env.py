"""Reading settings from the environment, with messages that name the variable.

Every helper raises ImproperlyConfigured with the variable's name, so `manage.py`
can print one line instead of a traceback. Values of secrets never appear in
messages.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


def envstr(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def envbool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false (1/0, yes/no), got {raw!r}")


def envint(name: str, default: int | None = None, minimum: int | None = None) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def envfloat(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


def envchoice(name: str, choices: list[str], default: str) -> str:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = raw.upper()
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def envsecret(name: str, default: str = "") -> str:
    """A secret from NAME, or from the file named by NAME_FILE (Docker/systemd style)."""
    file_var = f"{name}_FILE"
    path = os.environ.get(file_var, "").strip()
    if path:
        if os.environ.get(name):
            raise ImproperlyConfigured(f"set {name} or {file_var}, not both")
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{file_var}: cannot read {path}: {exc.strerror}") from None
    return os.environ.get(name, default).strip()


def envlist(name: str, default: str = "", sep: str = ",") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(sep) if item.strip()]
