"""The voice metrics and the E-model against values worked out by hand (no network)."""

from __future__ import annotations

import pytest

from netsetup.diagnose.voice import emodel
from netsetup.diagnose.voice.metrics import (
    ProbeRecord,
    ResponderCounts,
    burst_ratio,
    burst_windows,
    loss_runs,
    reordered,
    rfc3550_jitter,
    summarize,
    summarize_round_trip,
)

MS = 1_000_000


def test_rfc3550_jitter_hand_example() -> None:
    # sent every 20 ms, transit 100, 105, 100, 105 ms: |D| = 5, 5, 5
    # J1 = 5/16 = 0.3125; J2 = J1*15/16 + 5/16 = 0.60546875; J3 = J2*15/16 + 5/16
    pairs = [(0, 100), (20, 125), (40, 140), (60, 165)]
    assert rfc3550_jitter(pairs) == pytest.approx(0.880126953125)


def test_rfc3550_jitter_ignores_a_clock_offset() -> None:
    pairs = [(0, 100), (20, 125), (40, 140), (60, 165)]
    shifted = [(s, r + 9_999_999) for s, r in pairs]
    assert rfc3550_jitter(shifted) == rfc3550_jitter(pairs)
    assert rfc3550_jitter([(0, 5), (20, 25), (40, 45)]) == 0.0  # constant transit: no jitter


def test_loss_runs_burst_ratio_and_windows() -> None:
    lost = [False] * 20
    for i in (3, 4, 12, 13):
        lost[i] = True
    assert loss_runs(lost) == [2, 2]
    # L = 4/20 = 0.2, mean run 2: BurstR = 2 * (1 - 0.2) = 1.6
    assert burst_ratio(lost) == pytest.approx(1.6)
    assert burst_ratio([False] * 10) is None
    isolated = [i % 5 == 0 for i in range(100)]  # never two in a row: random-like
    assert burst_ratio(isolated) == pytest.approx(0.8)  # runs of 1 x (1 - 0.2)
    windows = [True] * 3 + [False] * 7 + [True, False, True] + [False] * 7 + [False] * 10 + [True]
    assert burst_windows(windows) == (1, 3)  # the last, incomplete window is not counted


def test_reordered_counts_late_packets() -> None:
    assert reordered([1, 2, 3, 4]) == 0
    assert reordered([1, 3, 2, 4]) == 1
    assert reordered([1, 5, 2, 3, 4, 6]) == 3


def _record(seq: int, transit_up: int, transit_down: int, offset: int = 7 * MS) -> ProbeRecord:
    t1 = seq * 20 * MS
    t2 = t1 + transit_up + offset  # the responder's clock is off by `offset`: it must not matter
    t3 = t2 + 50_000
    t4 = t3 - offset + transit_down
    return ProbeRecord(seq, t1, t2, t3, t4, arrival=seq)


def test_summary_per_direction() -> None:
    records = [_record(s, 5 * MS, 5 * MS) for s in range(100)]
    # 10 probes lost on the way up (never reached the responder), 5 answers lost on the way down
    lost_up = set(range(20, 30))
    lost_down = {50, 60, 70, 80, 90}
    records = [ProbeRecord(r.seq, r.t1_ns) if r.seq in lost_up | lost_down else r for r in records]
    m = summarize(records, ResponderCounts(rx_count=90, tx_count=90))
    assert m.sent == 100 and m.answered == 85
    assert m.loss_up_pct == pytest.approx(10.0)
    assert m.loss_down_pct == pytest.approx(100 * 5 / 90)
    assert m.loss_pct == pytest.approx(15.0)
    assert m.worse_loss_pct == pytest.approx(10.0)
    assert m.rtt_ms == pytest.approx(10.0)  # 5 + 5 ms: the 7 ms offset and the 50 us hold cancel
    assert m.jitter_up_ms == pytest.approx(0.0) and m.jitter_down_ms == pytest.approx(0.0)
    assert m.longest_loss_run == 10 and m.burst_windows == 1 and m.windows == 10
    assert m.reordered == 0


def test_jitter_is_told_apart_by_direction() -> None:
    # the way down alternates 5 and 15 ms; the way up is steady
    records = [_record(s, 5 * MS, (5 if s % 2 else 15) * MS) for s in range(200)]
    m = summarize(records, ResponderCounts(200, 200))
    assert m.jitter_up_ms == pytest.approx(0.0)
    assert m.jitter_down_ms == pytest.approx(10.0, rel=0.01)  # |D| = 10 ms every time: J -> 10
    assert m.loss_up_pct == 0.0 and m.loss_down_pct == 0.0


