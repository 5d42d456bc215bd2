"""Packaging for the miniature TensorFlow Federated: a native library that needs TensorFlow."""

import os

from setuptools import Distribution, setup


class BinaryDistribution(Distribution):
    """The wheel holds a native library, so it is tagged for one Python and one platform."""

    def has_ext_modules(self):
        return True


setup(
    name="tensorflow_federated",
    version=os.environ["TFF_VERSION"],
    description="Miniature TensorFlow Federated built from source by the tfwheels example workspace",
    packages=["tensorflow_federated"],
    package_data={"tensorflow_federated": ["libtff_core.so"]},
    install_requires=[os.environ["TF_REQUIREMENT"]],
    distclass=BinaryDistribution,
    python_requires=">=3.9",
    zip_safe=False,
)
