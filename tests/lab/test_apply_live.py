"""Issue 10, must-hold 1: `apply` of one new peer to a gateway with 200 live peers drops nobody.

In the lab, against the gateway namespace's real sshd, wg (wireguard-go) and nft: the 200 peers
are written at once with netsetup's library (peer files and preshared keys, as `provision`
leaves them) and put on the gateway by one `apply`. An assistant pings the office through the
tunnel, 20 packets a second, while `apply` adds one more peer: every request gets its reply
(ping itself counts them: a fixed count, so it waits for the last reply). The new peer gets a
working tunnel right after, and `plan` says in sync.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from netsetup.lab import Lab
from netsetup.lab.proc import ns_run

from . import apply_lab
from .apply_lab import Pinger, apply, explain, peer_keys, plan

pytestmark = pytest.mark.lab

LIVE_PEERS = 200
PING_INTERVAL = 0.05  # 20 packets a second


@pytest.fixture(scope="module")
def gateway_200(lab: Lab) -> Iterator[tuple[Lab, float]]:
    """The lab gateway with the agent and 200 peers put there by `apply` (the assistant who
    pings is one of them); yields the lab and how long that first apply took."""
    apply_lab.install_agent(lab)
    apply_lab.add_peers(lab, LIVE_PEERS - 1)
    lab.provision("pinger", "dedicated", sync=False)
    started = time.monotonic()
    result = apply(lab)
    took = time.monotonic() - started
    assert result.returncode == 0, explain(result)
    yield lab, took


def test_one_new_peer_while_an_assistant_pings_through_the_tunnel(
    gateway_200: tuple[Lab, float],
) -> None:
    lab, first_apply = gateway_200
    namespace, interface = lab.ns("gateway"), lab.gateway_interface
    assert len(peer_keys(namespace, interface)) >= LIVE_PEERS
    pinging = lab.connect("pinger", "dedicated", "home")
    assert pinging.ok, "the pinging assistant got no handshake"
    office_host = str(lab.profile().dns.servers[0])  # the office's DNS server answers ping
    lab.provision("newcomer", "dedicated", sync=False)
    sessions_before = apply_lab.sessions(namespace, interface)
    # the window covers several times the first apply (200 peers uploaded, one peer now), so
    # that ping is still sending when apply is done; ping then counts every reply itself
    window = max(30.0, 4 * first_apply)
    pinger = Pinger(lab.ns("home"), office_host, count=int(window / PING_INTERVAL))
    try:
        time.sleep(1.0)
        result = apply(lab)
        done = time.monotonic()
    except BaseException:
        pinger.stop()
        raise
    count = pinger.wait()
    assert result.returncode == 0, explain(result)
    assert done < pinger.sending_until, (
        f"apply took longer than the ping window ({window:.0f} s): nothing was measured after it"
    )
    assert count.transmitted == pinger.count
    assert count.received == count.transmitted, (
        f"{count.transmitted - count.received} of {count.transmitted} pings lost during apply"
    )
    # the gateway kept the live session (`wg syncconf`): its counters went on, nothing reset
    reset = apply_lab.sessions_reset(sessions_before, apply_lab.sessions(namespace, interface))
    assert sessions_before and reset == []

    newcomer = lab.connect("newcomer", "dedicated", "newcomer")
    assert newcomer.ok, "the new peer got no handshake after apply"
    assert not newcomer.provisioned  # apply, not the lab's own sync, put it on the gateway
    through = ns_run(lab.ns("newcomer"), ["ping", "-n", "-c", "3", "-W", "2", office_host])
    assert " 0% packet loss" in through.stdout

    in_sync = plan(lab)
    assert in_sync.returncode == 0, explain(in_sync)
