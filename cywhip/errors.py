"""The exceptions cywhip raises.

Every error of cywhip's own derives from :class:`CywhipError`.  Timeouts
also derive from :class:`queue.Full` and :class:`queue.Empty`, and bad
arguments from :class:`ValueError`, so code written for
``multiprocessing.Queue`` catches them unchanged.
"""
import queue

__all__ = [
    "CywhipError",
    "ChannelBusyError",
    "ChannelClosedError",
    "ChannelCorruptError",
    "ChannelMismatchError",
    "MessageTooLongError",
    "SendTimeout",
    "ReceiveTimeout",
]


class CywhipError(Exception):
    """Base class of every error raised by cywhip itself."""


class ChannelMismatchError(CywhipError, ValueError):
    """The channel exists with a different geometry or message type than this end asked for."""


class ChannelCorruptError(CywhipError):
    """Shared memory holds values no correct peer could have written."""


class ChannelBusyError(CywhipError):
    """Every place for an end of this kind is held.

    ``pids`` lists the processes holding them (as last recorded; 0 for a place
    whose end has not yet recorded its pid), ``pid`` is the first of them.
    """

    def __init__(self, message, pid=None, pids=None):
        super().__init__(message)
        self.pid = pid
        self.pids = list(pids) if pids is not None else ([pid] if pid is not None else [])


class ChannelClosedError(CywhipError, ValueError):
    """The end was closed (or belongs to the parent of a forked process)."""


class MessageTooLongError(CywhipError, ValueError):
    """A message does not fit in ``message_length`` bytes."""


class SendTimeout(CywhipError, queue.Full):
    """A send timed out on a full ring; ``sent`` messages of the call went out first."""

    def __init__(self, message, sent=0):
        super().__init__(message)
        self.sent = sent


class ReceiveTimeout(CywhipError, queue.Empty):
    """A receive timed out on an empty ring."""
