"""kinova.launch.py through the real launch machinery (launch_testing), with the fake robot and the tiny policy,
every documented argument given: JointTrajectory commands that reach into the future when sent, with
points inside the Gen3 limits, gripper goals reaching the fake robot's action server, ~/status RUNNING, and `ros2 service call`
of pause / resume / set_instruction answering and changing what is published.

Collected by launch_testing's pytest plugin (the launch_test mark on generate_test_description), so
`colcon test` runs it with the package's other tests, on a ROS_DOMAIN_ID of its own."""
import tempfile
import unittest
from pathlib import Path

import pytest
from rdt_core.testing import skip_module_without_ros, wait_for

skip_module_without_ros("launch_testing", "trajectory_msgs", "action_msgs")

import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402

from launch_helpers import (Probe, documented_arguments, hold_ros_domain, launched, policy_params,  # noqa: E402
                            service_call, write_instruction)
from rdt_core.robots import load_profile  # noqa: E402

WAIT_S = 300.0   # the tiny model warms up on CPU first; CI's two cores are shared
WORK = Path(tempfile.mkdtemp(prefix="rdt_launch_kinova_"))
CAMERAS = {"camera_exterior_topic": "/test/exterior/image_raw", "camera_right_wrist_topic": "/test/wrist/image_raw"}


def launch_arguments() -> dict[str, str]:
    """A value for every argument kinova.launch.py documents (the test fails when one is added untested)."""
    write_instruction(WORK, "start_task")
    write_instruction(WORK, "pick_cube", seed=1)
    params = policy_params("kinova_gen3.yaml", WORK, instruction_dir=str(WORK))   # set_instruction by name
    (WORK / "siglip").mkdir(exist_ok=True)
    args = {
        "robot_ip": "192.168.1.10", "use_fake_hardware": "true",
        "launch_driver": "true",            # with fake hardware: noted and ignored
        "gripper": "robotiq_2f_85", "checkpoint": "tiny",
        "vision_encoder": str(WORK / "siglip"),   # the tiny checkpoint brings its own encoder
        "instruction": str(WORK / "start_task.pt"), **CAMERAS,
        "camera_left_wrist_topic": "",      # the Gen3 profile has no left-wrist camera (giving one is an error)
        "dry_run": "false", "device": "cpu", "params_file": str(params),
    }
    assert set(args) == set(documented_arguments("kinova.launch.py")), "cover every documented argument"
    return args


@pytest.mark.launch_test
def generate_test_description():
    hold_ros_domain(fallback=90)
    return launched("kinova.launch.py", launch_arguments())


