#!/usr/bin/env bash
# Installs the Debian packages twinscan needs, only those missing. Idempotent.
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "twinscan setup: missing system packages: ${missing[*]} (run 'make setup' as root, or apt-get install them)" >&2
  exit 1
fi
echo "twinscan setup: apt-get install ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
