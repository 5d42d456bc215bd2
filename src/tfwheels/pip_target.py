"""Run pip with environment markers evaluated for another machine: ``python -m tfwheels.pip_target
ENV_JSON PIP_ARGS...``.

pip's ``--platform`` and ``--python-version`` choose wheels for another machine, but markers
(``; sys_platform == "darwin"``, ``; python_version < "3.12"``) are still evaluated for the
machine pip runs on (pypa/pip#11664, open; pex works around it the same way). A resolve for a
Mac from Linux would then leave out Mac-only dependencies and pull in Linux-only ones. This
replaces the marker environment of pip's vendored packaging with the target's, then runs pip.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    """Patch pip's marker environment with ``argv[0]`` (JSON) and run pip with the rest."""
    environment: dict[str, str] = json.loads(argv[0])
    from pip._internal.cli.main import main as pip_main
    from pip._vendor.packaging import markers

    if hasattr(markers, "default_environment"):
        markers.default_environment = lambda: dict(environment)  # type: ignore[assignment]
    else:  # a pip whose vendored packaging moved it: resolve as plain pip does
        print("warning: markers are evaluated for this machine, not the target", file=sys.stderr)
    return int(pip_main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
