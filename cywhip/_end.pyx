# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""What every kind of end shares: opening (region, ring, codec), the one-thread guard,
waiting, fork safety and closing from any thread.

A kind of end (Sender, Receiver, and those to come) subclasses _End, brackets
each call with _enter()/_leave() (inline, in _end.pxd), waits through _wait(),
and never decides for itself whether it is open or how to close.
"""
import atexit
import os
import time
import weakref

from cpython.exc cimport PyErr_CheckSignals
from cpython.ref cimport Py_DECREF
from libc.stdint cimport int64_t, uint64_t

from cywhip._codec cimport choose_codec
from cywhip._region cimport Region, END_SENDER, END_RECEIVER
from cywhip.includes.c_layout cimport (
    CW_MAX_PLACES, CW_TOPOLOGY_GROUPS, CW_TOPOLOGY_ONE_RECEIVER, CW_RECORDS_FIXED, CW_RECORDS_BYTES,
    cw_group, CW_GROUP_IN_USE,
)
from cywhip.includes.c_guard cimport cw_guard_holder, cw_guard_take, cw_thread_self, CW_GUARD_CALL
from cywhip._ring cimport (
    ring_attach, ring_attach_groups, ring_wait, ring_interrupt, ring_depth, ring_claim, ring_available_now,
    ring_refresh_free, ring_read_position, monotonic_ns, SLEEP_SLICE_NS, ring_bytes_adopt, ring_bytes_adopted,
    CORRUPT_RECORD, CORRUPT_CLAIM, CORRUPT_OWNER, CORRUPT_HOLE, CORRUPT_TWO, CORRUPT_DEAD, CORRUPT_INTENT,
    CORRUPT_DEAD_PLACE, CORRUPT_RELEASE, CORRUPT_PAIR, CORRUPT_READ, CORRUPT_CLAIM_END,
    WAIT_READY, WAIT_TIMEOUT, WAIT_CORRUPT, WAIT_STOPPED,
    ring_fd_open, ring_fd_arm, ring_fd_disarm, ring_fd_drain, ring_fd_poke, ring_fd_close, group_position,
)
from libc.errno cimport EADDRINUSE

from cywhip._region import check_byte_geometry, check_geometry, check_group
from cywhip import _region as _region_module
from cywhip._types import OBJECT_FORM, record_type
from cywhip.errors import ChannelBusyError, ChannelClosedError, ChannelCorruptError

# Slot channels' max_queued_messages when an end gives neither it nor max_queued_bytes.
DEFAULT_MAX_QUEUED_MESSAGES = 1024

# Longest accepted timeout, in seconds (keeps nanosecond deadlines in range).
MAX_SECONDS = 1e9


# ------------------------------------------------------------------ fork safety

# Every open end of this process.  In a forked child each is abandoned: the
# child drops its copy of the mapping and the claim without touching shared
# memory, and the end refuses to work there.
_live_ends = weakref.WeakSet()


def _after_fork_in_child():
    for end in list(_live_ends):
        (<_End>end)._abandon()


os.register_at_fork(after_in_child=_after_fork_in_child)


# Set once the exit handler below runs: an end closed from then on keeps the reference its
# Cython API handle holds (_drop_handle_reference()).
cdef bint _exiting = False


@atexit.register
def _close_all_at_exit():
    # A thread of another extension may still hold a handle of an end and call through it
    # while the interpreter finalizes (a C thread, which Python neither joins nor stops):
    # the ends closed here are never freed, so its calls get CLOSED until the process ends.
    global _exiting
    _exiting = True
    for end in list(_live_ends):
        try:
            end.close()
        except Exception:
            pass


# ---------------------------------------------------------------------- checks

cdef int64_t deadline_ns(object timeout) except -2:
    """Absolute CLOCK_MONOTONIC deadline in ns for a timeout in seconds; -1 for None."""
    if timeout is None:
        return -1
    cdef double t
    try:
        t = timeout
    except TypeError:
        raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__} ({timeout!r})") from None
    if not t >= 0:
        raise ValueError(f"timeout must be a non-negative number of seconds, or None to wait as "
                         f"long as it takes; got {timeout!r}")
    if t > MAX_SECONDS:
        t = MAX_SECONDS
    return monotonic_ns() + <int64_t>(t * 1e9)


cdef int64_t _spin_ns(object spin_time) except -1:
    cdef double t
    try:
        t = spin_time
    except TypeError:
        raise TypeError(f"spin_time must be a number of seconds, not {type(spin_time).__name__} ({spin_time!r})") from None
    if not (0 <= t <= 1):
        raise ValueError(f"spin_time must be between 0 and 1 second, got {spin_time!r}")
    return <int64_t>(t * 1e9)


cdef object _check_mode(object mode):
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise TypeError(f"mode must be an int, not {type(mode).__name__} ({mode!r})")
    # An end reads and writes the channel: only the owner (0o600), or the owner and
    # the group (0o660), can ever use it.  0o620 or 0o640 would let no group member open it.
    if mode != 0o600 and mode != 0o660:
        raise ValueError(f"mode must be 0o600 (this user) or 0o660 (this user and the file's "
                         f"group, both read-write), got {mode:#o}")
    return mode


cdef int _check_places(str what, object value) except -1:
    """max_senders and the like: a whole number of places, 1 to CW_MAX_PLACES."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__} ({value!r})")
    if not 1 <= value <= CW_MAX_PLACES:
        raise ValueError(f"{what} must be between 1 and {CW_MAX_PLACES}, got {value}")
    return 0


