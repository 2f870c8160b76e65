"""record.launch.py robot:=aloha use_sim:=true through the real launch machinery: rdt_sim's sim_node (its
scripted expert performs the task and publishes the leader arms) and the recorder on sim time. An episode
started with `ros2 service call ~/start_episode` and stopped is a file that passes the project's validator
and the official RDT / ALOHA loader line: 14 joints, the expert's commands as actions, the three cameras."""
import tempfile
import unittest
from pathlib import Path

import pytest

from rdt_core.testing import skip_module_without_ros, wait_for

skip_module_without_ros("launch_testing", "std_srvs")
pytest.importorskip("mujoco")

import launch_testing.asserts  # noqa: E402

from launch_helpers import Probe, hold_ros_domain, launched, service_call  # noqa: E402

OUT = Path(tempfile.mkdtemp(prefix="rdt_launch_record_sim_")) / "episodes"


@pytest.mark.launch_test
def generate_test_description():
    hold_ros_domain(fallback=96)
    args = {"robot": "aloha", "use_sim": "true", "sim_task": "transfer_cube", "sim_seed": "0",
            "sim_resolution": "48x64", "output_dir": str(OUT), "instruction": "transfer the cube",
            "episode_seconds": "0"}
    return launched("record.launch.py", args)


class TestRecordTheSim(unittest.TestCase):
    def test_an_episode_of_the_sims_expert_is_a_valid_file(self):
        import cv2
        import h5py
        import numpy as np

        from rdt_core.episode import validate_episode
        from rdt_core.robots import load_profile
        from rdt_msgs.msg import EpisodeStatus

        probe = Probe("rdt_record_sim_test_probe")
        try:
            statuses = probe.listen(EpisodeStatus, "/rdt_recorder/episode_status")
            # the recorder may come up before the sim's streams: retry the start until it is accepted
            replies = []
            self.assertTrue(wait_for(lambda: replies.append(service_call(
                "/rdt_recorder/start_episode", "rdt_msgs/srv/StartEpisode",
                "{instruction: '', max_duration: 0.0}")) or "success=True" in replies[-1], 240), replies[-1:])
            # record until 40 steps are written, however long the machine takes
            self.assertTrue(wait_for(lambda: statuses and statuses[-1][0].state == "RECORDING"
                                     and statuses[-1][0].steps >= 40, 240),
                            [(s.state, s.steps, s.message) for s, _ in statuses[-3:]])
            self.assertIn("success=True", service_call("/rdt_recorder/stop_episode", "std_srvs/srv/Trigger"))
            # stop answers once the steps are sealed; the file is built meanwhile (the status reports it)
            wait_for(lambda: sorted(p.name for p in OUT.iterdir()) == ["episode_0.hdf5"], 120)
        finally:
            probe.close()
        self.assertEqual(sorted(p.name for p in OUT.iterdir()), ["episode_0.hdf5"])
        path = OUT / "episode_0.hdf5"
        report = validate_episode(path)
        self.assertTrue(report.ok, report)
        profile = load_profile("aloha")
        with h5py.File(path, "r") as f:  # the official RDT / ALOHA loader's reads
            qpos, action = f["observations"]["qpos"][:], f["action"][:]
            self.assertGreaterEqual(qpos.shape[0], 40)
            self.assertEqual(qpos.shape, action.shape)
            self.assertEqual(qpos.shape[1], 14)
            self.assertTrue(np.all(np.isfinite(qpos)) and np.all(np.isfinite(action)))
            self.assertTrue(np.all(action >= profile.lower - 1e-6) and np.all(action <= profile.upper + 1e-6))
            # the actions are the expert's commands (the leader arms), not a copy of the measured joints
            self.assertGreater(float(np.abs(action - qpos).max()), 1e-3)
            self.assertEqual(f.attrs["instruction"], "transfer the cube")
            for cam in ("cam_high", "cam_left_wrist", "cam_right_wrist"):
                img = cv2.imdecode(np.frombuffer(f["observations"]["images"][cam][0], np.uint8), cv2.IMREAD_COLOR)
                self.assertEqual(img.shape, (48, 64, 3))  # the sim's camera size


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_processes_exit_cleanly(self, proc_info):
        # the sim on launch's SIGINT, within its grace: 0 (no SIGTERM, no crash under MuJoCo at exit)
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0], process="sim_node")
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15], process="record")
