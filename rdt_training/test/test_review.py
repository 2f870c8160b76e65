"""rdt-dataset-review on real episode files: the numbers, the flags, the video, the thumbnails and the pages
(the browser side is in test_review_browser.py)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import av
import cv2
import numpy as np
import pytest

from rdt_core.episode import EpisodeReader

import rdt_training.review.media as media_mod
from rdt_training.edit import main as edit_main
from rdt_training.review import ReviewError, build_review
from rdt_training.review.__main__ import main as review_main
from rdt_training.review.metrics import gripper_events, robust_outliers

from review_data import make_review_set


@pytest.fixture(scope="module")
def review(tmp_path_factory, kinova):
    """The review of the fault set, built in this process (one job) with a count of JPEG decodes."""
    root = tmp_path_factory.mktemp("review")
    data = root / "episodes"
    made = make_review_set(data, kinova)
    assert edit_main([str(data), "exclude", "episode_8", "--reason", "bad frame"]) == 0
    assert edit_main([str(data), "trim-idle", "episode_6"]) == 0
    decodes = []
    real = media_mod.decode_jpeg
    mp = pytest.MonkeyPatch()
    mp.setattr(media_mod, "decode_jpeg", lambda *a, **k: decodes.append(1) or real(*a, **k))
    try:
        index = build_review(data, root / "review", jobs=1, progress=False)
    finally:
        mp.undo()
    info = json.loads((root / "review" / "review.json").read_text())
    return {"data": data, "out": root / "review", "index": index, "made": made, "decodes": len(decodes),
            "eps": {e["key"]: e for e in info["episodes"]}}


def flags(review, name):
    return " | ".join(review["eps"][name]["flags"])


def test_every_episode_is_listed_with_the_info_numbers(review):
    eps = review["eps"]
    assert sorted(eps) == [f"episode_{k}.hdf5" for k in range(9)]
    e = eps["episode_0.hdf5"]
    assert e["ok"] and e["info"]["steps"] == 40 and e["info"]["duration_s"] == pytest.approx(39 / 25)
    assert e["info"]["instruction"] == "reach the red marker"
    # idle: the arm first moves at step 3 (commanded at step 2) -> the still-frame rule starts at step 2
    assert e["motion"]["idle_start_s"] == pytest.approx(2 / 25)
    assert 0 < e["motion"]["max_speed"] and e["motion"]["max_speed_joint"].startswith("joint_")
    assert 0 < e["motion"]["max_speed_limit_frac"] <= 1.0      # the expert moves at 80 % of the limits
    assert e["flags"] == []
    long = eps["episode_6.hdf5"]
    assert long["motion"]["idle_start_s"] == pytest.approx(60 / 25)


def test_quality_report_and_outliers_are_flagged(review):
    rec = review["eps"]["episode_5.hdf5"]
    assert rec["quality"]["dropped_frames"] == 3 and rec["quality"]["skipped_steps"] == 2
    assert rec["quality"]["skew_max_ms"] == {"cam_high": 31.0, "joint_states": 9.0}
    f = flags(review, "episode_5.hdf5")
    assert "3 dropped frames" in f and "2 skipped steps" in f and "2 NaN steps" in f
    assert "steps left out by the writer: 1 x cam_high frame" in f
    assert rec["plots"]["skew"] == "skew.png"
    assert (review["out"] / "media" / "episode_5.hdf5" / "skew.png").stat().st_size > 2000
    f = flags(review, "episode_6.hdf5")
    assert "duration 4.96 s is far from the median 1.56 s" in f and "idle at start 2.40 s is far from the median 0.08 s" in f
    assert review["eps"]["episode_0.hdf5"]["quality"]["dropped_frames"] is None     # not recorded by its writer


def test_frozen_camera_and_undecodable_frame_are_found(review):
    cams = review["eps"]["episode_7.hdf5"]["media"]["cameras"]
    assert cams["cam_high"]["frozen_run_steps"] == [5, 34]
    assert cams["cam_high"]["frozen_run_s"] == pytest.approx(29 / 25)
    assert "cam_high: frozen for 1.2 s while the arm moved" in flags(review, "episode_7.hdf5")
    assert cams["cam_right_wrist"]["frozen_run_s"] == 0.0
    # a scene that stands still repeats frames too, but that is no frozen camera
    still = review["eps"]["episode_6.hdf5"]["media"]["cameras"]["cam_high"]
    assert len(still["repeated_steps"]) > 50 and still["frozen_run_s"] == 0.0
    bad = review["eps"]["episode_8.hdf5"]
    assert bad["media"]["cameras"]["cam_right_wrist"]["bad_frames"] == [20]
    assert "cam_right_wrist: 1 frames do not decode" in flags(review, "episode_8.hdf5")
    assert bad["curation"] == {"excluded": True, "reason": "bad frame", "trim": None}


def test_frames_are_decoded_once(review):
    want = sum(c["frames"] - len(c["repeated_steps"]) for e in review["eps"].values()
               for c in e["media"]["cameras"].values())
    assert review["decodes"] == want


def test_video_has_the_steps_times_and_the_cameras_side_by_side(review):
    e = review["eps"]["episode_0.hdf5"]
    path = review["out"] / "media" / "episode_0.hdf5" / "video.mp4"
    with EpisodeReader(review["made"]["normal_0"]) as r:
        t = (r.timestamps - r.timestamps[0]) / 1e9
        first = {c: r.image(c, 0) for c in r.meta.camera_names}
        last = {c: r.image(c, r.num_steps - 1) for c in r.meta.camera_names}
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        frames = list(c.decode(s))
        duration = float(s.duration * s.time_base)
    assert len(frames) == 40
    np.testing.assert_allclose([float(f.pts * f.time_base) for f in frames], t, atol=1e-4)
    assert duration == pytest.approx(e["media"]["video_duration_s"], abs=1e-3)
    assert e["media"]["video_duration_s"] == pytest.approx(t[-1] + 1 / 25)
    # cameras left to right at the recorded size (48 x 64 each), in the right colours
    w, h = e["media"]["video_size"]
    assert (w, h) == (128, 48)
    assert e["media"]["video_layout"] == [["cam_high", 0.0, 0.5], ["cam_right_wrist", 0.5, 0.5]]
    for k, (frame, want) in enumerate(((frames[0], first), (frames[-1], last))):
        img = frame.to_ndarray(format="rgb24")
        assert img.shape == (48, 128, 3)
        for j, cam in enumerate(want):
            part = img[:, 64 * j:64 * (j + 1)].astype(int)
            assert np.abs(part - want[cam].astype(int)).mean() < 10, (k, cam)


def test_thumbnails_are_first_middle_last_in_browser_colours(review):
    e = review["eps"]["episode_1.hdf5"]
    assert e["media"]["thumbnails"]["cam_high"] == [f"thumb_cam_high_{k}.jpg" for k in range(3)]
    with EpisodeReader(review["made"]["normal_1"]) as r:
        for k, step in enumerate((0, 20, 39)):
            want = r.image("cam_high", step)
            got = cv2.imread(str(review["out"] / "media" / "episode_1.hdf5" / f"thumb_cam_high_{k}.jpg"))
            # a browser decodes JPEG as RGB: cv2 (BGR) must read back BGR of the same picture
            assert np.abs(cv2.cvtColor(got, cv2.COLOR_BGR2RGB).astype(int) - want.astype(int)).mean() < 8


def test_pages_show_curation_and_print_the_commands(review):
    page = review["index"].read_text()
    for k in range(9):
        assert f"episode_{k}.hdf5" in page
    assert f"rdt-dataset-edit {review['data']} trim-idle" in page
    assert page.count('<tr class="flagged') == 4            # recorded, long idle, frozen, bad frame
    row6 = page.split('data-key="episode_6.hdf5"')[1].split("</tr>")[0]
    assert row6.count('class="out"') == 2                   # its duration and its idle start are highlighted
    assert 'class="out"' not in page.split('data-key="episode_0.hdf5"')[1].split("</tr>")[0]
    assert "excluded: bad frame" in page
    trim = review["eps"]["episode_6.hdf5"]["curation"]["trim"]
    assert trim["start_step"] == 60 and trim["by"] == "trim-idle" and "trim 2.40-" in page and "(trim-idle)" in page
    assert "https://" not in page and "http://" not in page  # nothing fetched: opens from disk
    ep = (review["out"] / "episodes" / "episode_7.hdf5.html").read_text()
    assert f"rdt-dataset-edit {review['data']} include episode_7.hdf5" in ep
    assert f"rdt-dataset-edit {review['data']} trim episode_7.hdf5 --clear" in ep
    assert f"rdt-dataset-edit {review['data']} trim-idle episode_7.hdf5" in ep
    assert 'src="../media/episode_7.hdf5/video.mp4"' in ep and "frozen for 1.2 s" in ep
    geometry = review["eps"]["episode_7.hdf5"]["plots"]["time"]
    assert 0 < geometry["x0"] < geometry["x1"] < 1 and 0 < geometry["y0"] < geometry["y1"] < 1


def test_cli_builds_in_parallel_and_refuses_other_folders(review, tmp_path, capsys):
    out = tmp_path / "rv"
    assert review_main([str(review["data"]), "--out", str(out), "--jobs", "2", "--quiet",
                        "--episode", "episode_0", "--episode", "episode_7.hdf5"]) == 0
    info = json.loads((out / "review.json").read_text())
    assert [e["key"] for e in info["episodes"]] == ["episode_0.hdf5", "episode_7.hdf5"]
    assert info["episodes"][1]["media"]["cameras"]["cam_high"]["frozen_run_steps"] == [5, 34]
    assert review_main([str(review["data"]), "--out", str(out), "--quiet", "--episode", "episode_1"]) == 0
    assert not (out / "media" / "episode_7.hdf5").exists()      # a rebuild replaces the old review
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    assert review_main([str(review["data"]), "--out", str(other), "--quiet"]) == 2
    assert "not a review folder" in capsys.readouterr().err and (other / "todo.txt").read_text() == "mine"
    assert review_main([str(review["data"]), "--out", str(out), "--episode", "episode_42"]) == 2
    assert "no such episode" in capsys.readouterr().err
    assert review_main([str(review["data"])]) == 2
    assert "give --out" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReviewError, match="no episodes"):
        build_review(empty, out)


def test_rerun_without_the_sdk_says_how_to_install_it(review, tmp_path):
    code = textwrap.dedent(f"""
        import sys
        sys.modules["rerun"] = None          # as if rerun-sdk were not installed
        from rdt_training.review.__main__ import main
        sys.exit(main([{str(review["data"])!r}, "--episode", "episode_0", "--rerun", {str(tmp_path / "x.rrd")!r}]))
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "pip install rerun-sdk" in p.stderr and not (tmp_path / "x.rrd").exists()


