"""Deprecation warnings for names that moved, reported at the line of the user's code that used the old path."""

import os
import sys
import warnings

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _internal(filename):
    return (filename.startswith("<frozen importlib") or filename.startswith(_PACKAGE_DIR)
            or os.sep + "importlib" + os.sep in filename)


def warn_moved(old, new):
    """Emits a DeprecationWarning saying that `old` moved to `new`, attributed to the first frame outside the package.

    Frames of keras_margin and of the import machinery are skipped, so the
    warning points at the user's import or attribute access (and Python's
    default filter, which shows DeprecationWarnings raised in `__main__`,
    shows it for a script).
    """
    frame, level = sys._getframe(1), 2  # stacklevel 1 is this function, 2 its caller
    while frame is not None and _internal(frame.f_code.co_filename):
        filename = frame.f_code.co_filename
        frame = frame.f_back
        # warnings.warn itself steps over importlib's bootstrap frames when it counts `stacklevel`
        level += not ("importlib" in filename and "_bootstrap" in filename)
    warnings.warn(f"{old} moved to {new}; the old path goes in the next release", DeprecationWarning,
                  stacklevel=level)
