"""voice.quality, lan.gateway and rtp.ports as checks: against a reflector on 127.0.0.1 (real UDP,
the real wire format), and their verdicts on figures worked out by hand."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import random
from collections.abc import Iterator

import pytest

from netsetup.diagnose.checks.voice import (
    LanGatewayCheck,
    RtpPortsCheck,
    VoiceQualityCheck,
    sample_ports,
)
from netsetup.diagnose.context import DiagnoseContext, DiagnoseOptions
from netsetup.diagnose.platform.routes import next_hop, parse_proc_route, parse_proc_route6
from netsetup.diagnose.result import Owner, Status
from netsetup.diagnose.voice import emodel
from netsetup.diagnose.voice.metrics import HopMetrics, VoiceMetrics
from netsetup.diagnose.voice.verdict import first_hop_blamed, judge_hop, judge_voice
from netsetup.keys import SecretKey
from netsetup.responder import office_wire as w

from .helpers import config_text, context, view
from .voice_reflector import TOKEN, Reflector


def _ctx(reflector: Reflector | None, long: bool = False) -> DiagnoseContext:
    base = context(config_text(["sip=127.0.0.1 rtp=10000-20000"]), deadline_s=60)
    base.options = DiagnoseOptions(deadline_s=60, long=long)
    if reflector is None:
        return base
    public = base64.b64decode(base.config.client_public_key() or "")
    key = w.peer_key(TOKEN, public)
    reflector.key, reflector.tag = key, w.key_tag(public)
    info = dataclasses.replace(
        base.config.info,
        responder=reflector.address,
        responder_key=SecretKey(base64.b64encode(key).decode()),
    )
    base.config = base.config.with_info(info)
    return base


@pytest.fixture
def reflectors() -> Iterator[list[Reflector]]:
    made: list[Reflector] = []
    yield made
    for r in made:
        r.close()


def test_voice_quality_passes_on_a_clean_path(reflectors: list[Reflector]) -> None:
    reflectors.append(Reflector())
    ctx = _ctx(reflectors[0])
    outcome = VoiceQualityCheck().run(view(ctx, 8))
    assert outcome.status is Status.passed, outcome.summary
    m = outcome.metrics
    assert isinstance(m["mos"], float) and m["mos"] >= 4.0
    assert m["probes"] == 150 and m["loss_up_pct"] == 0.0 and m["loss_down_pct"] == 0.0
    assert m["codec"] == "g711" and m["plc"] is True
    assert "calls should sound clear" in outcome.summary
    # plain words: the figures a person understands, the formula left to the report's section
    assert "MOS 4.4 of 5 (estimate); 0 % of your voice lost" in outcome.summary
    assert "round trip" in outcome.summary
    assert "E-model" not in outcome.summary and "Bpl" not in outcome.summary
    assert "G.107" in str(m["estimate"])
    for name in ("r_factor", "rtt_ms", "jitter_up_ms", "jitter_down_ms", "one_way_ms"):
        assert isinstance(m[name], float), name
    key = ctx.info.responder_key
    assert key is not None and key.reveal() not in repr(outcome)


def test_voice_quality_fails_on_heavy_loss_up_and_names_the_provider(
    reflectors: list[Reflector],
) -> None:
    reflectors.append(Reflector(drop_in=lambda seq: seq % 5 == 0))  # 20 % on the way up
    outcome = VoiceQualityCheck().run(view(_ctx(reflectors[0]), 8))
    assert outcome.status is Status.fail
    assert "expect choppy audio" in outcome.summary
    m = outcome.metrics
    assert m["loss_up_pct"] == pytest.approx(20.0) and m["loss_down_pct"] == 0.0
    assert isinstance(m["mos"], float) and m["mos"] < 3.0
    # the home router was not pinged (the Endpoint is this computer): the loss is not put
    # "beyond your home network"; a cable first, then the provider, then IT
    assert "somewhere between this computer and the office" in outcome.summary
    assert "upload" in outcome.summary and "beyond" not in outcome.summary
    assert outcome.owner is Owner.assistant and outcome.fix
    fix = outcome.fix
    assert fix.index("cable") < fix.index("internet provider") < fix.index("IT")


def test_voice_quality_skips_without_a_responder() -> None:
    ctx = _ctx(None)
    outcome = VoiceQualityCheck().run(view(ctx, 3))
    assert outcome.status is Status.skip
    assert "responder" in outcome.summary


def test_a_config_without_a_responder_key_warns_for_it_with_rotate() -> None:
    ctx = _ctx(None)  # an older config: the responder named, no responder-key
    info = dataclasses.replace(ctx.config.info, responder=("127.0.0.1", 4789))
    ctx.config = ctx.config.with_info(info)
    assert ctx.info.responder_key is None
    outcome = VoiceQualityCheck().run(view(ctx, 3))
    assert outcome.status is Status.warn and outcome.owner is Owner.it  # calls not measured
    assert "calls were not measured" in outcome.summary and "responder key" in outcome.summary
    assert outcome.fix and "netsetup rotate" in outcome.fix
    assert "provision" not in outcome.fix  # provision refuses an existing name


def test_a_silent_responder_is_unknown_for_it(reflectors: list[Reflector]) -> None:
    reflectors.append(Reflector())
    ctx = _ctx(reflectors[0])
    reflectors[0].key = bytes(32)  # the responder does not know this peer's key
    outcome = VoiceQualityCheck().run(view(ctx, 8))
    assert outcome.status is Status.unknown and outcome.owner is Owner.it
    assert "does not answer" in outcome.summary


def test_lan_gateway_skips_when_no_router_is_between(reflectors: list[Reflector]) -> None:
    # the Endpoint is 127.0.0.1 (this computer): no home router to ping, and none is pinged
    reflectors.append(Reflector())
    outcome = LanGatewayCheck().run(view(_ctx(reflectors[0]), 8))
    assert outcome.status is Status.skip
    assert "this computer itself" in outcome.summary


def test_rtp_ports_skip_when_the_responder_has_no_media_address(
    reflectors: list[Reflector],
) -> None:
    reflectors.append(Reflector())
    reflectors[0].media = ()
    outcome = RtpPortsCheck().run(view(_ctx(reflectors[0]), 5))
    assert outcome.status is Status.skip and "media address" in outcome.summary


def test_sample_ports() -> None:
    ports = sample_ports(10000, 20000, random.Random(1))
    assert len(ports) == 8 and ports[0] == 10000 and ports[-1] == 20000
    assert len(set(ports)) == 8 and all(10000 <= p <= 20000 for p in ports)
    assert sample_ports(5000, 5003) == [5000, 5001, 5002, 5003]


def test_checks_get_a_longer_budget_with_long() -> None:
    check = VoiceQualityCheck()
    assert check.budget(True) > 22 > check.budget(False) >= 5  # 1,100 probes vs 150
    assert check.phase == LanGatewayCheck.phase == RtpPortsCheck.phase == 1


# -- verdicts on figures worked out by hand ---------------------------------------------------


def _voice(loss_up: float, loss_down: float = 0.0, jitter: float = 1.0) -> VoiceMetrics:
    return VoiceMetrics(
        sent=1000,
        answered=1000,
        rtt_ms=20.0,
        rtt_mean_ms=20.0,
        rtt_min_ms=19.0,
        rtt_max_ms=25.0,
        jitter_up_ms=jitter,
        jitter_down_ms=jitter,
        loss_pct=loss_up + loss_down,
        loss_up_pct=loss_up,
        loss_down_pct=loss_down,
        burst_windows=0,
        windows=100,
        longest_loss_run=1,
        burst_ratio=1.0,
        reordered=0,
    )


def _hop(loss: float, jitter: float = 0.5) -> HopMetrics:
    return HopMetrics(1000, int(1000 - loss * 10), 2.0, jitter, loss, 1)


def _est(m: VoiceMetrics) -> emodel.Estimate:
    g711 = emodel.codec("g711")
    return emodel.estimate(g711, True, m.rtt_ms or 0, m.worse_jitter_ms, m.worse_loss_pct)


def test_first_hop_blame_rules() -> None:
    assert first_hop_blamed(_hop(6.0), _voice(10.0))  # at least half of the call's loss
    assert not first_hop_blamed(_hop(4.0), _voice(10.0))  # less than half: further away
    assert not first_hop_blamed(_hop(0.5), _voice(0.6))  # under 1 %: nothing to blame
    assert first_hop_blamed(_hop(0.0, jitter=12.0), _voice(0.0))  # Wi-Fi jitter, if degraded
    assert not first_hop_blamed(_hop(0.0, jitter=12.0), _voice(0.0, jitter=40.0))  # further
    assert first_hop_blamed(_hop(3.0), None)  # no call figures: its own loss decides
    assert not first_hop_blamed(HopMetrics(100, 0, None, None, 100.0, 100), _voice(5))


def test_voice_verdicts_and_owners() -> None:
    clear = _voice(0.0)
    assert judge_voice(clear, _est(clear), _hop(0.0), "192.168.1.1").status is Status.passed
    # 5 % up: d = 10 + 20 + 20 = 50 ms, Id 1.2, Ie,eff 15.78: R 76.2, MOS 3.87 -> warn
    lossy = _voice(5.0)
    outcome = judge_voice(lossy, _est(lossy), _hop(0.0), "192.168.1.1")
    assert outcome.status is Status.warn and outcome.owner is Owner.isp
    assert "calls may break up" in outcome.summary
    bad = _voice(10.0)
    blamed = judge_voice(bad, _est(bad), _hop(9.0), "192.168.1.1")
    assert blamed.status is Status.fail and blamed.owner is Owner.assistant
    assert blamed.fix and "cable" in blamed.fix and "5 GHz" in blamed.fix
    assert "first hop" in blamed.summary
    assert blamed.metrics["first_hop_blamed"] is True
    far = judge_voice(bad, _est(bad), _hop(0.0), "192.168.1.1")
    assert far.status is Status.fail and far.owner is Owner.isp


def test_judge_hop() -> None:
    clean = judge_hop(_hop(0.0), "192.168.1.1", _voice(0.0), Status.passed)
    assert clean.status is Status.passed and "192.168.1.1" in clean.summary
    wifi = judge_hop(_hop(9.0), "192.168.1.1", _voice(10.0), Status.fail)
    assert wifi.status is Status.fail and wifi.owner is Owner.assistant
    silent = judge_hop(HopMetrics(100, 0, None, None, 100.0, 100), "192.168.1.1", None)
    # a router that never answers ping is no problem of the calls: skip, with the reason
    assert silent.status is Status.skip and "does not answer ping" in silent.summary


def test_lan_gateway_fails_only_when_the_call_is_degraded_and_the_hop_explains_it() -> None:
    # Wi-Fi power saving: 15 ms jitter to the router, while the call itself is clear
    wifi, clear = _hop(0.0, jitter=15.0), _voice(0.0)
    call = judge_voice(clear, _est(clear), wifi, "192.168.1.1")
    hop = judge_hop(wifi, "192.168.1.1", clear, call.status)
    assert call.status is Status.passed and call.metrics["first_hop_blamed"] is False
    assert hop.status is Status.warn and hop.owner is Owner.assistant  # never fail the run
    assert "calls are fine now, but your Wi-Fi" in hop.summary and "15 ms" in hop.summary
    # a router that rate-limits ping: 3 % of pings unanswered, nothing lost on the call
    limited = judge_hop(_hop(3.0), "192.168.1.1", clear, call.status)
    assert limited.status is Status.passed
    # the same loss on a degraded call it explains: the home network fails, for the assistant
    bad = _voice(10.0)
    verdict = judge_voice(bad, _est(bad), _hop(9.0), "192.168.1.1")
    blamed = judge_hop(_hop(9.0), "192.168.1.1", bad, verdict.status)
    assert verdict.status is Status.fail and blamed.status is Status.fail
    assert blamed.owner is Owner.assistant and blamed.fix and "cable" in blamed.fix


def test_voice_quality_names_the_dominant_impairment() -> None:
    # 45 ms jitter, no loss: jitter (past Cisco's 30 ms) is named, even with a good MOS
    jittery = _voice(0.0, jitter=45.0)
    outcome = judge_voice(jittery, _est(jittery), _hop(0.0), "192.168.1.1")
    assert outcome.status is Status.warn, outcome.summary
    assert "jitter" in outcome.summary and "45 ms" in outcome.summary
    # 5 % loss with 2 ms jitter: the loss is named, never "the delay varies by 2 ms"
    lossy = _voice(5.0, jitter=2.0)
    named = judge_voice(lossy, _est(lossy), _hop(0.0), "192.168.1.1")
    assert "lost" in named.summary and "varies" not in named.summary
    # long delay: the delay is named, for the provider
    slow = dataclasses.replace(_voice(0.0), rtt_ms=500.0)
    late = judge_voice(slow, _est(slow), _hop(0.0), "192.168.1.1")
    assert "delay is long" in late.summary and late.owner is Owner.isp


def test_little_loss_without_concealment_is_for_it() -> None:
    m = _voice(0.8, jitter=1.0)
    g711 = emodel.codec("g711")
    est = emodel.estimate(g711, False, m.rtt_ms or 0, m.worse_jitter_ms, m.worse_loss_pct)
    outcome = judge_voice(m, est, _hop(0.0), "192.168.1.1")
    assert outcome.status is not Status.passed, outcome.summary
    assert outcome.owner is Owner.it and outcome.fix and "plc" in outcome.fix
    assert "concealment" in outcome.summary


def test_routes_from_proc() -> None:
    table = (
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
        "eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        "wg0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    )
    routes = parse_proc_route(table)
    assert [str(r.network) for r in routes] == ["0.0.0.0/0", "192.168.1.0/24", "192.0.2.0/24"]
    assert str(routes[0].gateway) == "192.168.1.1" and routes[1].gateway is None
    six = (
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
        "fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n"
    )
    (route,) = parse_proc_route6(six)
    assert str(route.gateway) == "fe80::1" and route.network.prefixlen == 0
    assert next_hop(ipaddress.ip_address("127.0.0.1")).router is None
    assert "not supported" in next_hop(ipaddress.ip_address("192.0.2.1"), "sunos5").reason


def test_lan_gateway_without_ping_rights_is_a_skip_never_fail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from netsetup.diagnose.platform import icmp
    from netsetup.diagnose.voice import measure

    def refused(version: int) -> object:
        raise icmp.EchoUnavailable("this system does not let diagnose send a ping: denied")

    monkeypatch.setattr(measure, "first_hop", lambda ctx: ipaddress.ip_address("127.0.0.1"))
    monkeypatch.setattr(icmp, "open_echo_socket", refused)
    outcome = LanGatewayCheck().run(view(_ctx(None), 5))
    assert outcome.status is Status.skip  # harmless for calls: not unknown forever
    assert "does not let diagnose send a ping" in outcome.summary
    assert "administrator" in outcome.summary


def test_lan_gateway_pings_the_first_hop(monkeypatch: pytest.MonkeyPatch) -> None:
    from netsetup.diagnose.platform import icmp
    from netsetup.diagnose.voice import measure

    try:
        icmp.open_echo_socket(4).close()
    except icmp.EchoUnavailable as exc:
        pytest.skip(str(exc))
    # 127.0.0.1 stands for the router: the echoes stay on this machine
    monkeypatch.setattr(measure, "first_hop", lambda ctx: ipaddress.ip_address("127.0.0.1"))
    outcome = LanGatewayCheck().run(view(_ctx(None), 8))
    assert outcome.status is Status.passed, outcome.summary
    assert outcome.metrics["answered"] == outcome.metrics["probes"] == 150
    assert outcome.metrics["voice_loss_pct"] is None  # no responder: judged on its own figures


def _rt_message(flags: int, dest: str, gateway: str, mask: bytes | None) -> bytes:
    """A macOS rt_msghdr (92 bytes) and its sockaddrs, as the kernel lays them out."""
    import struct

    def sockaddr_in(address: str) -> bytes:
        return bytes([16, 2]) + bytes(2) + ipaddress.IPv4Address(address).packed + bytes(8)

    addrs = 0x1 | 0x2 | (0x4 if mask is not None else 0)
    body = sockaddr_in(dest) + sockaddr_in(gateway)
    if mask is not None:
        body += mask + bytes(-len(mask) % 4 if mask else 4)
    head = struct.pack("=HBBHxxiiiiiiI56x", 92 + len(body), 5, 4, 1, flags, addrs, 0, 0, 0, 0, 0)
    return head + body


def test_macos_route_messages() -> None:
    from netsetup.diagnose.platform.routes import best_route, parse_route_messages

    up_gateway = 0x1 | 0x2
    dump = (
        _rt_message(up_gateway, "0.0.0.0", "192.168.1.1", b"")  # default: an empty netmask
        + _rt_message(up_gateway, "10.0.0.0", "192.168.1.254", bytes([5, 0, 0, 0, 255]))
        + _rt_message(up_gateway | 0x4, "203.0.113.9", "192.168.1.253", None)  # a host route
        + _rt_message(0x1, "192.168.1.0", "192.168.1.7", None)  # no RTF_GATEWAY: skipped
    )
    routes = parse_route_messages(dump)
    assert [(str(r.network), str(r.gateway)) for r in routes] == [
        ("0.0.0.0/0", "192.168.1.1"),
        ("10.0.0.0/8", "192.168.1.254"),
        ("203.0.113.9/32", "192.168.1.253"),
    ]
    pick = {a: best_route(routes, ipaddress.IPv4Address(a)) for a in ("8.8.8.8", "10.1.2.3")}
    assert str(pick["8.8.8.8"].gateway) == "192.168.1.1"  # type: ignore[union-attr]
    assert str(pick["10.1.2.3"].gateway) == "192.168.1.254"  # type: ignore[union-attr]
    assert parse_route_messages(b"\x05\x00") == []  # cut short: nothing, no error


def test_rtp_ports_in_use_on_the_office_host_are_listed_apart_not_blocked() -> None:
    from netsetup.diagnose.voice.rtp import judge_rtp
    from netsetup.diagnose.voice.session import PortsResult

    ctx = view(_ctx(None), 5)
    asked = (10000, 12000, 20000)
    # 12000 is taken by the PBX: the responder did not open it; the others got through
    toward = PortsResult(asked, (10000, 20000), (10000, 20000))
    back = PortsResult(asked, asked, asked)
    outcome = judge_rtp(ctx, "192.0.2.60", toward, back)
    assert outcome.status is Status.passed, outcome.summary
    assert "12000 in use on the office host, not tested" in outcome.summary
    assert outcome.metrics["blocked_to_office"] == []
    assert outcome.metrics["in_use_at_office"] == [12000]
    # a port opened but not reached is still blocked, and named apart from the one in use
    toward = PortsResult(asked, (10000, 20000), (10000,))
    blocked = judge_rtp(ctx, "192.0.2.60", toward, back)
    assert blocked.status is Status.fail and blocked.owner is Owner.it
    assert blocked.metrics["blocked_to_office"] == [20000]
    assert blocked.fix and "blocked: 20000" in blocked.fix
    assert "in use on the office host, not tested: 12000" in blocked.summary
