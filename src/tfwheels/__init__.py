"""tfwheels: build TensorFlow and TFF wheels from source with Bazel and prove them right."""

from __future__ import annotations

__version__ = "0.1.0"