class TestKinovaWithFakeHardware(unittest.TestCase):
    def test_commands_status_gripper_and_services(self):
        from action_msgs.msg import GoalStatusArray
        from sensor_msgs.msg import JointState
        from trajectory_msgs.msg import JointTrajectory

        from rdt_msgs.msg import PolicyStatus

        profile = load_profile("kinova_gen3")
        probe = Probe("rdt_launch_test_probe")
        try:
            trajectories = probe.listen(JointTrajectory, profile.command["topic"])
            statuses = probe.listen(PolicyStatus, "/rdt_policy_node/status")
            states = probe.listen(JointState, "/joint_states")
            goals = probe.listen(GoalStatusArray, profile.command["gripper_action"] + "/_action/status", 10)

            def state():
                return statuses[-1][0].state if statuses else None

            def multi_point_since(n):
                return [t for t, _ in trajectories[n:] if len(t.points) > 1]

            self.assertTrue(wait_for(lambda: state() == "RUNNING" and len(multi_point_since(0)) >= 3, WAIT_S),
                            f"no RUNNING with trajectories: states {[s.state for s, _ in statuses[-5:]]}, "
                            f"reason {statuses[-1][0].hold_reason if statuses else None!r}, "
                            f"{len(trajectories)} trajectories")
            # the launch arguments reached both nodes: the cameras are on the given topics
            for topic in CAMERAS.values():
                self.assertGreaterEqual(probe.node.count_publishers(topic), 1, topic)
                self.assertGreaterEqual(probe.node.count_subscribers(topic), 1, topic)
            self.assertEqual(statuses[-1][0].instruction, "start_task")
            self.assertTrue(wait_for(lambda: goals and goals[-1][0].status_list, 60), "no gripper goal arrived")

            # every trajectory: planned (header.stamp) no later than sent, its points after the stamp and still
            # reaching into the future when sent, inside the Gen3 position and velocity limits
            index = {n: i for i, n in enumerate(profile.joint_names)}
            for traj, sent in list(trajectories):
                self.assertEqual(list(traj.joint_names), profile.command["joints"])
                cols = [index[n] for n in traj.joint_names]
                stamp = traj.header.stamp.sec + 1e-9 * traj.header.stamp.nanosec
                q = np.array([p.positions for p in traj.points])
                t = np.array([p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in traj.points])
                self.assertLessEqual(stamp, sent + 1e-3, "a trajectory is planned before it is sent")
                self.assertGreater(stamp + t[-1], sent, "a trajectory wholly in the past when sent")
                self.assertTrue(np.all(np.isfinite(q)) and np.all(t > 0) and np.all(np.diff(t) > 0))
                self.assertTrue(np.all(q >= profile.lower[cols] - 1e-9) and np.all(q <= profile.upper[cols] + 1e-9))
                vmax = profile.max_velocity[cols]
                self.assertTrue(np.all(np.abs(np.diff(q, axis=0)) <= vmax * np.diff(t)[:, None] + 1e-6))

            # pause: PAUSED, and from then on the arm is held at one position
            self.assertIn("success=True", service_call("/rdt_policy_node/pause", "std_srvs/srv/Trigger"))
            paused = probe.now()  # the pause is in effect once the service answered
            self.assertTrue(wait_for(lambda: state() == "PAUSED", 60), state())
            wait_for(lambda: False, 2.0)
            # The arm is held: the fake arm (it follows the trajectories exactly) stands still by the end of the
            # 2 s, and every trajectory planned while paused (header.stamp after the pause service answered; one
            # planned just before may arrive later, on its own topic) ends at the same position. From motion the
            # first of them brakes within the acceleration limits, so it may have many points; none follows the
            # policy.
            end = probe.now()
            arm = [i for i, n in enumerate(states[-1][0].name) if n in profile.command["joints"]]
            recent = np.array([np.array(m.position)[arm] for m, t in list(states) if t >= end - 0.5])
            self.assertGreater(len(recent), 5, "no joint states in the last 0.5 s")
            self.assertLess(np.ptp(recent, axis=0).max(), 1e-6, "the arm still moves while paused")
            planned_while_paused = [t for t, _ in list(trajectories)
                                    if t.header.stamp.sec + 1e-9 * t.header.stamp.nanosec > paused]
            if planned_while_paused:
                holds = np.array([t.points[-1].positions for t in planned_while_paused])
                np.testing.assert_allclose(holds, np.repeat(holds[:1], len(holds), axis=0), atol=1e-9,
                                           err_msg="trajectories planned while paused hold different positions")
            # resume: moving again
            self.assertIn("success=True", service_call("/rdt_policy_node/resume", "std_srvs/srv/Trigger"))
            resumed_at = len(trajectories)
            self.assertTrue(wait_for(lambda: state() in ("MOVING_TO_START", "RUNNING")
                                     and multi_point_since(resumed_at), 120), state())
            # set_instruction by name (instruction_dir from the params file): the status names the new one
            reply = service_call("/rdt_policy_node/set_instruction", "rdt_msgs/srv/SetInstruction",
                                 "{path_or_name: pick_cube}")
            self.assertIn("success=True", reply)
            self.assertTrue(wait_for(lambda: statuses[-1][0].instruction == "pick_cube", 60))
            reply = service_call("/rdt_policy_node/set_instruction", "rdt_msgs/srv/SetInstruction",
                                 "{path_or_name: no_such_task}")
            self.assertIn("success=False", reply)
            self.assertIn("no_such_task", reply)

            # and the fake arm moved under these commands
            first, last = np.array(states[0][0].position), np.array(states[-1][0].position)
            self.assertEqual(list(states[-1][0].name), profile.stream("joints").msg_joint_names)
            self.assertGreater(np.abs(last - first).max(), 1e-4, "the fake arm did not move")
        finally:
            probe.close()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_processes_exit_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
