"""cywhip: named shared-memory message channels between processes on one machine.

A :class:`Sender` and a :class:`Receiver` meet by channel name and pass
messages through a ring buffer in ``/dev/shm``, in order, with nothing lost.
"""
import platform as _platform
import sys as _sys

_SUPPORTED_MACHINES = ("x86_64", "aarch64", "arm64")

if (_sys.platform != "linux" or _platform.machine().lower() not in _SUPPORTED_MACHINES
        or _sys.implementation.name != "cpython" or _sys.version_info < (3, 10)):
    raise ImportError(
        "cywhip needs CPython 3.10 or newer on Linux (x86-64 or aarch64); this is "
        f"{_sys.implementation.name} {_platform.python_version()} on {_sys.platform} "
        f"{_platform.machine()}")

from cywhip.errors import (  # noqa: E402
    ChannelBusyError,
    ChannelClosedError,
    ChannelCorruptError,
    ChannelMismatchError,
    CywhipError,
    MessageTooLongError,
    ReceiveTimeout,
    SendTimeout,
)

try:
    from cywhip._channel import Receiver, Sender  # noqa: E402
    from cywhip._codec import ReadBuffer, WriteBuffer  # noqa: E402
    from cywhip._admin import (  # noqa: E402
        ChannelInfo, GroupInfo, PlaceInfo, channels, remove_group, remove_stale,
    )
    from cywhip._region import unlink  # noqa: E402
except ImportError as _exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        f"cywhip's compiled core could not be loaded ({_exc}); install cywhip with "
        "'pip install .' so that its Cython extensions are built") from _exc

__version__ = "0.1.0"


def get_include() -> str:
    """The directory a build of a module that cimports cywhip's Cython API needs, for both
    Cython (``include_path``, where ``cywhip/capi.pxd`` is found) and the C compiler
    (``include_dirs``, where ``cywhip/capi.h`` is found): the directory holding the installed
    cywhip package.  See docs/api.md."""
    import os
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


__all__ = [
    "Sender",
    "Receiver",
    "WriteBuffer",
    "ReadBuffer",
    "unlink",
    "channels",
    "remove_stale",
    "get_include",
    "ChannelInfo",
    "PlaceInfo",
    "GroupInfo",
    "remove_group",
    "CywhipError",
    "ChannelBusyError",
    "ChannelClosedError",
    "ChannelCorruptError",
    "ChannelMismatchError",
    "MessageTooLongError",
    "ReceiveTimeout",
    "SendTimeout",
]