cpdef int check_count(object max_count) except -1:
    if isinstance(max_count, bool) or not isinstance(max_count, int):
        raise TypeError(f"max_count must be an int, not {type(max_count).__name__} ({max_count!r})")
    if max_count < 1:
        raise ValueError(f"max_count must be at least 1, got {max_count}")
    return 0


# -------------------------------------------------------------------------- ends

cdef class _End:
    """What a Sender and a Receiver share: the region, the ring, the codec, closing, fork safety."""

    def __cinit__(self):
        self.region = None
        self.owner_pid = os.getpid()
        self.busy = 0
        self.busy_thread = 0
        self.bias = NULL
        self.closing = 0
        self.forked = 0
        self.handle_held = 0

    cdef int _open(self, name, message_length, max_queued_messages, int end, object spin_time,
                   object mode, object message_type, object serializer, object deserializer,
                   object max_senders=1, object max_receivers=1, object group="",
                   object durable=True, object max_queued_bytes=None) except -1:
        """Open (or create) the channel, claim this end's place, attach the ring, choose the codec.

        With max_queued_bytes, a byte channel (messages of any size up to message_length, in a
        ring of that many bytes); else a slot channel of max_queued_messages slots (default
        DEFAULT_MAX_QUEUED_MESSAGES) of message_length bytes.
        """
        if self.region is not None:
            raise RuntimeError(f"{type(self).__name__} is already open")
        _check_places("max_senders", max_senders)
        _check_places("max_receivers", max_receivers)
        check_group(group, durable, max_receivers)
        topology = CW_TOPOLOGY_GROUPS if max_receivers > 1 else CW_TOPOLOGY_ONE_RECEIVER
        cdef int64_t spin_ns = _spin_ns(spin_time)
        cdef bint byte_ring = max_queued_bytes is not None
        rtype = None
        if byte_ring:
            if max_queued_messages is not None:
                raise ValueError(
                    f"give max_queued_messages (a channel of slots of message_length bytes) or "
                    f"max_queued_bytes (a channel of messages of any size in a ring of that many "
                    f"bytes), not both: got max_queued_messages={max_queued_messages!r} and "
                    f"max_queued_bytes={max_queued_bytes!r}")
            if message_type is not None and message_type is not object:
                raise TypeError(
                    f"message_type={message_type!r} needs a slot channel (records of one size): "
                    f"give max_queued_messages instead of max_queued_bytes={max_queued_bytes!r}")
            message_length, max_queued_messages = check_byte_geometry(message_length, max_queued_bytes,
                                                                      max_senders)
        elif max_queued_messages is None:
            max_queued_messages = DEFAULT_MAX_QUEUED_MESSAGES
        if message_type is object:
            # Pickled Python objects (_codec.ObjectCodec): a form of its own, not a record type.
            rtype = OBJECT_FORM
            if message_length is None and not byte_ring:
                raise TypeError(f"{type(self).__name__}(message_type=object) needs message_length: "
                                f"the largest pickled message in bytes (or max_queued_bytes, a "
                                f"byte channel, whose message_length is optional)")
        elif byte_ring:
            pass   # message_length is the cap of one message, optional: checked above
        elif message_type is not None:
            rtype = record_type(message_type)
            if message_length is None:
                message_length = rtype.size
            elif message_length != rtype.size:
                raise ValueError(f"message_length={message_length!r} disagrees with message_type "
                                 f"{message_type!r}, whose records are {rtype.size} bytes; "
                                 f"leave message_length out")
        elif message_length is None:
            raise TypeError(f"{type(self).__name__}() needs message_length (the largest message "
                            f"in bytes) or message_type")
        if not byte_ring:
            message_length, max_queued_messages = check_geometry(message_length, max_queued_messages)
        open_args = (name, message_length, max_queued_messages, end, spin_ns, rtype, mode,
                     max_senders, max_receivers, topology, group, durable, byte_ring)
        cdef Region region = self._attach(open_args)
        # A byte channel's end that left message_length out takes the channel's.
        message_length = region.message_length
        if topology == CW_TOPOLOGY_GROUPS:
            member = end == END_RECEIVER
            if ring_attach_groups(
                    &self.ring, max_receivers, member,
                    region.group_index if member else 0,
                    region.group_tag if member else 0,
                    region.place if member else 0) != 0:
                region.close()
                raise ChannelCorruptError(
                    f"channel {region.name!r} is corrupt: the claim in receiver place {region.place} is "
                    f"{self.ring.bad_cursor}..{self.ring.bad_write}, max_queued_messages {max_queued_messages}")
        self.region = region
        self.name = region.name
        self.message_length = message_length
        if byte_ring:
            self.max_queued_bytes = max_queued_messages
            # The most records the ring holds (each at least its 8-byte header): a bound for
            # the batch calls, which count messages.
            self.max_queued_messages = max_queued_messages // 8
        else:
            self.max_queued_bytes = None
            self.max_queued_messages = max_queued_messages
        self.max_senders = max_senders
        self.max_receivers = max_receivers
        self.codec = choose_codec(region.name, message_length, rtype, serializer, deserializer)
        self.record_size = self.codec.record_size
        if byte_ring and max_senders > 1 and end == END_SENDER:
            try:
                self._adopt(open_args)
            except BaseException:
                # Nothing claimed yet: the place goes back (S0 is done again by the next sender).
                region = self.region
                self.region = None
                region.close()
                raise
        _live_ends.add(self)
        return 0

    cdef Region _attach(self, tuple args):
        """Open the channel's region (claiming a free place of this end's kind) and attach
        self.ring to it; return the region.  ``args``: _open()'s checked arguments."""
        name, message_length, max_queued_messages, end, spin_ns, rtype, mode, max_senders, \
            max_receivers, topology, group, durable, byte_ring = args
        cdef Region region = Region.open(name, message_length, max_queued_messages, end,
                                         rtype=rtype, mode=_check_mode(mode), max_senders=max_senders,
                                         max_receivers=max_receivers, topology=topology,
                                         group=group, durable=durable,
                                         records=CW_RECORDS_BYTES if byte_ring else CW_RECORDS_FIXED)
        message_length = region.message_length
        # The geometry is the one this end asked for and the region checked:
        # never read again from the header, where it could change under us.
        if ring_attach(&self.ring, region.hdr, region.slots_offset, max_queued_messages, message_length,
                       spin_ns, max_senders, region.fd,
                       # A sender of many: its place, whose intent word the ring clears (step S0).
                       region.place if end == END_SENDER else -1, max_receivers, byte_ring) != 0:
            region.close()
            if self.ring.corrupt_why == CORRUPT_RELEASE:
                raise ChannelCorruptError(
                    f"channel {region.name!r} is corrupt: the receiver place records a release up to "
                    f"byte {self.ring.bad_cursor}, past the claim cursor {self.ring.bad_write} or "
                    f"unaligned (read cursor {ring_read_position(&self.ring)}); remove the channel "
                    f"and create it anew")
            unaligned = (" (not a multiple of 8: no record starts there)"
                         if byte_ring and self.ring.bad_cursor % 8 else "")
            raise ChannelCorruptError(
                f"channel {region.name!r} is corrupt: write cursor {self.ring.bad_cursor}{unaligned}, "
                f"read cursor {ring_read_position(&self.ring)}, "
                f"{'max_queued_bytes' if byte_ring else 'max_queued_messages'} {max_queued_messages}; "
                f"remove the channel and create it anew")
        return region

    @property
    def message_type(self):
        """The ctypes type or NumPy dtype of a typed end, ``object`` for an end of Python objects;
        None for an untyped one."""
        return self.codec.rtype.source if self.codec is not None and self.codec.rtype is not None else None

    cdef int _check_open(self) except -1:
        """Raise unless this end is open (and ours, not a forked child's)."""
        if self.region is None:
            self._raise_closed()
        return 0

    cdef int _raise_closed(self) except -1:
        kind = type(self).__name__
        if self.forked:
            raise ChannelClosedError(
                f"{kind} {self.name!r} belongs to process {self.owner_pid}; it cannot be used in "
                f"process {os.getpid()}, which was forked from it. Open a new {kind} in the child.")
        if self.name is None:
            raise ChannelClosedError(f"{kind} was never opened")
        raise ChannelClosedError(f"{kind} {self.name!r} is closed")

    cdef int _refuse(self) except -1:
        """Raise for a call that _enter() turned away."""
        if self.region is None or _closing(self):
            self._raise_closed()
        raise RuntimeError(
            f"{type(self).__name__} {self.name!r} is already in use by another call; "
            f"an end may be used by one thread at a time")

    cdef int _wait(self, int64_t deadline) except -1:
        """Wait for room (a sender) or a message (a receiver); 1 when ready, 0 on timeout."""
        cdef int st, outcome
        cdef bint sending = self.sending
        while True:
            with nogil:
                st = ring_wait(&self.ring, sending, deadline, SLEEP_SLICE_NS)
            outcome = self._waited(st)
            if outcome != WAITED_AGAIN:
                return outcome

    cdef int _waited(self, int st) except -1:
        """What a wait's result (a WAIT_* of the ring) means for a Python call: 1 ready, 0 timed
        out, WAITED_AGAIN wait again (after running signal handlers: Ctrl-C raises here).
        Raises for impossible cursors and for close() from another thread."""
        if st == WAIT_READY:
            return 1
        if st == WAIT_TIMEOUT:
            return 0
        if st == WAIT_CORRUPT:
            self._raise_corrupt()
        if st == WAIT_STOPPED:
            self._raise_closed()
        # WAIT_AGAIN (a slice of sleep ended) or WAIT_INTERRUPTED (a signal arrived).
        PyErr_CheckSignals()
        return WAITED_AGAIN

    cdef int _ready_now(self) except -1:
        """Whether there is room (a sender: with many senders, a slot claimed for it to fill at
        once) or a message (a receiver) right now, without waiting."""
        cdef int64_t n = ring_claim(&self.ring) if self.sending else ring_available_now(&self.ring)
        if n < 0:
            self._raise_corrupt()
        return n > 0

    cdef int _ready_peek(self) except -1:
        """Whether there is room (a sender) or a message (a receiver) right now, claiming
        nothing: for a waiter that takes later, through the ordinary calls."""
        cdef int64_t n = ring_refresh_free(&self.ring) if self.sending else ring_available_now(&self.ring)
        if n < 0:
            self._raise_corrupt()
        return n > 0

    cdef int _adopt(self, tuple open_args) except -1:
        """A sender of a byte channel of many senders, step S0 (S0a-S0f) on its place (the
        region self.region): a claim its dead predecessor left is voided or kept for the
        receiver.  S0d cannot go on until the receiver has passed the place's earlier dead
        claim (two senders died on this place, each with a claim committed, and the receiver
        has not passed the first): then this end takes another free place if there is one
        (holding this one meanwhile, so that the claim skips it); with none, it waits for the
        receiver, looking again every millisecond and handling signals between looks (Ctrl-C
        gives the place back), and raises ChannelBusyError when no receiver is open, which
        would leave it waiting for ever."""
        cdef int st
        cdef Region region = self.region
        held = []
        try:
            while True:
                with nogil:
                    st = ring_bytes_adopt(&self.ring)
                if st != 0:
                    break
                held.append(region)
                try:
                    region = self._attach(open_args)
                except ChannelBusyError:
                    # Every other place is held (or waits as this one does): wait on this one.
                    held.pop()
                    break
                self.region = region
                if open_args[8] > 1:
                    # Receiver groups: the bound is theirs (a sender's ring_attach_groups()
                    # reads nothing that can be impossible).
                    ring_attach_groups(&self.ring, open_args[8], False, 0, 0, 0)
        finally:
            for other in held:
                (<Region>other).close()
        while st == 0:
            # (bad_cursor 0: no bound was known, a moment's state that the next look resolves.)
            if self.ring.bad_cursor != 0 and not region.receiver_open():
                if self.ring.groups:
                    who, taken, opened = ("every receiver group", "the slowest group has",
                                          "no member of a group is open. Open the groups' members "
                                          "first (they step over the dead claims), or remove the "
                                          "groups that are not coming back (cywhip.remove_group()),")
                else:
                    who, taken, opened = ("the receiver", "it has", "no receiver is open. Open the "
                                          "receiver first (it steps over the dead claims),")
                raise ChannelBusyError(
                    f"channel {region.name!r}: sender place {region.place} holds the claims of two "
                    f"senders that died there, and no new sender can use it before {who} "
                    f"has taken the messages up to byte {self.ring.bad_cursor} ({taken} taken up to "
                    f"byte {self.ring.bad_write}); every other sender place is held, and "
                    f"{opened} or close another sender")
            time.sleep(0.001)
            with nogil:
                st = ring_bytes_adopt(&self.ring)
        if st < 0:
            raise ChannelCorruptError(self._corrupt_text())
        if st == 2:
            # Between S0e and S0f: the moment tests kill a new sender at.
            hook = _region_module._test_hook
            if hook is not None:
                hook("adopt", region.path)
            ring_bytes_adopted(&self.ring)
        return 0

    def _corrupt_text(self):
        """What a byte ring of many senders found impossible (the ring's corrupt_why), with the
        values it read."""
        texts = {
            CORRUPT_RECORD: "the record at byte {cur} has kind word {write:#x} and length {n}; a record "
                            "is a message of at most message_length={ml} bytes, padding to the ring's "
                            "end or a void, whole inside the {ring}-byte ring",
            CORRUPT_CLAIM: "the claim word {write:#x} gives claim cursor {cur}, more than the {ring}-byte "
                           "ring past the read cursor",
            CORRUPT_READ: "the read cursor {cur} is not a multiple of 8, or not within the {ring}-byte ring "
                          "behind the claim cursor {write}",
            CORRUPT_OWNER: "the claim word {write:#x} (claim cursor {cur}) names owner {n:#x}, which no "
                           "other of its {ms} sender places can be",
            CORRUPT_HOLE: "nothing is published at byte {cur} (claim cursor {write}) and no sender "
                          "place's intent or dead claim covers it",
            CORRUPT_TWO: "two claims cover the unpublished byte {cur}, one ending at {write}, the other "
                         "at {n}",
            CORRUPT_DEAD: "the dead claim covering byte {cur} ends at {write}, past the claim cursor {n} "
                          "or unaligned",
            CORRUPT_INTENT: "this sender's place holds an intent for byte {cur} of {n} bytes, which the "
                            "claim cursor ({write}) and the {ring}-byte ring make impossible",
            CORRUPT_CLAIM_END: "the claim cursor {write} is 8 bytes past byte {cur}, the last 8 bytes of the "
                               "{ring}-byte ring, where no claim ends (a claim there takes a record "
                               "after them); remove the channel and create it anew",
            CORRUPT_PAIR: "sender place {n} holds a claim at byte {cur} of {write} bytes, which covers the "
                          "read cursor but is unaligned, shorter than a record header or longer than the "
                          "{ring}-byte ring",
            CORRUPT_DEAD_PLACE: "this sender's place holds a dead claim at byte {cur} of {n} bytes, which "
                                "is not whole before the place's later claim at byte {write} in the "
                                "{ring}-byte ring (a new sender would wait for ever for the receiver "
                                "to pass it); remove the channel and create it anew",
        }
        text = texts.get(self.ring.corrupt_why)
        if text is None:
            return None
        return f"channel {self.name!r} is corrupt: " + text.format(
            cur=self.ring.bad_cursor, write=self.ring.bad_write, n=self.ring.bad_length,
            ml=self.message_length, ring=self.max_queued_bytes, ms=self.max_senders)

    cdef int _raise_corrupt(self) except -1:
        """Raise for impossible cursors: this end's own cursor and the other's as the ring read it."""
        if self.ring.corrupt_why:
            raise ChannelCorruptError(self._corrupt_text())
        if self.ring.groups:
            raise ChannelCorruptError(self._groups_corrupt_text())
        if self.sending:
            write, read = self.ring.bad_write, self.ring.bad_cursor
        else:
            write, read = self.ring.bad_cursor, ring_read_position(&self.ring)
        raise ChannelCorruptError(
            f"channel {self.name!r} is corrupt: write cursor {write}, "
            f"read cursor {read}, max_queued_messages {self.max_queued_messages}")

    def _groups_corrupt_text(self):
        """An impossible position on a channel with receiver groups: a group's (the slowest
        one's, for a sender; a member's own group's claim cursor or position) against the write
        cursor, as the ring read them (bad_cursor, bad_write)."""
        cdef uint64_t pos = self.ring.bad_cursor, write = self.ring.bad_write
        if self.max_queued_bytes is not None:
            size = f"{self.max_queued_bytes}-byte ring"
            start = " and a record's start (a multiple of 8)"
        else:
            size = f"{self.max_queued_messages}-message ring"
            start = ""
        if self.sending:
            names = self._groups_at(pos)
            who = "the slowest receiver group's position" + (
                f" (group {', '.join(map(repr, names))})" if names else "")
        else:
            who = f"the position of this member's group {self._group_name(self.ring.group)!r}"
        return (f"channel {self.name!r} is corrupt: {who} is {pos}, which must be at most the write "
                f"cursor {write}, within the {size} behind it{start}; remove the channel "
                f"(cywhip.unlink({self.name!r})) and create it anew")

    cdef str _group_name(self, cw_group *e):
        """A group entry's name as the entry holds it now (for a text only: its length is
        clamped, its bytes decoded with replacement)."""
        cdef uint32_t n = e.name_len
        if n > sizeof(e.name):
            n = sizeof(e.name)
        return e.name[:n].decode("utf-8", "replace")

    cdef list _groups_at(self, uint64_t position):
        """The names of the groups in use whose position is ``position`` (for a text)."""
        cdef uint32_t g
        cdef cw_group *e
        names = []
        for g in range(self.ring.max_receivers):
            e = <cw_group *>(self.ring.gtable + g * sizeof(cw_group))
            if e.flags & CW_GROUP_IN_USE and group_position(
                    self.ring.rplaces, self.ring.max_receivers, e, (e.epoch << 32) | (g + 1)) == position:
                names.append(self._group_name(e))
        return names

    cdef void _finish_close(self):
        """Unmap and let go of the channel.  Only a thread that holds the guard (or the last
        thread of a forked child) gets here, so no call is inside the mapping."""
        region = self.region
        self.region = None
        if region is not None:
            # A descriptor handed out by fileno() stays open (its number is not reused under
            # a selector that still watches it) and becomes readable for good: whoever waits
            # on it looks again and finds the end closed.  It is closed when the end is freed.
            ring_fd_disarm(&self.ring, self.sending)
            ring_fd_poke(&self.ring)
        if region is not None and self.ring.groups and self.ring.group != NULL:
            # A member may have moved into a dead member's place to finish its claim.
            (<Region>region).place = self.ring.place_index
        self.ring.hdr = NULL
        if region is not None:
            region.close()
        _live_ends.discard(self)
        self._drop_handle_reference()

    cdef void _drop_handle_reference(self):
        """An end with a Cython API handle held a reference to itself while open (so that the
        handle could not outlive it unnoticed); closed, it lets go.  Every caller holds a
        reference of its own, so this never frees the end under it.

        Not in a forked child, nor once the exit handler has run: there the end was not closed
        by its user, whose code (a C thread, the child's) may still call through the handle
        and must get CLOSED, not freed memory; the end then lives as long as the process."""
        if self.handle_held and not self.forked and not _exiting:
            self.handle_held = 0
            Py_DECREF(self)

    cdef void _abandon(self):
        """In a forked child: drop this process's copy of the mapping without touching shared
        memory.  An end with a Cython API handle keeps its reference to itself: the child may
        hold nothing else of it, and its handle must go on saying CLOSED there."""
        self.forked = 1
        # Calls of the Cython API in the child get CLOSED.
        cw_store_release_i32(&self.closing, 1)
        # The wake descriptors are the parent's: the child lets go of its copies (the parent's
        # socket keeps its name), so nothing in the child waits on the parent's wake-ups.
        ring_fd_close(&self.ring)
        if self.region is not None:
            (<Region>self.region).unmap()
            self.region = None
            self.ring.hdr = NULL

    cdef int _close(self) except -1:
        """Close now; while a call is using the end, stop it and return once it has let go.

        From inside that call's own thread (a callback of it), only ask: the
        call closes the end on its way out.  The end is unmapped only by a
        thread holding the guard, so a call of the Cython API in another
        thread never finds its mapping gone.
        """
        if self.region is None:
            return 0
        # From here on calls refuse to start: Python calls raise ChannelClosedError,
        # calls of the Cython API return CLOSED.
        cw_store_release_i32(&self.closing, 1)
        if cw_guard_take(&self.busy, &self.bias, CW_GUARD_CALL):
            # No call in progress, and none can start while this thread holds the guard.
            self.busy_thread = cw_thread_self()
            self._finish_close()
            cw_guard_give(&self.busy)
            return 0
        # Wake the call in progress from any wait (it then sees ring.stop).
        ring_interrupt(&self.ring, self.sending)
        if cw_guard_holder(&self.busy) == CW_GUARD_CALL and self.busy_thread == cw_thread_self():
            return 0
        return self._close_when_free()

    cdef int _close_when_free(self) except -1:
        """Wait until the call in another thread, told to stop, has let go of the end; then
        close it holding the guard (nothing to do if that call closed it on its way out)."""
        cdef double pause = 0.0001
        while not self.forked:
            if cw_guard_take(&self.busy, &self.bias, CW_GUARD_CALL):
                self.busy_thread = cw_thread_self()
                self._finish_close()
                cw_guard_give(&self.busy)
                return 0
            # The GIL is released while sleeping: the other call runs to its end.
            time.sleep(pause)
            pause = min(pause * 2, 0.005)
        return 0

    def __dealloc__(self):
        ring_fd_close(&self.ring)

    # ------------------------------------------------------- waiting on a descriptor

    cdef int _open_fd(self) except -1:
        """Make this end's wake descriptor (ring_fd_open()), under the guard."""
        cdef int rc = ring_fd_open(&self.ring, self.sending)
        if rc == 0:
            return 0
        if rc == -EADDRINUSE:
            raise OSError(-rc, f"{type(self).__name__} {self.name!r} cannot wait on a file "
                               f"descriptor: another socket of this network namespace holds its wake "
                               f"name. Use the blocking calls, or close and open the end again (its "
                               f"name changes with every opening of its place)")
        raise OSError(-rc, f"{type(self).__name__} {self.name!r} cannot make its wake descriptor: "
                           f"{os.strerror(-rc)}")

    def fileno(self):
        """A file descriptor that becomes readable when this end may have something to do: a
        message (a Receiver), room (a Sender), or a look it owes (a peer that died may have
        left it something).  For ``selectors``, ``loop.add_reader``, trio's ``wait_readable``
        and the like; it is never written to or read by its user.

        Readable means "look again" (``try_recv()``, ``try_send()``); a look that finds
        nothing arms it (and reads it empty): every call of this end that returns for lack of
        messages (room), ``None``, ``False``, ``[]`` or a timeout error, leaves it armed.  It
        starts readable.  It stays open, and readable, after ``close()`` (until the end is
        freed); a forked child cannot use it.  See docs/guide-channels.md, "Waiting on a file
        descriptor".
        """
        if self.region is None or _closing(self):
            self._check_open()
            self._raise_closed()
        if self.ring.fd_wait:
            return self.ring.wake_ep
        _enter(self)
        try:
            self._open_fd()
            self.ring.fd_wait = True
            # Readable at first: whatever came before this call is looked at.
            ring_fd_poke(&self.ring)
        finally:
            _leave(self)
        return self.ring.wake_ep

    def _wake_fd(self):
        """The wake descriptor, without arming it on every look that finds nothing (the asyncio
        face arms it itself, _arm_fd())."""
        if self.ring.fd_open and self.region is not None:
            return self.ring.wake_ep
        _enter(self)
        try:
            self._open_fd()
        finally:
            _leave(self)
        return self.ring.wake_ep

    def _arm_fd(self):
        """Arm the wake descriptor (ring_fd_arm(), its bytes left for the caller to read):
        True if the look that follows the announcement found room (messages): go on."""
        cdef int64_t n
        _enter(self)
        try:
            n = ring_fd_arm(&self.ring, self.sending, False)
            if n < 0:
                self._raise_corrupt()
            return n > 0
        finally:
            _leave(self)

    def _disarm_fd(self):
        """A wait on the descriptor ended without its wake-up (timed out, cancelled)."""
        if self.region is None or _closing(self) or not cw_guard_take(&self.busy, &self.bias, CW_GUARD_CALL):
            return
        self.busy_thread = cw_thread_self()
        try:
            if self.region is not None:
                ring_fd_disarm(&self.ring, self.sending)
        finally:
            _leave(self)

    def _drain_fd(self):
        """Read the wake descriptor empty (its wake bytes, its timer)."""
        ring_fd_drain(&self.ring)

    def _fd_slice(self):
        """(why, ns left) of the armed descriptor's timer (SLICE_* of ring_wait_slice_ns());
        None if it is not armed, (0, None) if armed without a timer.  For tests."""
        if not self.ring.fd_armed:
            return None
        if not self.ring.fd_sliced:
            return 0, None
        return self.ring.fd_why, self.ring.fd_deadline - monotonic_ns()

    def __enter__(self):
        self._check_open()
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Close this end."""
        self._close()

    @property
    def closed(self):
        """True once close() has run (or in a process forked after this end was opened)."""
        return self.region is None

    @property
    def depth(self):
        """Messages in the ring right now (a snapshot); on a byte channel, the bytes they take
        (records and padding).  With receiver groups: what this member's group has not taken,
        or for a sender what the slowest group has not."""
        self._check_open()
        cdef int64_t d = ring_depth(&self.ring)
        if d < 0:
            self._raise_corrupt()
        return d

    def __reduce__(self):
        raise TypeError(f"a {type(self).__name__} cannot be pickled or sent to another process; "
                        f"open one there by the channel name ({self.name!r})")

    def __repr__(self):
        state = "closed" if self.closed else "open"
        senders = f" max_senders={self.max_senders}" if self.max_senders > 1 else ""
        if self.max_receivers > 1:
            senders += f" max_receivers={self.max_receivers}"
            if not self.sending and self.region is not None:
                senders += f" group={(<Region>self.region).group!r}"
        queued = (f"max_queued_bytes={self.max_queued_bytes}" if self.max_queued_bytes is not None
                  else f"max_queued_messages={self.max_queued_messages}")
        return (f"<{type(self).__name__} {self.name!r} message_length={self.message_length} "
                f"{queued}{senders} {state}>")
