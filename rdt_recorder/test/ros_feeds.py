"""What the recorder's ROS tests feed it: small rgb8 cameras at 30 Hz and the Kinova joints at 100 Hz."""
import numpy as np

KINOVA_JOINTS = ["joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "joint_7",
                 "robotiq_85_left_knuckle_joint"]
JOINT_POSITIONS = [0.1 * j for j in range(len(KINOVA_JOINTS))]
CAMERA_VALUE = 60      # camera i's pixels are CAMERA_VALUE * (i + 1)


def publish_feeds(node, camera_topics: list[str]) -> None:
    """Publishers and timers on ``node``: 12x16 rgb8 frames on each topic, JointState on /joint_states."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState

    cams = [node.create_publisher(Image, t, qos_profile_sensor_data) for t in camera_topics]
    joints = node.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)

    def publish_cameras():
        for i, pub in enumerate(cams):
            msg = Image()
            msg.header.stamp = node.get_clock().now().to_msg()
            msg.height, msg.width, msg.encoding, msg.step = 12, 16, "rgb8", 48
            msg.data = bytes(np.full(12 * 48, CAMERA_VALUE * (i + 1), np.uint8))
            pub.publish(msg)

    def publish_joints():
        msg = JointState()
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.name, msg.position = KINOVA_JOINTS, JOINT_POSITIONS
        joints.publish(msg)

    node.create_timer(1 / 30, publish_cameras)
    node.create_timer(1 / 100, publish_joints)
