"""A kinematic fake robot for demos and tests without hardware (like ros2_kortex's mock hardware).

Joints track position commands under the profile's velocity limits; three synthetic cameras render the
arm and a target; seeded and deterministic.
"""
# CONTRACT (implemented by the data-core helper):
# class FakeRobot:
#     def __init__(self, profile: RobotProfile, *, seed=0, image_size=(480, 640), home=None)
#     profile; time_s: float (simulated time, starts at 0)
#     def reset(self, qpos=None, target=None) -> None      # new random target from the seed when None
#     def command(self, positions (D,)) -> None           # position target, clipped to limits
#     def step(self, dt: float) -> None                    # advance simulated time; joints move toward the command at <= max_velocity
#     def joint_positions(self) -> np.ndarray (D,)
#     target: np.ndarray (D,) joint-space goal shown in the images (a coloured marker)
#     def render(self) -> dict[str, np.ndarray]            # camera role -> (H,W,3) uint8 RGB, for the profile's cameras
#     def expert_action(self, horizon_s=None) -> np.ndarray (D,)   # scripted expert: next position command toward target
#     def distance_to_target(self) -> float
