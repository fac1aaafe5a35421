#!/usr/bin/env bash
# Prerequisites of the netsetup lab on a fresh Debian (called by .ci/run after `apt-get update`).
# Needs root. Afterwards run: NETSETUP_REQUIRE_LAB=1 python -m pytest tests/lab -q
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends \
  wireguard-tools wireguard-go nftables iproute2 iputils-ping \
  kamailio kamailio-tls-modules openssh-server openssh-client dnsmasq-base openresolv \
  sip-tester sipsak iperf3 util-linux procps xrdp sudo

# Debian's openssh-server normally creates its privilege-separation directory at boot (tmpfiles.d);
# containers often skip that, and sshd refuses to start without it.
mkdir -p -m 0755 /run/sshd

# Headless Chromium opens diagnose's HTML report in a lab test; dig and nc are among the classic
# tools benchmarks/diagnose_bench.py compares diagnose with.
apt-get install -y --no-install-recommends chromium bind9-dnsutils netcat-openbsd

# wireguard-go needs the TUN device; create the node if the container has the module but no node.
if [ ! -c /dev/net/tun ]; then
  mkdir -p /dev/net
  mknod /dev/net/tun c 10 200
  chmod 0666 /dev/net/tun
fi

# Debian starts the packaged Kamailio and xrdp on install; the lab runs its own copies inside its
# namespaces only, so no SIP server is left listening in the host namespace.
for unit in kamailio xrdp xrdp-sesman; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
    systemctl stop "$unit" || true
  fi
done

for tool in ip nft wg wg-quick wireguard-go kamailio sshd ssh-keygen dnsmasq resolvconf ping ss sysctl unshare xrdp; do
  command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null \
    || { echo "lab-setup: $tool is missing" >&2; exit 1; }
done
# SIP over TLS needs Kamailio's tls.so (kamailio-tls-modules), which `kamailio` alone lacks
compgen -G '/usr/lib/*/kamailio/modules/tls.so' >/dev/null \
  || [ -f /usr/lib/kamailio/modules/tls.so ] \
  || { echo "lab-setup: Kamailio's tls.so is missing (kamailio-tls-modules)" >&2; exit 1; }
echo "lab-setup: ok"
