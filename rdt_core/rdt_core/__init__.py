"""ROS-free core of the RDT suite: model, checkpoints, encoders, unified vector, robot profiles, episodes, fake robot."""
