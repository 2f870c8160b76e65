"""Build script (ament_python): colcon builds it; `pip install -e` works too."""
from setuptools import find_packages, setup

package_name = "rdt_sim"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/rdt_sim']),
        ('share/rdt_sim', ['package.xml']),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    extras_require={"test": ["pytest"]},
    maintainer="RDT ROS team",
    maintainer_email="rdt-ros@example.org",
    description="The physics ALOHA (MuJoCo, gym-aloha's model files), scripted experts, sim time, evaluation "
                "under inference latency, the record-train-deploy pipeline and the sim node.",
    license="MIT",
    entry_points={
        "console_scripts": [
            'sim_node = rdt_sim.sim_node:main',
            'rdt-sim-evaluate = rdt_sim.evaluate:main',
            'rdt-sim-pipeline = rdt_sim.pipeline:main',
        ],
    },
)
