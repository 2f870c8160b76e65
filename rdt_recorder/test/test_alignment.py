"""The shared aligner: newest message at or before each step within tolerance, misses counted, skew measured."""
import random

import pytest

from rdt_recorder.alignment import NonMonotonicStampError, StreamAligner, effective_stamp

MS = 1_000_000


def test_picks_newest_at_or_before_step_time_within_tolerance():
    al = StreamAligner(["cam", "joints"], frequency_hz=10, tolerance_s=0.05, start_ns=1000 * MS)
    for t in range(960, 1400, 33):   # camera at ~30 Hz
        al.push("cam", t * MS, f"cam@{t}")
    for t in range(995, 1400, 5):    # joints at 200 Hz
        al.push("joints", t * MS, t)
    steps = al.finish()
    assert [s.stamp_ns // MS for s in steps] == [1000, 1100, 1200, 1300]
    for s in steps:
        t = s.stamp_ns // MS
        cam_t = max(c for c in range(960, 1400, 33) if c <= t)
        assert s.values["cam"] == f"cam@{cam_t}"
        assert s.stamps["cam"] == cam_t * MS
        assert s.values["joints"] == max(j for j in range(995, 1400, 5) if j <= t)
    st = al.stats()
    assert st.steps == 4 and st.skipped_steps == 0
    assert st.skew_max_ms["cam"] == pytest.approx(max(s.stamp_ns - s.stamps["cam"] for s in steps) / MS)


def test_step_without_fresh_message_is_skipped_and_counted_not_invented():
    al = StreamAligner(["cam", "joints"], frequency_hz=10, tolerance_s=0.03, start_ns=0)
    for t in range(0, 1000, 10):
        al.push("joints", t * MS, t)
    for t in (0, 100, 400, 500, 600, 700, 800, 900):  # camera silent for 200 and 300
        al.push("cam", t * MS, t)
    steps = al.finish(until_ns=900 * MS)
    assert [s.stamp_ns // MS for s in steps] == [0, 100, 400, 500, 600, 700, 800, 900]
    assert [s.index for s in steps] == [0, 1, 4, 5, 6, 7, 8, 9]
    st = al.stats()
    assert st.skipped_steps == 2 and st.misses == {"cam": 2, "joints": 0}


def test_next_state_streams_give_the_following_steps_measured_state():
    al = StreamAligner(["joints"], frequency_hz=10, tolerance_s=0.02, next_streams=["joints"], start_ns=0)
    for t in range(0, 501, 10):
        al.push("joints", t * MS, t)
    steps = al.finish()
    assert [(s.values["joints"], s.next_values["joints"]) for s in steps] == [
        (0, 100), (100, 200), (200, 300), (300, 400), (400, 500)]  # step at 500 has no successor


def test_origin_is_first_moment_every_stream_delivered():
    al = StreamAligner(["a", "b"], frequency_hz=20, tolerance_s=0.05)
    al.push("a", 100 * MS, 1)
    assert not al.started and al.waiting_for() == ["b"]
    al.push("b", 130 * MS, 2)
    assert al.started and al.step_time(0) == 130 * MS and al.step_time(2) == 230 * MS


def test_incremental_equals_batch_with_jittered_out_of_order_arrival():
    rng = random.Random(3)
    msgs = []
    for name, period in (("cam_a", 33), ("cam_b", 34), ("joints", 5)):
        t = rng.randint(0, 20)
        while t < 3000:
            msgs.append((name, t * MS + rng.randint(0, 900_000), t))
            t += period + rng.choice((0, 0, 0, 1, 80))   # occasional dropouts
    batch = StreamAligner(["cam_a", "cam_b", "joints"], 25, 0.04, start_ns=50 * MS, next_streams=["joints"])
    for name, stamp, payload in sorted(msgs, key=lambda m: m[1]):
        batch.push(name, stamp, payload)
    expected = batch.finish(until_ns=2900 * MS)

    live = StreamAligner(["cam_a", "cam_b", "joints"], 25, 0.04, start_ns=50 * MS, next_streams=["joints"])
    got = []
    arrival = sorted(msgs, key=lambda m: m[1] + rng.randint(0, 3) * MS)   # small reordering on arrival
    for i, (name, stamp, payload) in enumerate(arrival):
        live.push(name, stamp, payload)
        if i % 7 == 0:
            got += live.poll(watermark_ns=stamp - 100 * MS)
    got += live.finish(until_ns=2900 * MS)
    assert [(s.stamp_ns, s.values, s.next_values) for s in got] == [
        (s.stamp_ns, s.values, s.next_values) for s in expected]
    assert live.stats().misses == batch.stats().misses


def test_poll_waits_for_a_message_after_the_step_time():
    al = StreamAligner(["a", "b"], frequency_hz=10, tolerance_s=0.05, start_ns=0)
    al.push("a", 0, "a0")
    al.push("b", 0, "b0")
    al.push("a", 150 * MS, "a1")
    assert [s.stamp_ns for s in al.poll()] == []            # b might still deliver something for t=0
    al.push("b", 20 * MS, "b1")
    steps = al.poll()
    assert [(s.stamp_ns, s.values["b"]) for s in steps] == [(0, "b0")]
    # a stalled stream is decided by the watermark: step 100 ms then misses b (b1 is 80 ms old)
    steps = al.poll(watermark_ns=120 * MS)
    assert steps == [] and al.stats().misses["b"] == 1


def test_end_time_bounds_the_episode():
    al = StreamAligner(["a"], frequency_hz=10, tolerance_s=0.05, start_ns=0, end_ns=300 * MS)
    for t in range(0, 1000, 10):
        al.push("a", t * MS, t)
    assert [s.stamp_ns // MS for s in al.poll()] == [0, 100, 200, 300]
    assert al.done


def test_strict_mode_rejects_stamps_going_backwards():
    al = StreamAligner(["cam"], frequency_hz=10, tolerance_s=0.05, strict=True)
    al.push("cam", 100 * MS, 0)
    with pytest.raises(NonMonotonicStampError, match="stream 'cam'.*earlier than the previous"):
        al.push("cam", 90 * MS, 1)


def test_late_message_for_a_decided_step_is_counted_and_ignored():
    al = StreamAligner(["a"], frequency_hz=10, tolerance_s=0.05, start_ns=0)
    al.push("a", 0, "x")
    al.push("a", 150 * MS, "y")
    assert len(al.poll()) == 1 and al.stats().misses["a"] == 1   # step 100 ms decided: nothing within 50 ms
    al.push("a", 90 * MS, "late")                                # arrives after that decision
    assert al.stats().late_messages["a"] == 1
    al.push("a", 250 * MS, "z")
    assert [s.values["a"] for s in al.poll()] == ["y"]          # step 200 ms takes 150 ms, not the late one


def test_receive_time_only_where_header_stamp_is_zero():
    assert effective_stamp(123, 999) == 123
    assert effective_stamp(0, 999) == 999
    with pytest.raises(ValueError):
        effective_stamp(0, None)


def test_bad_configuration_is_rejected_with_the_reason():
    with pytest.raises(ValueError, match="frequency"):
        StreamAligner(["a"], 0, 0.1)
    with pytest.raises(ValueError, match="next_streams"):
        StreamAligner(["a"], 10, 0.1, next_streams=["b"])


def test_header_stamp_in_nanoseconds_exactly():
    from types import SimpleNamespace as NS
    from rdt_recorder.alignment import header_stamp_ns

    header = NS(stamp=NS(sec=1_700_000_000, nanosec=999_999_999))
    assert header_stamp_ns(header) == 1_700_000_000_999_999_999          # no float rounding
    assert header_stamp_ns(NS(stamp=NS(sec=0, nanosec=0))) == 0          # zero: effective_stamp falls back
