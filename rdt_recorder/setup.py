"""Build script (ament_python): colcon builds it; `pip install -e` works too."""
from glob import glob

from setuptools import find_packages, setup

package_name = "rdt_recorder"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/rdt_recorder']),
        ('share/rdt_recorder', ['package.xml']),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    extras_require={"test": ["pytest"]},
    maintainer="RDT ROS team",
    maintainer_email="rdt-ros@example.org",
    description="Synchronized HDF5 episode recording (rclpy shell over a ROS-free writer) and the rosbag2 to HDF5 converter.",
    license="MIT",
    entry_points={
        "console_scripts": [
            'record = rdt_recorder.node:main',
            'bag2hdf5 = rdt_recorder.bag2hdf5:main',
            'recover = rdt_recorder.recover:main',
        ],
    },
)
