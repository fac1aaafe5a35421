#!/usr/bin/env bash
# Install everything netsetup needs on a fresh Debian machine (run as root):
# the Debian packages of the lab (WireGuard, nftables, Kamailio, OpenSSH, dnsmasq, ...) and
# netsetup itself with its Python dependencies and test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (it installs Debian packages): sudo bash scripts/install.sh" >&2
  exit 2
fi
export DEBIAN_FRONTEND=noninteractive
echo "== Debian packages"
apt-get update -qq
# faketime: CI runs the provisioning tests a year ahead (no test may depend on today's date)
apt-get install -y -qq --no-install-recommends python3 python3-pip python3-venv faketime >/dev/null
bash .ci/lab-setup.sh
echo "== Python packages"
# Debian's own Python refuses system-wide pip installs (PEP 668); a pyenv or venv Python does not.
python3 -m pip install -q -e '.[dev]' 2>/dev/null \
  || python3 -m pip install -q --break-system-packages -e '.[dev]'
python3 -m compileall -q netsetup >/dev/null
echo "install.sh: done. Try: netsetup --help"