def test_rerun_recording_holds_cameras_and_joints_on_one_timeline(review, tmp_path):
    pytest.importorskip("rerun", reason="rerun-sdk is optional (pip install rerun-sdk)")
    rrd = tmp_path / "ep.rrd"
    assert review_main([str(review["data"]), "--episode", "episode_0", "--rerun", str(rrd)]) == 0
    assert rrd.stat().st_size > 10_000
    reader = pytest.importorskip("rerun.chunk", reason="reading .rrd back needs rerun-sdk >= 0.30").RrdReader(rrd)
    rows = {}
    for chunk in reader.stream().to_chunks():
        if str(chunk.entity_path).startswith("/__"):
            continue
        rows[str(chunk.entity_path)] = rows.get(str(chunk.entity_path), 0) + chunk.num_rows
        assert "time" in chunk.timeline_names                 # cameras, joints and gripper on one timeline
    assert rows.keys() >= {"/cameras/cam_high", "/cameras/cam_right_wrist", "/joints/qpos/joint_1",
                           "/joints/action/joint_7", "/gripper/openness/robotiq_85_left_knuckle_joint"}
    assert set(rows.values()) == {40}                         # one row per step


def test_metric_helpers():
    assert gripper_events(np.array([1.0, 0.9, 0.5, 0.2, 0.1, 0.5, 0.8, 0.9, 0.1])) == 3
    assert gripper_events(np.array([0.5, 0.6, 0.4])) == 0
    assert robust_outliers({"a": 10.0, "b": 10.5, "c": 9.8, "d": 30.0}, min_abs=1.0) == {"d": 10.25}
    assert robust_outliers({"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.3}, min_abs=0.5) == {}
    assert robust_outliers({"a": 1.0, "b": 9.0}) == {}          # too few episodes to call anything an outlier
