"""rclpy shell of the simulated ALOHA (console script ``sim_node``): the topics of the Interbotix ALOHA.

Publishes what the real robot's drivers publish: ``/follower_<side>/joint_states`` (sensor_msgs/JointState,
the profile's message joint names, gripper in follower joint units), ``/<cam>/camera/color/image_rect_raw``
(sensor_msgs/Image rgb8, rendered only while someone subscribes) and ``/clock`` (the sim is the clock: run
the other nodes with ``use_sim_time``). Follows the commands the policy node sends for the ``aloha``
profile: the Interbotix JointGroupCommand / JointSingleCommand topics when interbotix_xs_msgs is installed,
and the profile's sensor_msgs/JointState fallback topics. Services: ``~/reset`` (rdt_msgs/ResetSim, a new
seeded episode) and ``~/success`` (std_srvs/Trigger: reward 4 of 4 reached?).

The sim advances in its own thread, a control period at a time, ``real_time_factor`` times real time (0:
as fast as it can), so sim time never waits for a ROS timer that itself runs on sim time.
"""
from __future__ import annotations

import signal
import threading
import time

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.time import Time
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import Trigger

from rdt_core.executor import freeze_startup_objects
from rdt_msgs.srv import ResetSim

from .pipeline import leader_gripper

PARAMETERS = {  # name: (default, description)
    "task": ("transfer_cube", "transfer_cube | insertion"),
    "seed": (0, "seed of the first episode (~/reset takes another)"),
    "profile": ("aloha", "robot profile (the sim speaks the aloha profile's joints)"),
    "resolution": ("480x640", "camera images HEIGHTxWIDTH"),
    "shadows": (True, "render the model's shadows (about 4x the rendering time on CPU)"),
    "camera_rate_hz": (30.0, "camera frames per second of sim time"),
    "real_time_factor": (1.0, "sim seconds per wall second (0 = as fast as the machine allows)"),
    "autonomous_expert": (False, "the scripted expert performs each episode (recording): its commands are applied "
                                 "and published as the leader arms' joint states, as teleoperation would"),
}


def image_message(stamp, frame_id: str, rgb: np.ndarray) -> Image:
    h, w = rgb.shape[:2]
    msg = Image(height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3)
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.data = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    return msg


class SimNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("rdt_sim", **node_kwargs)
        # ------------------------------------------------------------------ parameters
        for name, (default, text) in PARAMETERS.items():
            self.declare_parameter(name, default)
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self.real_time_factor = float(p["real_time_factor"])
        self.expert = bool(p["autonomous_expert"])
        self._demo, self._step = None, 0
        self.camera_period = 1.0 / float(p["camera_rate_hz"])

        # ------------------------------------------------------------------ the sim (ROS-free)
        from rdt_policy_node.conversions import interbotix_groups, joint_state_groups

        from .aloha import AlohaSim
        from .rendering import RenderSettings

        self.sim = AlohaSim(p["task"], profile=p["profile"],
                            render=RenderSettings.parse(p["resolution"], shadows=bool(p["shadows"])))
        self.profile = self.sim.profile
        self._lock = threading.Lock()
        self._command = None
        self._max_reward = 0
        self._next_frame = 0.0
        self._reset(int(p["seed"]))

        # ------------------------------------------------------------------ subscriptions (commands)
        for g in joint_state_groups(self.profile, self.profile.command):
            self.create_subscription(JointState, g["topic"], lambda msg, g=g: self._on_joint_command(g, msg), 10)
        try:
            from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
        except ImportError:
            JointGroupCommand = None
        if JointGroupCommand is not None and self.profile.command.get("backend") == "interbotix":
            for g in interbotix_groups(self.profile, self.profile.command):
                self.create_subscription(JointGroupCommand, g["group_topic"],
                                         lambda msg, g=g: self._set(g["index"], msg.cmd, g["group_topic"]), 10)
                if g["single_topic"] and g["gripper_index"] is not None:
                    self.create_subscription(JointSingleCommand, g["single_topic"],
                                             lambda msg, g=g: self._set([g["gripper_index"]], [msg.cmd],
                                                                        g["single_topic"]), 10)

        # ------------------------------------------------------------------ publishers
        self.clock_pub = self.create_publisher(Clock, "/clock", 10)
        names = self.profile.joint_names
        # reliable, as the drivers publish (a best-effort sensor-data subscriber, like the policy node's, matches)
        self.joint_pubs = [(self.create_publisher(JointState, s.topic, 10), s.msg_joint_names,
                            [names.index(j) for j in s.joints]) for s in self.profile.state_streams]
        self.image_pubs = {c.role: self.create_publisher(Image, c.topic, 5)
                           for c in self.profile.cameras}
        self.leader_pubs = [(self.create_publisher(JointState, s.topic, 10), s.role, s.msg_joint_names,
                             [names.index(j) for j in s.joints]) for s in self.profile.action_streams] if self.expert else []

        # ------------------------------------------------------------------ services
        self.create_service(ResetSim, "~/reset", self._on_reset)
        self.create_service(Trigger, "~/success", self._on_success)

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim", daemon=True)
        self._thread.start()
        self.get_logger().info(f"MuJoCo ALOHA {self.sim.task.name}, seed {p['seed']}: {len(self.image_pubs)} cameras "
                               f"{p['resolution']} at {p['camera_rate_hz']:g} Hz, {self.profile.control_frequency:g} Hz "
                               f"control, real-time factor {self.real_time_factor:g}; publishing /clock")

    # ------------------------------------------------------------------ commands
    def _on_joint_command(self, group: dict, msg: JointState) -> None:
        where = {n: i for i, n in enumerate(msg.name)}
        missing = [n for n in group["names"] if n not in where]
        if missing or len(msg.position) != len(msg.name):
            self.get_logger().error(f"{group['topic']}: command lacks joint(s) {missing} (has {list(msg.name)}); "
                                    f"ignored", throttle_duration_sec=5.0)
            return
        self._set(group["index"], [msg.position[where[n]] for n in group["names"]], group["topic"])

    def _set(self, index, values, topic: str) -> None:
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (len(index),) or not np.all(np.isfinite(values)):
            self.get_logger().error(f"{topic}: command {values.tolist()} is not {len(index)} finite positions; "
                                    f"ignored", throttle_duration_sec=5.0)
            return
        with self._lock:
            self._command[np.asarray(index)] = values

    # ------------------------------------------------------------------ the sim's loop
    def _reset(self, seed: int) -> str:
        demo = None
        if self.expert:
            from .experts import demonstrate

            demo = demonstrate(self.sim.task.name, seed)
        with self._lock:
            q = self.sim.reset(seed)
            self._command = q.copy()
            self._demo, self._step = demo, 0
            self._max_reward = 0
            self._next_frame = self.sim.time
            poses = np.round(self.sim.object_poses()[:, :3], 3).tolist()
        return f"{self.sim.task.name} episode, seed {seed}: objects at {poses}"

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as e:  # noqa: BLE001 - the context goes away under the thread at shutdown
            if rclpy.ok(context=self.context):
                self.get_logger().error(f"the sim stopped: {type(e).__name__}: {e}")
                raise

    def _loop(self) -> None:
        start_wall, start_sim = time.monotonic(), None
        while not self._stop.is_set() and rclpy.ok(context=self.context):
            with self._lock:
                if self._demo is not None:  # the expert's next command (held after its end)
                    self._command = self._demo.actions[min(self._step, len(self._demo.actions) - 1)].copy()
                    self._step += 1
                command = self._command.copy()
                self.sim.command(self._command)
                self.sim.step()
                now = self.sim.time
                self._max_reward = max(self._max_reward, self.sim.reward())
                q, v = self.sim.qpos(), self.sim.qvel()
                frames = None
                if now >= self._next_frame - 1e-9:
                    self._next_frame += self.camera_period
                    wanted = [r for r, pub in self.image_pubs.items() if pub.get_subscription_count() > 0]
                    frames = {r: self.sim.render(r) for r in wanted}
            stamp = Time(nanoseconds=int(round(now * 1e9))).to_msg()
            self.clock_pub.publish(Clock(clock=stamp))
            for pub, msg_names, idx in self.joint_pubs:
                msg = JointState(name=list(msg_names), position=q[idx].tolist(), velocity=v[idx].tolist())
                msg.header.stamp = stamp
                pub.publish(msg)
            for pub, role, msg_names, idx in self.leader_pubs:
                values = command[idx].copy()
                g = msg_names.index("gripper")
                values[g] = leader_gripper(self.profile, values[g], role)
                msg = JointState(name=list(msg_names), position=values.tolist())
                msg.header.stamp = stamp
                pub.publish(msg)
            for role, rgb in (frames or {}).items():
                self.image_pubs[role].publish(image_message(stamp, role, rgb))
            if self.real_time_factor > 0:
                if start_sim is None or now < start_sim:
                    start_wall, start_sim = time.monotonic(), now
                ahead = (now - start_sim) / self.real_time_factor - (time.monotonic() - start_wall)
                if ahead > 0:
                    self._stop.wait(ahead)

    # ------------------------------------------------------------------ services
    def _on_reset(self, request, response):
        try:
            response.message = self._reset(int(request.seed))
            response.success = True
        except (ValueError, RuntimeError) as e:
            response.success, response.message = False, str(e)
        return response

    def _on_success(self, request, response):
        with self._lock:
            best, now, r = self._max_reward, self.sim.time, self.sim.reward()
        response.success = best >= self.sim.task.max_reward
        response.message = f"reward {r}/4 now, best {best}/4 this episode, at sim time {now:.2f} s"
        return response

    def destroy_node(self):
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.sim.close()
        return super().destroy_node()


def main(args=None) -> None:
    rclpy.init(args=args)
    node = None
    try:
        node = SimNode()
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        freeze_startup_objects()   # no full garbage collection walks start-up's objects
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # a second SIGINT (the terminal's and launch's) must not interrupt the join of the sim's thread: the
        # interpreter then exits under MuJoCo rendering in it (exit -11)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
