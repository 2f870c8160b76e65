"""RDT deployment runtime (ROS-free core) and its rclpy shell."""
