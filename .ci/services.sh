#!/usr/bin/env bash
# Install what the store tests' servers need, on a fresh Debian machine or an old one
# (idempotent: only what is missing is installed). The tests start the servers themselves
# (tests/services.py), on 127.0.0.1 and free ports:
#   - PostgreSQL from Debian's package: initdb into a temp dir + pg_ctl, as user `postgres`
#     when run as root;
#   - the Firestore emulator: npm's @firestore-emulator/server 0.3.15 (pinned in
#     .ci/package.json, installed into .ci/node_modules) behind .ci/firestore-emulator.mjs.
# Needs root (or sudo) only when a Debian package is missing.
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "services: installing ${missing[*]} (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# PostgreSQL refuses to run as root; the tests switch to this user when run as root.
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

want=$(node -p "require('./package.json').dependencies['@firestore-emulator/server']")
have=$(node -p "try { require('./node_modules/@firestore-emulator/server/package.json').version } catch { '' }")
if [ "$have" != "$want" ]; then
  echo "services: installing @firestore-emulator/server $want (npm, into .ci/node_modules)"
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  else
    npm install --no-audit --no-fund --loglevel=error
  fi
fi

# Smoke check: the emulator binds loopback and answers with its port.
line=$(node firestore-emulator.mjs --check 2>&1 | head -n 1)
case "$line" in
  "listening 127.0.0.1:"*) ;;
  *) echo "services: the Firestore emulator did not start: $line" >&2; exit 1 ;;
esac
initdb=$(compgen -G "/usr/lib/postgresql/*/bin/initdb" | sort -V | tail -n 1)
echo "services ready: $("$initdb" --version), Firestore emulator $want"
