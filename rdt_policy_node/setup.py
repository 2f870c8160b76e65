"""Build script (ament_python): colcon builds it; `pip install -e` works too."""
from glob import glob

from setuptools import find_packages, setup

package_name = "rdt_policy_node"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/rdt_policy_node']),
        ('share/rdt_policy_node', ['package.xml']),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    extras_require={"test": ["pytest"]},
    maintainer="RDT ROS team",
    maintainer_email="rdt-ros@example.org",
    description="RDT deployment: observation window, chunk scheduler, interpolation and safety (ROS-free), and the rclpy node that streams commands to Kinova Gen3 or ALOHA.",
    license="MIT",
    entry_points={
        "console_scripts": [
            'policy_node = rdt_policy_node.node:main',
            'rdt-closed-loop = rdt_policy_node.closed_loop:main',
        ],
    },
)
