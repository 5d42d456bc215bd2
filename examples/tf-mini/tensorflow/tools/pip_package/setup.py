"""Packaging for the miniature TensorFlow: the native library and headers are package data."""

import os

from setuptools import Distribution, setup


class BinaryDistribution(Distribution):
    """The wheel holds a native library, so it is tagged for one Python and one platform."""

    def has_ext_modules(self):
        return True


setup(
    name="tensorflow",
    version=os.environ["TF_VERSION"],
    description="Miniature TensorFlow built from source by the tfwheels example workspace",
    packages=["tensorflow"],
    package_data={"tensorflow": ["libtensorflow_framework.so.2", "include/**/*.h"]},
    distclass=BinaryDistribution,
    python_requires=">=3.9",
    zip_safe=False,
)
