"""Build script (ament_python): colcon builds it; `pip install -e` works too."""
from glob import glob

from setuptools import find_packages, setup

package_name = "rdt_bringup"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/rdt_bringup']),
        ('share/rdt_bringup', ['package.xml']),
        ('share/rdt_bringup/launch', glob('launch/*.launch.py')),
        ('share/rdt_bringup/config', glob('config/*.yaml') + glob('config/*.xml')),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    extras_require={"test": ["pytest"]},
    maintainer="RDT ROS team",
    maintainer_email="rdt-ros@example.org",
    description="Launch files, commented parameter files and the fake-robot node of the RDT suite; the end-to-end demo.",
    license="MIT",
    entry_points={
        "console_scripts": [
            'fake_robot_node = rdt_bringup.fake_robot_node:main',
            'rdt-demo = rdt_bringup.demo:main',
        ],
    },
)
