"""Build script (ament_python): colcon builds it; `pip install -e` works too."""
from glob import glob

from setuptools import find_packages, setup

package_name = "rdt_training"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={"rdt_training": ["configs/*.json"], "rdt_training.review": ["templates/*"]},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/rdt_training']),
        ('share/rdt_training', ['package.xml']),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    extras_require={"test": ["pytest"]},
    maintainer="RDT ROS team",
    maintainer_email="rdt-ros@example.org",
    description="Fine-tunes RDT on recorded HDF5 episodes (accelerate / DeepSpeed) and exports checkpoints the policy node loads.",
    license="MIT",
    entry_points={
        "console_scripts": [
            'train = rdt_training.train:main',
            'rdt-train = rdt_training.train:main',
            'rdt-dataset-stats = rdt_training.stats:main',
            'rdt-dataset-info = rdt_training.info:main',
            'rdt-dataset-edit = rdt_training.edit:main',
            'rdt-dataset-review = rdt_training.review.__main__:main',
        ],
    },
)
