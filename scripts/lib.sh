# Shared set-up steps for scripts/demo, scripts/test and .ci/run.
# Each step checks first and only installs or starts what is missing.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=""
apt_install() {
  command -v apt-get >/dev/null || die "please install: $* (no apt-get on this machine)"
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  say "installing $* with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# The virtualenv, reinstalled whenever a requirements file changes.
ensure_venv() {
  local requirements="$ROOT/requirements-dev.txt"
  local stamp="$VENV/.requirements.sha256"
  local wanted
  wanted="$(cat "$ROOT/requirements.txt" "$requirements" "$ROOT/sim/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [ -x "$PY" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
    return
  fi
  command -v python3 >/dev/null || apt_install python3
  if [ ! -x "$PY" ]; then
    say "creating the virtualenv in .venv"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      apt_install python3-venv
      python3 -m venv "$VENV"
    fi
  fi
  say "installing Python requirements (first run takes a few minutes)"
  # (Some machines' pip configuration names local indexes that may not exist; hide that noise.)
  # (From the root: pip reads the requirements' "-e ./sim" relative to the working directory.)
  if ! (cd "$ROOT" && "$PY" -m pip install --quiet --disable-pip-version-check -r "$requirements") 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }; then
    die "pip install failed"
  fi
  echo "$wanted" > "$stamp"
}

# Debian's chromium, for the browser tests (never Playwright's own download).
ensure_chromium() {
  [ -x "${CHROMIUM:-/usr/bin/chromium}" ] || apt_install chromium
}

# pysaml2 checks and makes XML signatures with Debian's xmlsec1 (SAML sign-in and its tests).
ensure_xmlsec1() {
  command -v xmlsec1 >/dev/null || apt_install xmlsec1
}

ensure_redis_server_binary() {
  command -v redis-server >/dev/null || apt_install redis-server
}

redis_answers() {
  "$PY" - "$1" <<'PYEOF' 2>/dev/null
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PYEOF
}

port_is_free() {
  "$PY" - "$1" <<'PYEOF'
import socket, sys
with socket.socket() as s:
    try:
        s.bind(("127.0.0.1", int(sys.argv[1])))
    except OSError:
        sys.exit(1)
PYEOF
}

wait_for_http() {
  local url="$1" what="$2" tries=150
  until "$PY" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$url" 2>/dev/null; do
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || die "$what did not start (no answer at $url)"
    sleep 0.2
  done
}

ensure_postgres_running() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return; fi
  if ! command -v pg_ctlcluster >/dev/null; then
    apt_install postgresql
  fi
  say "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
  local tries=50
  until pg_isready -q -h 127.0.0.1 -p 5432; do
    tries=$((tries - 1)); [ "$tries" -gt 0 ] || die "PostgreSQL did not start"; sleep 0.2
  done
}
