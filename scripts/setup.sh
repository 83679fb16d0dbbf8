#!/usr/bin/env bash
# Idempotent set-up shared by scripts/demo and scripts/test (with --test): Debian packages
# that are missing, then a virtualenv in .venv with the pinned dependencies and this package.
set -euo pipefail
cd "$(dirname "$0")/.."

pg=$(bash scripts/pg-major)
packages=("postgresql-$pg" "postgresql-$pg-pgsphere" libpq-dev libsystemd-dev pkg-config gcc python3-dev python3-venv)
# `--test`: what the test suite needs besides: a real Apache in front of the API, a browser,
# and STILTS (with its Java) to validate the IVOA services.
[ "${1:-}" = "--test" ] && packages+=(apache2 chromium chromium-driver stilts)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
$sudo bash scripts/pgsphere-compat

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating virtualenv .venv"
    "$python" -m venv .venv
fi
# Reinstall only when the pins or the package metadata changed.
stamp=.venv/.archive-installed
want=$(cat constraints.txt setup.cfg | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing Python dependencies (pinned in constraints.txt)"
    .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
    echo "$want" > "$stamp"
fi