def test_without_responder_counts_only_the_round_trip_is_known() -> None:
    records = [_record(s, MS, MS) for s in range(10)] + [ProbeRecord(10, 200 * MS)]
    m = summarize(records, None)
    assert m.loss_up_pct is None and m.loss_down_pct is None
    assert m.loss_pct == pytest.approx(100 / 11)
    assert m.worse_loss_pct == m.loss_pct


def test_round_trip_summary_for_echoes() -> None:
    records = [
        ProbeRecord(s, s * 20 * MS, t4_ns=s * 20 * MS + (2 if s % 2 else 4) * MS, arrival=s)
        for s in range(100)
    ] + [ProbeRecord(100, 2000 * MS)]
    hop = summarize_round_trip(records)
    assert hop.sent == 101 and hop.answered == 100
    assert hop.rtt_ms == pytest.approx(3.0)
    assert hop.jitter_ms == pytest.approx(2.0, rel=0.02)
    assert hop.loss_pct == pytest.approx(100 / 101)


@pytest.mark.parametrize(
    ("r", "mos"), [(90, 4.34), (80, 4.02), (70, 3.60), (50, 2.58), (93.2, 4.41), (-3, 1.0)]
)
def test_r_to_mos_annex_b(r: float, mos: float) -> None:
    assert emodel.r_to_mos(r) == pytest.approx(mos, abs=0.005)


@pytest.mark.parametrize(("loss", "mos"), [(0.0, 4.38), (5.0, 3.86), (20.0, 2.56)])
def test_mos_for_g711_with_plc(loss: float, mos: float) -> None:
    # RTT 40 ms, no jitter: d = 20 + 20 + 20 = 60 ms, Id = 1.44
    est = emodel.estimate(emodel.codec("g711"), True, rtt_ms=40.0, jitter_ms=0.0, loss_pct=loss)
    assert est.one_way_ms == pytest.approx(60.0)
    assert est.id == pytest.approx(1.44)
    assert est.mos == pytest.approx(mos, abs=0.02)


def test_effective_ie_by_hand() -> None:
    g711 = emodel.codec("g711")
    # 95 * 5 / (5 + 25.1) = 15.78; without concealment 95 * 5 / (5 + 4.3) = 51.08
    assert emodel.effective_ie(g711, True, 5.0) == pytest.approx(15.78, abs=0.01)
    assert emodel.effective_ie(g711, False, 5.0) == pytest.approx(51.08, abs=0.01)
    # bursty loss hurts more: BurstR 2 -> 95 * 5 / (2.5 + 25.1) = 17.21
    assert emodel.effective_ie(g711, True, 5.0, burst_ratio=2.0) == pytest.approx(17.21, abs=0.01)
    assert emodel.effective_ie(g711, True, 5.0, burst_ratio=9.0) == pytest.approx(17.21, abs=0.01)
    g729 = emodel.codec("G729")
    assert emodel.effective_ie(g729, True, 0.0) == 11.0
    assert emodel.effective_ie(g729, True, 2.0) == pytest.approx(11 + 84 * 2 / 21)


def test_delay_impairment_knee() -> None:
    assert emodel.delay_impairment(100.0) == pytest.approx(2.4)
    # past 177.3 ms: 0.024 * 277.3 + 0.11 * 100 = 17.655
    assert emodel.delay_impairment(277.3) == pytest.approx(17.6552)
    # the jitter buffer grows with the worse jitter: 2 x 30 ms
    assert emodel.one_way_delay_ms(10.0, 30.0, emodel.codec("g711")) == pytest.approx(85.0)
    assert emodel.one_way_delay_ms(10.0, 1.0, emodel.codec("g729")) == pytest.approx(50.0)


def test_unknown_codec_gets_no_estimate() -> None:
    with pytest.raises(emodel.UnknownCodec, match=r"G\.113"):
        emodel.codec("opus")


def test_label_names_the_model_and_codec() -> None:
    est = emodel.estimate(emodel.codec("g711"), False, 1.0, 0.0, 0.0)
    assert "ITU-T G.107 E-model" in est.label()
    assert "G.711 without packet-loss concealment" in est.label()
    assert "Bpl 4.3" in est.label()
