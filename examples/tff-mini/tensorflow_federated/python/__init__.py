"""Miniature TensorFlow Federated, built from source by tfwheels' example workspace."""

import ctypes
import importlib.metadata
import os

import tensorflow  # loads libtensorflow_framework, which the native library below links

_HERE = os.path.dirname(os.path.abspath(__file__))
_lib = ctypes.CDLL(os.path.join(_HERE, "libtff_core.so"))
_lib.TFF_FederatedSum.restype = ctypes.c_double
_lib.TFF_FederatedSum.argtypes = [ctypes.POINTER(ctypes.c_double), ctypes.c_int]

__version__ = importlib.metadata.version("tensorflow_federated")
tensorflow_version = tensorflow.__version__


def federated_sum(client_values):
    """Sum one value per client in native code."""
    array = (ctypes.c_double * len(client_values))(*client_values)
    return _lib.TFF_FederatedSum(array, len(client_values))
