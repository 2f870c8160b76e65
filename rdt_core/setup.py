"""Build script (ament_python): colcon builds it; `pip install -e` works too."""
from glob import glob

from setuptools import find_packages, setup

package_name = "rdt_core"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={'rdt_core': ['data/*.json', 'profiles/*.yaml']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/rdt_core']),
        ('share/rdt_core', ['package.xml']),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    extras_require={"test": ["pytest"]},
    maintainer="RDT ROS team",
    maintainer_email="rdt-ros@example.org",
    description="ROS-free core of the RDT suite: the RDT network and sampler, checkpoint I/O, SigLIP/T5 encoders, the unified 128-dim vector, robot profiles, the HDF5 episode schema and the fake robot.",
    license="MIT",
    entry_points={
        "console_scripts": [
            'rdt-encode-instruction = rdt_core.encoders.language:main',
        ],
    },
)
