"""Episode recording and rosbag conversion for the RDT suite."""
