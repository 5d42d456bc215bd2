"""Miniature TensorFlow, built from source by tfwheels' example workspace."""

import ctypes
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
_lib = ctypes.CDLL(os.path.join(_HERE, "libtensorflow_framework.so.2"), mode=ctypes.RTLD_GLOBAL)
_lib.TF_Version.restype = ctypes.c_char_p
_lib.TF_Sum.restype = ctypes.c_double
_lib.TF_Sum.argtypes = [ctypes.POINTER(ctypes.c_double), ctypes.c_int]

__version__ = _lib.TF_Version().decode()


def reduce_sum(values):
    """Sum a list of numbers in native code."""
    array = (ctypes.c_double * len(values))(*values)
    return _lib.TF_Sum(array, len(values))
