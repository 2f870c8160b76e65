"""Record -> train -> deploy in the sim: the recorder records the sim as it records the robot."""
import json

import numpy as np
import pytest

from rdt_core.episode import EpisodeReader
from rdt_core.robots import load_profile
from rdt_sim.experts import demonstrate
from rdt_sim.pipeline import leader_gripper, main, record_demonstrations
from rdt_sim.rendering import RenderSettings


def test_leader_gripper_is_the_inverse_of_the_profiles_leader_map():
    profile = load_profile("aloha")
    follower = np.array([0.6197, 1.1, 1.6214])
    leader = leader_gripper(profile, follower, "leader_left")
    assert np.allclose(leader[[0, 2]], [-0.0552, 0.8298])
    mapper = profile.stream_mapper("leader_left")
    names = profile.stream("leader_left").msg_joint_names
    back = [mapper.extract(names, [0, 0, 0, 0, 0, 0, g])[6] for g in leader]
    assert np.allclose(back, follower)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rec")
    [rec] = record_demonstrations("transfer_cube", tmp / "live", episodes=1, seed=0,
                                  render=RenderSettings(32, 40, False), camera_rate_hz=25.0, bag_dir=tmp / "bags")
    return rec, tmp


def test_recorded_sim_episode_has_the_robots_joints_units_and_cameras(recorded):
    rec, _ = recorded
    demo = demonstrate("transfer_cube", 0)
    profile = load_profile("aloha")
    with EpisodeReader(rec["path"]) as r:
        assert r.meta.robot == "aloha" and list(r.meta.joint_names) == profile.joint_names
        assert r.meta.camera_names == [c.role for c in profile.cameras]
        assert r.num_steps == rec["steps"] > 200
        t = r.timestamps
        assert np.allclose(np.diff(t), 20_000_000)  # one step per 50 Hz control period, sim time
        qpos, action = r.qpos, r.action
        assert np.all(qpos >= profile.lower - 1e-6) and np.all(qpos <= profile.upper + 1e-6)
        # the actions are the expert's commands, the gripper back in follower units from the leader's
        k = (t - t[0]) // 20_000_000
        first = int(round((t[0] - 1_000_000_000) / 20_000_000)) - 10  # recording starts after 10 lead-in ticks
        cmd = demo.actions[np.clip(first + k.astype(int), 0, len(demo.actions) - 1)]
        assert np.abs(action - cmd).max() < 1e-6
        img = r.image("cam_high", 10)
        assert img.shape == (32, 40, 3) and img.std() > 1


def test_pipeline_end_to_end_writes_its_report(tmp_path, capsys):
    out = tmp_path / "pipe"
    rc = main(["--episodes", "2", "--eval-episodes", "1", "--eval-seconds", "1.5", "--train-steps", "2",
               "--batch-size", "4", "--resolution", "32x40", "--out", str(out)])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    s = summary["evaluation"]["summary"][0]
    assert s["episodes"] == 1 and s["mode"] == "ours" and 0 <= s["success_rate"] <= 1
    assert "TINY" in summary["note"] and "--init 1b" in summary["gpu_command"]
    page = (out / "report.html").read_text()
    assert "eval/report.html" in page and (out / "eval" / "report.html").is_file()
    assert len(list((out / "episodes").glob("episode_*.hdf5"))) == 2
    assert (out / "run" / "export" / "model.safetensors").is_file()


def test_bag2hdf5_of_a_bag_of_the_same_topics_gives_the_same_episode(recorded, tmp_path):
    from rdt_recorder.bag2hdf5 import main as bag2hdf5

    rec, _ = recorded
    assert bag2hdf5([rec["bag"], "--out", str(tmp_path), "--profile", "aloha", "--instruction", "x"]) == 0
    [converted] = sorted(tmp_path.glob("episode_*.hdf5"))
    with EpisodeReader(rec["path"]) as live, EpisodeReader(converted) as bag:
        assert bag.num_steps == live.num_steps
        assert np.array_equal(bag.timestamps, live.timestamps)
        assert np.array_equal(bag.qpos, live.qpos) and np.array_equal(bag.action, live.action)
        for cam in live.meta.camera_names:
            for i in (0, live.num_steps // 2, live.num_steps - 1):
                assert np.array_equal(bag.image(cam, i), live.image(cam, i)), (cam, i)
