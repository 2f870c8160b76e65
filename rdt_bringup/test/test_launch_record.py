"""record.launch.py robot:=kinova use_fake_hardware:=true through the real launch machinery, every documented
argument given: an episode started with `ros2 service call ~/start_episode` and stopped is a file that
passes the project's validator and the official RDT loader line; a discarded one leaves no file."""
import tempfile
import unittest
from pathlib import Path

import pytest

from rdt_core.testing import skip_module_without_ros, wait_for

skip_module_without_ros("launch_testing", "std_srvs")

import launch_testing.asserts  # noqa: E402

from launch_helpers import (Probe, config_file, documented_arguments, hold_ros_domain, launched,  # noqa: E402
                            service_call)

WORK = Path(tempfile.mkdtemp(prefix="rdt_launch_record_"))
OUT = WORK / "episodes"


def launch_arguments() -> dict[str, str]:
    args = {"robot": "kinova", "use_fake_hardware": "true", "output_dir": str(OUT),
            "instruction": "pick up the cube", "episode_seconds": "0", "params_file": str(config_file("kinova_gen3.yaml")),
            # rdt_sim's arguments, accepted and unused without use_sim:=true (rdt_sim's tests run the sim)
            "use_sim": "false", "sim_task": "insertion", "sim_seed": "3", "sim_resolution": "240x320"}
    assert set(args) == set(documented_arguments("record.launch.py")), "cover every documented argument"
    return args


@pytest.mark.launch_test
def generate_test_description():
    hold_ros_domain(fallback=92)
    return launched("record.launch.py", launch_arguments())


class TestRecordThroughServices(unittest.TestCase):
    def test_start_stop_keeps_a_valid_episode_and_discard_leaves_none(self):
        import cv2
        import h5py
        import numpy as np

        from rdt_core.episode import validate_episode
        from rdt_msgs.msg import EpisodeStatus

        probe = Probe("rdt_record_test_probe")
        try:
            statuses = probe.listen(EpisodeStatus, "/rdt_recorder/episode_status")
            reply = service_call("/rdt_recorder/start_episode", "rdt_msgs/srv/StartEpisode",
                                 "{instruction: '', max_duration: 0.0}")
            self.assertIn("success=True", reply)
            # record until 25 steps are written, however long the machine takes
            self.assertTrue(wait_for(lambda: statuses and statuses[-1][0].state == "RECORDING"
                                     and statuses[-1][0].steps >= 25, 120),
                            [(s.state, s.steps, s.message) for s, _ in statuses[-3:]])
            reply = service_call("/rdt_recorder/stop_episode", "std_srvs/srv/Trigger")
            self.assertIn("success=True", reply)
            # stop answers once the steps are sealed; the file is built meanwhile (the status reports it)
            wait_for(lambda: sorted(p.name for p in OUT.iterdir()) == ["episode_0.hdf5"], 120)
            self.assertEqual(sorted(p.name for p in OUT.iterdir()), ["episode_0.hdf5"])
            path = OUT / "episode_0.hdf5"
            report = validate_episode(path)
            self.assertTrue(report.ok, report)
            with h5py.File(path, "r") as f:   # the official RDT / ALOHA loader's reads
                qpos, action = f["observations"]["qpos"][:], f["action"][:]
                self.assertGreaterEqual(qpos.shape[0], 25)
                self.assertEqual(qpos.shape, action.shape)
                self.assertEqual(qpos.shape[1], 8)   # 7 joints + the gripper
                self.assertTrue(np.all(np.isfinite(qpos)))
                self.assertEqual(f.attrs["instruction"], "pick up the cube")
                for cam in ("cam_high", "cam_right_wrist"):
                    img = cv2.imdecode(np.frombuffer(f["observations"]["images"][cam][0], np.uint8),
                                       cv2.IMREAD_COLOR)
                    self.assertEqual(img.shape, (240, 320, 3))   # the fake robot's camera size

            # a second episode, discarded: no file of it, final or hidden
            reply = service_call("/rdt_recorder/start_episode", "rdt_msgs/srv/StartEpisode",
                                 "{instruction: 'discarded', max_duration: 0.0}")
            self.assertIn("success=True", reply)
            self.assertTrue(wait_for(lambda: statuses[-1][0].state == "RECORDING" and statuses[-1][0].steps > 0, 60))
            self.assertIn("success=True", service_call("/rdt_recorder/discard_episode", "std_srvs/srv/Trigger"))
            self.assertTrue(wait_for(lambda: statuses[-1][0].state == "IDLE", 30))
            self.assertEqual(sorted(p.name for p in OUT.iterdir()), ["episode_0.hdf5"])
        finally:
            probe.close()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_processes_exit_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
