# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The one-to-one channel's Python-facing ends: Sender and Receiver.

Each call brackets itself with _enter()/_leave() (the one-thread guard of
_end), moves messages with the ring's functions and converts them with the
end's codec (_codec).  Nothing here reads a header field or a slot header:
cursors, lengths and lent pages are the ring's and the region's.
"""
import difflib
import logging
import threading

from cpython.buffer cimport PyBuffer_Release, PyBUF_STRIDED, PyBUF_STRIDED_RO, PyBUF_WRITABLE
from cpython.buffer cimport PyBUF_FORMAT, PyBUF_ND, PyBUF_STRIDES
from cpython.bytes cimport PyBytes_CheckExact, PyBytes_GET_SIZE
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.ref cimport Py_INCREF
from posix.mman cimport munmap

from cywhip.includes.c_atomics cimport cw_store_release_i32
from cywhip.includes.c_guard cimport cw_guard_give, cw_thread_self, CW_GUARD_CALL
from libc.stdint cimport uint32_t, uint64_t, int64_t

from cywhip._codec cimport Codec, BytesCodec
from cywhip._end cimport _End, _enter, _leave, _closing, deadline_ns, check_count
from cywhip._region cimport Region, END_SENDER, END_RECEIVER, unlend_pages
from cywhip._admin import _channel_info, held_back_text
from cywhip._ring cimport (
    ring_claim, ring_write_slot, ring_commit, ring_commit_void, ring_publish, ring_published,
    ring_available, ring_available_now, ring_read_slot, ring_consume, ring_rewind, ring_release,
    ring_read_records, ring_lend_run, ring_lend_stride, ring_lend_span, ring_read_offset, ring_consume_run,
    ring_taken, ring_interrupt, ring_read_position, ring_fd_arm,
    WAIT_READY, SLEEP_SLICE_NS, ring_send_wait, ring_send_records, ring_recv_wait, ring_recv_peek,
    ring_recv_done, ring_recv_records, ring_more,
    ring_fixed_claim, ring_fixed_commit, ring_fixed_peek, ring_fixed_consume, ring_bytes_claim, ring_bytes_peek,
    ring_header_bytes,
)

from cywhip.errors import ChannelClosedError, ChannelCorruptError, ReceiveTimeout, SendTimeout

DEFAULT_SPIN_TIME = 50e-6

# A receive thread that stops on an error says so here at once (with the traceback); close()
# raises the error afterwards.  Configure or silence it with the logging module.
log = logging.getLogger("cywhip")

_SENDER_KEYWORDS = ("name", "message_serializer", "message_length", "max_queued_messages",
                    "max_queued_bytes", "message_type", "max_senders", "max_receivers", "spin_time", "mode")
_RECEIVER_KEYWORDS = ("name", "message_deserializer", "message_length", "max_queued_messages",
                      "max_queued_bytes", "on_message", "message_type", "on_batch", "on_error", "max_senders",
                      "max_receivers", "group", "durable", "spin_time", "mode")


cdef int _refuse_keywords(str cls, dict unknown, tuple known) except -1:
    """An unknown keyword argument: name the class, the keyword and the nearest known one."""
    key = next(iter(unknown))
    near = difflib.get_close_matches(key, known, n=2)
    hint = (f"; did you mean {' or '.join(map(repr, near))}?" if near
            else f"; it takes {', '.join(known)}")
    raise TypeError(f"{cls}() got an unexpected keyword argument {key!r}{hint}")


cdef int _check_callable(str cls, str what, object fn) except -1:
    """A callback argument: callable or None.  A number in a callback's place is a
    message_length given by position, where the callback comes second."""
    if fn is None or callable(fn):
        return 0
    if what in ("message_serializer", "message_deserializer") and isinstance(fn, int):
        raise TypeError(f"{cls}()'s second positional argument is the {what}, got {fn!r}: give "
                        f"message_length by keyword ({cls}(name, message_length={fn!r}))")
    raise TypeError(f"{cls}(): {what} must be callable, got {fn!r}")


cdef inline int _check_timeout(object timeout) except -1:
    """Refuse a timeout that is not None or a non-negative number at once, whether or not the
    call will have to wait."""
    if timeout is not None:
        deadline_ns(timeout)
    return 0


cdef class Sender(_End):
    """The sending end of channel ``name``.

    ``message_serializer(msg, write_buffer)`` writes a message into its slot;
    without one, messages are bytes-like objects copied as they are.
    """

    def __init__(self, name, message_serializer=None, message_length=None,
                 max_queued_messages=None, *, max_queued_bytes=None, message_type=None,
                 max_senders=1, max_receivers=1, spin_time=DEFAULT_SPIN_TIME, mode=0o600, **unknown):
        if unknown:
            _refuse_keywords("Sender", unknown, _SENDER_KEYWORDS)
        _check_callable("Sender", "message_serializer", message_serializer)
        if message_serializer is not None and message_type is not None:
            raise TypeError("a typed Sender takes no message_serializer: its records are copied as they are")
        self.sending = 1
        self.publish_every = 0
        self._open(name, message_length, max_queued_messages, END_SENDER, spin_time, mode, message_type,
                   message_serializer, None, max_senders, max_receivers, "", True, max_queued_bytes)
        # Publish a long send_many() in steps, so the receiver starts early.
        self.publish_every = max(1, min(self.max_queued_messages // 4, 256))

    cdef int _raise_timeout(self, object timeout, object sent) except -1:
        raise self._full_error(timeout, sent)

    def _full_error(self, timeout, sent=None):
        """The SendTimeout of a send that found the ring full for ``timeout`` s; ``sent``: how
        many messages of the call went out first (None for a call of one message).  The words
        of this end and of cywhip.asyncio's."""
        if self.max_queued_bytes is not None and self.ring.many and self.ring.bit_busy:
            # Not the ring: the claim bit, held by a live sender that has not committed.
            full = (f"could not claim room for a {self.ring.want_bytes}-byte message: "
                    f"{self._bit_holder()} holds the claim bit (claim word "
                    f"{self.ring.busy_word:#x}) and did not commit its claim")
        elif self.max_queued_bytes is not None:
            full = (f"had no room for a {self.ring.want_bytes}-byte message in its "
                    f"{self.max_queued_bytes}-byte ring")
        else:
            full = f"stayed full ({self.max_queued_messages} messages queued)"
        if sent is None:
            return SendTimeout(f"channel {self.name!r} {full} for {timeout} s{self._held_back_by()}")
        return SendTimeout(f"channel {self.name!r} {full} for {timeout} s; {sent} messages of this "
                           f"call were sent{self._held_back_by()}", sent=sent)

    def _bit_holder(self):
        """The live sender holding a byte ring's claim bit, as the claim word's owner names it,
        with its pid from channels() if it can be read."""
        owner = self.ring.busy_word & 0xFFFFFF
        place = (owner & 0x1FFF) - 1
        text = f"the sender in place {place} (generation {owner >> 13} modulo 2048"
        try:
            info = _channel_info(self.name)
        except Exception:
            info = None
        if info is not None and 0 <= place < len(info.senders):
            text += f", pid {info.senders[place].pid}"
        return text + ")"

    def _records_full_error(self, timeout, sent, n):
        """The SendTimeout of a send_array() of ``n`` records that found the ring full for
        ``timeout`` s after ``sent`` of them went out (this end's and cywhip.asyncio's)."""
        return SendTimeout(f"channel {self.name!r} stayed full for {timeout} s; "
                           f"{sent} of {n} records were sent{self._held_back_by()}", sent=sent)

    def _held_back_by(self):
        """For a SendTimeout's message on a channel with receiver groups: which group holds the
        ring full, and what to do about it ("" if none does now, or on a plain channel)."""
        if self.max_receivers <= 1:
            return ""
        return held_back_text(self.name)

    cdef int _measure(self, object msg) except -1:
        """A byte channel: the room the next claim makes, msg's encoded length if the codec can
        tell it first (else message_length); a message longer than message_length is refused."""
        cdef Py_ssize_t n = self.codec.measure(msg)
        if n < 0:
            n = self.message_length
        elif n > self.message_length:
            self.codec._raise_too_long(n)
        self.ring.want_bytes = <uint64_t>n
        return 0

    cdef inline int _put(self, object msg) except -1:
        """Encode msg into the slot at the write cursor and commit it (one sender: not yet published)."""
        if self.ring.many:
            return self._put_claimed(msg)
        ring_fixed_commit(&self.ring, <uint32_t>self.codec.encode(ring_write_slot(&self.ring), msg))
        return 0

    cdef int _put_claimed(self, object msg) except -1:
        """Many senders: the slot is claimed, so it must be published whatever happens; if msg
        cannot be encoded, publish it void (the receiver steps over it) and raise."""
        cdef Py_ssize_t n
        try:
            n = self.codec.encode(ring_write_slot(&self.ring), msg)
        except BaseException:
            ring_commit_void(&self.ring)
            raise
        ring_commit(&self.ring, <uint32_t>n)
        return 0

    cdef int _send_bytes(self, object msg, object timeout) except -1:
        """send() on a byte channel of what send() does not take itself (anything but bytes
        through the plain codec): measure, claim that room, encode, publish.  The caller holds
        the end (_enter())."""
        self._measure(msg)
        try:
            if ring_bytes_claim(&self.ring) <= 0:
                self._claim(deadline_ns(timeout), timeout, None)
        except BaseException:
            # What measure() kept for the encode that will not come (a pickled object).
            self.codec.forget()
            raise
        self._put_bytes(msg)
        ring_publish(&self.ring)
        return 0

    cdef int _put_plain(self, object msg) except -1:
        """_put_bytes() of bytes through the plain codec, measured as they are: they cannot
        change, and the codec's own check of message_length bounds the copy to the room."""
        ring_commit(&self.ring, <uint32_t>self.codec.encode(ring_write_slot(&self.ring), msg))
        return 0

    cdef int _put_bytes(self, object msg) except -1:
        """A byte channel, step B3: encode msg into the record claimed for ring.want_bytes and
        commit it.  The codec may write no more than that room, whatever msg became since it
        was measured (a bytearray another thread grew while this one waited, say)."""
        cdef Codec codec = self.codec
        cdef Py_ssize_t n
        codec.message_length = <Py_ssize_t>self.ring.want_bytes
        try:
            n = codec.encode(ring_write_slot(&self.ring), msg)
        except BaseException:
            if self.ring.many:
                # The claim is committed: publish it void (the receiver steps over it).
                ring_commit_void(&self.ring)
                ring_publish(&self.ring)
            raise
        finally:
            codec.message_length = self.message_length
        ring_commit(&self.ring, <uint32_t>n)
        return 0

    cdef int64_t _claim(self, int64_t deadline, object timeout, object sent) except -1:
        """Wait until there is room (and, with many senders, a slot claimed); return the slots
        ring_claim() gave.  Raise SendTimeout after the deadline."""
        cdef int64_t free = 0
        cdef int st, outcome
        while True:
            with nogil:
                st = ring_send_wait(&self.ring, deadline, SLEEP_SLICE_NS, &free)
            outcome = self._waited(st)
            if outcome == 1:
                return free
            if outcome == 0:
                self._raise_timeout(timeout, sent)

    def send(self, msg, timeout=None):
        """Send one message; wait while the ring is full (raise SendTimeout, a queue.Full, after timeout seconds)."""
        cdef Py_ssize_t n
        _check_timeout(timeout)
        _enter(self)
        try:
            if self.ring.bytes:
                if not (PyBytes_CheckExact(msg) and type(self.codec) is BytesCodec):
                    self._send_bytes(msg, timeout)
                    return
                # The common case written out: bytes cannot change between their measure and
                # their copy, so the codec's own check of message_length bounds the copy to
                # the room claimed, and nothing measured is kept.
                n = PyBytes_GET_SIZE(msg)
                if n > self.message_length:
                    self.codec._raise_too_long(n)
                self.ring.want_bytes = <uint64_t>n
                if ring_bytes_claim(&self.ring) <= 0:
                    self._claim(deadline_ns(timeout), timeout, None)
                ring_commit(&self.ring, <uint32_t>self.codec.encode(ring_write_slot(&self.ring), msg))
            else:
                if ring_fixed_claim(&self.ring) <= 0:
                    self._claim(deadline_ns(timeout), timeout, None)
                # _put(), written out: a call less on the path of every message.
                if self.ring.many:
                    self._put_claimed(msg)
                else:
                    ring_fixed_commit(&self.ring, <uint32_t>self.codec.encode(ring_write_slot(&self.ring), msg))
            ring_publish(&self.ring)
        finally:
            _leave(self)

    def try_send(self, msg):
        """Send one message if there is room right now; return whether it was sent."""
        return self._send_now(msg)

    cdef bint _send_now(self, object msg) except -1:
        """try_send(), for callers in C (cywhip.asyncio's fast path)."""
        cdef int64_t n
        if self.ring.bytes:
            return self._send_now_bytes(msg)
        _enter(self)
        try:
            # As _ready_now(), inline: room (with many senders, a slot claimed to fill now).
            n = ring_fixed_claim(&self.ring)
            if n == 0 and self.ring.fd_wait and ring_fd_arm(&self.ring, True, True) != 0:
                # Waiting on a descriptor: armed, its look found room after all.
                n = ring_fixed_claim(&self.ring)
            if n < 0:
                self._raise_corrupt()
            if n == 0:
                return False
            self._put(msg)
            ring_publish(&self.ring)
            return True
        finally:
            _leave(self)

    cdef bint _send_now_bytes(self, object msg) except -1:
        """_send_now() on a byte channel: room for the message's measured length, or False."""
        cdef int64_t n
        _enter(self)
        try:
            self._measure(msg)
            n = ring_bytes_claim(&self.ring)
            if n == 0 and self.ring.fd_wait and ring_fd_arm(&self.ring, True, True) != 0:
                n = ring_bytes_claim(&self.ring)
            if n <= 0:
                self.codec.forget()
                if n < 0:
                    self._raise_corrupt()
                return False
            self._put_bytes(msg)
            ring_publish(&self.ring)
            return True
        finally:
            _leave(self)

    def send_many(self, messages, timeout=None):
        """Send every message of an iterable, publishing in batches; return how many were sent.

        Waits while the ring is full.  If ``timeout`` seconds pass first, raises
        SendTimeout whose ``sent`` says how many went out.  If the serializer
        raises, the messages before the failing one are sent.
        """
        cdef int64_t free = 0
        cdef Py_ssize_t pending = 0, sent = 0
        cdef Py_ssize_t publish_every = self.publish_every
        cdef int64_t deadline = -1
        cdef bint have_deadline = False
        cdef bint plain = False
        _check_timeout(timeout)
        _enter(self)
        try:
            for msg in messages:
                if _closing(self):
                    # close() from another thread: it returns once this call has let go.
                    self._raise_closed()
                if self.ring.bytes:
                    # A byte channel: each message claims room for its own length.  Bytes
                    # through the plain codec (as send()): their length, checked, is that room.
                    plain = PyBytes_CheckExact(msg) and type(self.codec) is BytesCodec
                    if not plain:
                        self._measure(msg)
                    elif PyBytes_GET_SIZE(msg) > self.message_length:
                        self.codec._raise_too_long(PyBytes_GET_SIZE(msg))
                    else:
                        self.ring.want_bytes = <uint64_t>PyBytes_GET_SIZE(msg)
                    free = 0
                if free <= 0:
                    # One sender: the free slots, filled without asking again.  Many
                    # senders: one claimed slot, claimed only now that msg is in hand.
                    free = ring_claim(&self.ring)
                    if free <= 0:
                        if pending:
                            ring_publish(&self.ring)
                            pending = 0
                        if not have_deadline:
                            deadline = deadline_ns(timeout)
                            have_deadline = True
                        try:
                            free = self._claim(deadline, timeout, sent)
                        except BaseException:
                            self.codec.forget()
                            raise
                if self.ring.bytes:
                    if plain:
                        self._put_plain(msg)
                    else:
                        self._put_bytes(msg)
                else:
                    self._put(msg)
                free -= 1
                sent += 1
                pending += 1
                if pending >= publish_every:
                    ring_publish(&self.ring)
                    pending = 0
            return sent
        finally:
            if pending:
                ring_publish(&self.ring)
            _leave(self)

    def send_array(self, arr, timeout=None):
        """Send every record of a 1-D NumPy array of the channel's record type; return how many.

        The array may be strided.  Records are copied straight into the ring
        with the GIL released, published once per run of free slots.  Waits
        while the ring is full; after ``timeout`` seconds raises SendTimeout,
        whose ``sent`` says how many records went out.
        """
        cdef Py_buffer view
        cdef Py_ssize_t i = 0, n, stride, chunk
        cdef int64_t deadline
        cdef int st = WAIT_READY
        cdef uint32_t size = <uint32_t>self.record_size
        cdef const char *base
        self.codec.get_records(arr, &view, PyBUF_STRIDED_RO, "send_array")
        try:
            n = view.shape[0]
            stride = view.strides[0]
            base = <const char *>view.buf
            chunk = max(1, min(self.max_queued_messages // 4, 4096))
            deadline = deadline_ns(timeout)
            _enter(self)
            try:
                while i < n:
                    with nogil:
                        st = ring_send_records(&self.ring, base, stride, n, size, chunk, deadline,
                                               SLEEP_SLICE_NS, &i)
                    if i < n and self._waited(st) == 0:
                        raise self._records_full_error(timeout, i, n)
                return n
            finally:
                _leave(self)
        finally:
            PyBuffer_Release(&view)

    def reserve(self, size, timeout=None):
        """Write a message in place: ``with sender.reserve(n) as buf: ...``.

        Entering waits for room for ``size`` bytes (at most message_length; after ``timeout``
        seconds raises SendTimeout) and returns ``buf``, a writable memoryview of ``size``
        bytes inside the ring.  When the block ends normally the message is sent: all
        ``size`` bytes, or the first ``m`` after ``reservation.truncate(m)`` (keep the
        object ``reserve()`` returns to call it).  If the block raises, nothing is sent
        (with many senders, the claimed slot is published void; receivers step over it).
        Every view of ``buf`` must be gone when the block ends: one still alive (a slice
        kept, a NumPy array over it) makes the exit raise BufferError without sending, and
        the sender stays busy until the last view is released.
        """
        return Reservation(self, size, timeout)

    @property
    def published(self):
        """Messages ever published on this channel (its write cursor); on a byte channel,
        bytes (records and padding).  With many senders: claimed by any of them, a few perhaps
        still being filled.

        A restarted sender (the only one) can resume a numbered stream from here: every
        message below it reached the ring, none above it did.
        """
        self._check_open()
        return ring_published(&self.ring)

    def close(self):
        """Close this end.  Queued messages stay in the channel for a receiver."""
        self._close()


cdef class Receiver(_End):
    """The receiving end of channel ``name``.

    With ``on_message``, a background thread calls ``on_message(msg)`` for
    each message in order; otherwise call ``recv()``, ``try_recv()``,
    ``recv_many()`` or iterate.  ``message_deserializer(read_buffer)``
    builds a message; without one, messages arrive as ``bytes``.
    """

    def __init__(self, name, message_deserializer=None, message_length=None,
                 max_queued_messages=None, on_message=None, *, max_queued_bytes=None,
                 message_type=None, on_batch=None, on_error=None, max_senders=1,
                 max_receivers=1, group="", durable=True,
                 spin_time=DEFAULT_SPIN_TIME, mode=0o600, **unknown):
        if unknown:
            _refuse_keywords("Receiver", unknown, _RECEIVER_KEYWORDS)
        for what, fn in (("message_deserializer", message_deserializer), ("on_message", on_message),
                         ("on_batch", on_batch), ("on_error", on_error)):
            _check_callable("Receiver", what, fn)
        if on_message is not None and on_batch is not None:
            raise TypeError("give on_message or on_batch, not both")
        if on_error is not None and on_message is None and on_batch is None:
            raise TypeError("on_error applies only to a Receiver with on_message or on_batch")
        if message_deserializer is not None and message_type is not None:
            raise TypeError("a typed Receiver takes no message_deserializer: its records are built directly")
        self.sending = 0
        self.on_message = on_message
        self.on_batch = on_batch
        self.on_error = on_error
        self.thread = None
        self.error = None
        self._open(name, message_length, max_queued_messages, END_RECEIVER, spin_time, mode, message_type,
                   None, message_deserializer, max_senders, max_receivers, group, durable,
                   max_queued_bytes)
        if on_message is not None or on_batch is not None:
            # The delivering thread holds the guard for as long as it runs.
            self.busy = CW_GUARD_CALL
            self.thread = threading.Thread(target=self._run, name=f"cywhip-receiver-{self.name}",
                                           daemon=True)
            self.thread.start()

    # ------------------------------------------------------------- building

    cdef object _take(self):
        """Build the message at the read cursor (caller saw one available); does not consume it."""
        cdef int64_t n = ring_fixed_peek(&self.ring, <uint32_t>self.record_size)
        if n < 0:
            self._raise_bad_length()
        return self.codec.decode(ring_read_slot(&self.ring), n)

    cdef object _take_one(self):
        """Take the message at the read cursor (caller saw one available) and hand its slot back."""
        msg = self._take()
        ring_fixed_consume(&self.ring)
        ring_release(&self.ring)
        return msg

    cdef object _take_bytes(self):
        """_take() on a byte channel: the record first in line (stepping over padding), checked."""
        cdef int64_t n = ring_bytes_peek(&self.ring)
        if n < 0:
            self._raise_bad_length()
        return self.codec.decode(ring_read_slot(&self.ring), n)

    cdef object _take_one_bytes(self):
        """_take_one() on a byte channel."""
        msg = self._take_bytes()
        ring_consume(&self.ring)
        ring_release(&self.ring)
        return msg

    cdef int _raise_bad_length(self) except -1:
        """Raise for the slot at the read cursor, whose length (in the ring's bad_length) is
        over message_length or not the channel's record size."""
        cursor = ring_read_position(&self.ring)
        if self.ring.bytes:
            raise ChannelCorruptError(
                f"channel {self.name!r} is corrupt: the record at byte {cursor} has kind "
                f"{self.ring.bad_write} and length {self.ring.bad_length}, with "
                f"{self.ring.bad_cursor} bytes published from there; a record is a message of "
                f"at most message_length={self.message_length} bytes that fits in them, or "
                f"padding to the ring's end")
        if self.record_size == 0:
            raise ChannelCorruptError(
                f"channel {self.name!r} is corrupt: the message at cursor {cursor} claims "
                f"{self.ring.bad_length} bytes, over message_length={self.message_length}")
        raise ChannelCorruptError(
            f"channel {self.name!r} is corrupt: the message at cursor {cursor} is "
            f"{self.ring.bad_length} bytes, but its records are {self.record_size} bytes")

    cdef list _take_list_bytes(self, Py_ssize_t k):
        """A byte channel's _take_list(): up to k of the messages published (the caller saw
        some available), as _take_list() takes them."""
        cdef uint64_t start = ring_read_position(&self.ring)
        cdef list out = []
        cdef int64_t n
        cdef Py_ssize_t i = 0
        cdef Codec codec = self.codec
        try:
            while i < k and ring_more(&self.ring):
                n = ring_bytes_peek(&self.ring)
                if n < 0:
                    self._raise_bad_length()
                out.append(codec.decode(ring_read_slot(&self.ring), n))
                ring_consume(&self.ring)
                i += 1
        except BaseException as exc:
            if out and isinstance(exc, Exception):
                self.take_error = exc
                return out
            ring_rewind(&self.ring, start)
            raise
        return out

    cdef list _take_list(self, Py_ssize_t k):
        """Consume k available messages (k >= 1) into a list.

        If one cannot be built (the deserializer raises, a corrupt slot, no
        memory) after others were, those are returned, it stays first in line
        and its error is left in self.take_error; if it is the first, its
        error is raised.  A BaseException (Ctrl-C's KeyboardInterrupt,
        SystemExit) leaves every message in the ring.
        """
        if self.ring.bytes:
            return self._take_list_bytes(k)
        cdef uint64_t start = ring_read_position(&self.ring)
        cdef list out = PyList_New(k)
        cdef Py_ssize_t i = 0
        cdef int64_t n
        cdef Codec codec = self.codec
        cdef uint32_t record_size = <uint32_t>self.record_size
        try:
            for i in range(k):
                n = ring_fixed_peek(&self.ring, record_size)
                if n < 0:
                    self._raise_bad_length()
                msg = codec.decode(ring_read_slot(&self.ring), n)
                Py_INCREF(msg)
                PyList_SET_ITEM(out, i, msg)
                ring_fixed_consume(&self.ring)
        except BaseException as exc:
            if i > 0 and isinstance(exc, Exception):
                self.take_error = exc
                return out[:i]   # items 0..i-1 are set; the list's empty tail is never read
            ring_rewind(&self.ring, start)
            raise
        return out

    cdef Py_ssize_t _copy_records(self, char *dst, Py_ssize_t stride, Py_ssize_t k) except -1:
        """Take up to k waiting records into dst (GIL released); a wrong-sized slot stops the run."""
        cdef Py_ssize_t got
        cdef uint32_t size = <uint32_t>self.record_size
        with nogil:
            got = ring_recv_records(&self.ring, dst, stride, k, size)
        if not got:
            self._raise_bad_length()
        return got

    # -------------------------------------------------------------- pulling

    cdef int _enter_pull(self) except -1:
        if self.thread is not None:
            self._check_open()
            raise RuntimeError(f"Receiver {self.name!r} delivers its messages to on_message/on_batch; "
                               f"recv() and friends are for a Receiver without them")
        return _enter(self)

    def _empty_error(self, timeout):
        """The ReceiveTimeout of a receive that found nothing for ``timeout`` s (this end's and
        cywhip.asyncio's)."""
        return ReceiveTimeout(f"no message arrived on channel {self.name!r} within {timeout} s")

    cdef int64_t _await(self, object timeout) except -1:
        """Wait for at least one message; return how many are waiting."""
        cdef int64_t avail = ring_available(&self.ring)
        cdef int64_t deadline
        cdef int st, outcome
        if avail > 0:
            return avail
        if avail < 0:
            self._raise_corrupt()
        deadline = deadline_ns(timeout)
        while True:
            with nogil:
                st = ring_recv_wait(&self.ring, deadline, SLEEP_SLICE_NS, &avail)
            outcome = self._waited(st)
            if outcome == 1:
                return avail
            if outcome == 0:
                raise self._empty_error(timeout)

    def recv(self, timeout=None):
        """Take the next message; wait for one (raise ReceiveTimeout, a queue.Empty, after timeout seconds)."""
        cdef int64_t n
        _check_timeout(timeout)
        self._enter_pull()
        try:
            # _await() and _take_one(), with the common case written out: a message waiting.
            if ring_available(&self.ring) <= 0:
                self._await(timeout)
            if self.ring.bytes:
                # _take_one_bytes(), written out.
                n = ring_bytes_peek(&self.ring)
                if n < 0:
                    self._raise_bad_length()
                msg = self.codec.decode(ring_read_slot(&self.ring), n)
                ring_consume(&self.ring)
                ring_release(&self.ring)
                return msg
            n = ring_fixed_peek(&self.ring, <uint32_t>self.record_size)
            if n < 0:
                self._raise_bad_length()
            msg = self.codec.decode(ring_read_slot(&self.ring), n)
            ring_fixed_consume(&self.ring)
            ring_release(&self.ring)
            return msg
        finally:
            _leave(self)

    def try_recv(self):
        """Take the next message if one is waiting, else return None."""
        return self._recv_now(None)

    cdef object _recv_now(self, object nothing):
        """Take the next message if one is waiting, else return ``nothing`` (a message may be None:
        callers in C pass an object no deserializer returns)."""
        cdef int64_t n
        self._enter_pull()
        try:
            # As _ready_now(), with the common case inline.
            n = ring_available(&self.ring)
            if n == 0:
                n = ring_available_now(&self.ring)
            if n < 0:
                self._raise_corrupt()
            if n <= 0:
                return nothing
            return self._take_one_bytes() if self.ring.bytes else self._take_one()
        finally:
            _leave(self)

    cdef list _recv_many_now(self, Py_ssize_t max_count):
        """recv_many(max_count, timeout=0), but an empty list instead of ReceiveTimeout when nothing
        is waiting (for callers in C); max_count >= 1."""
        cdef int64_t avail
        cdef Py_ssize_t k = min(max_count, self.max_queued_messages)
        self._enter_pull()
        try:
            self.ring.want = k      # what a member claims at most while others share its group
            avail = ring_available_now(&self.ring)
            if avail < 0:
                self._raise_corrupt()
            if avail == 0:
                return []
            out = self._take_list(min(k, avail))
            self.take_error = None
            return out
        finally:
            ring_release(&self.ring)
            _leave(self)

    def recv_many(self, max_count, timeout=None):
        """Wait for at least one message, then take all that are waiting, up to ``max_count``; return a list.

        If a message cannot be built after others were, those are returned and
        it stays first in line; the next call raises its error.
        """
        cdef Py_ssize_t k
        check_count(max_count)
        _check_timeout(timeout)
        k = min(max_count, self.max_queued_messages)
        self._enter_pull()
        try:
            self.ring.want = k      # what a member claims at most while others share its group
            k = min(k, self._await(timeout))
            out = self._take_list(k)
            self.take_error = None
            return out
        finally:
            ring_release(&self.ring)
            _leave(self)

    def __iter__(self):
        return self

    def __next__(self):
        """The next message, waiting as long as it takes; stops when the receiver is closed."""
        try:
            return self.recv()
        except ChannelClosedError:
            # Closed by close() ends the loop; in a forked child the end was
            # never closed, it is not ours: that is an error, not an end.
            if not self.forked and (self.region is None or _closing(self)):
                raise StopIteration from None
            raise

    def recv_into(self, out, timeout=None):
        """Fill a 1-D NumPy array of the channel's records with waiting records; return how many.

        Waits for at least one; takes as many as are waiting and fit, copied
        with the GIL released.
        """
        cdef Py_buffer view
        cdef Py_ssize_t room
        _check_timeout(timeout)
        self.codec.get_records(out, &view, PyBUF_STRIDED | PyBUF_WRITABLE, "recv_into")
        try:
            room = view.shape[0]
            if room < 1:
                raise ValueError("recv_into() needs room for at least one record, got an empty array")
            self._enter_pull()
            try:
                self.ring.want = room
                room = min(room, self._await(timeout))
                return self._copy_records(<char *>view.buf, view.strides[0], room)
            finally:
                _leave(self)
        finally:
            PyBuffer_Release(&view)

    def recv_array(self, max_count, timeout=None):
        """Wait for at least one record, then take all waiting up to ``max_count`` as a new NumPy array."""
        cdef Py_buffer view
        cdef Py_ssize_t k, got
        if self.record_size == 0:
            raise TypeError("recv_array() needs a typed channel: open the end with message_type=...")
        check_count(max_count)
        _check_timeout(timeout)
        self._enter_pull()
        try:
            self.ring.want = max_count
            k = min(max_count, self._await(timeout))
            out = self.codec.new_batch(k)
            self.codec.get_records(out, &view, PyBUF_STRIDED | PyBUF_WRITABLE, "recv_array")
            try:
                got = self._copy_records(<char *>view.buf, view.strides[0], k)
            finally:
                PyBuffer_Release(&view)
            return out if got == k else out[:got]
        finally:
            _leave(self)

    def borrow(self, max_count=None, timeout=None):
        """Lend waiting messages without copying: ``with receiver.borrow(n) as batch: ...``.

        ``batch`` is a read-only NumPy array over the ring for NumPy channels,
        else a list of read-only memoryviews, one per message.  Entering waits
        for at least one message and lends up to ``max_count`` (at most up to
        the ring's end).  The messages are taken when the block exits.  Then
        the memoryviews lent are released, so using them raises ValueError;
        an array (which NumPy cannot revoke), or anything derived from the
        views, reads zeros from then on -- never slots the sender may be
        rewriting.  A borrow costs three system calls (a private mapping of
        the lent slots), so it pays off for large batches.
        """
        if max_count is not None:
            check_count(max_count)
        _check_timeout(timeout)
        return _Lease(self, max_count, timeout)

    # -------------------------------------------------------------- pushing

    def _run(self):
        """The on_message/on_batch thread: wait with the GIL released, deliver, release."""
        cdef int64_t avail, n
        self.busy_thread = cw_thread_self()
        if self.on_batch is not None:
            self.ring.want = self.max_queued_messages
        try:
            while not self.ring.stop:
                avail = ring_available(&self.ring)
                if avail == 0:
                    if not self._wait(-1):
                        continue
                    avail = ring_available(&self.ring)
                if avail < 0:
                    self._raise_corrupt()
                if self.on_batch is not None:
                    self._deliver_batch(avail)
                    continue
                n = 0
                if self.ring.bytes:
                    n = ring_bytes_peek(&self.ring)
                    if n < 0:
                        # An impossible record has no length to step over: the thread stops
                        # on it, with on_error or not (the hook would have it counted as taken).
                        self._raise_bad_length()
                try:
                    if self.ring.bytes:
                        self.on_message(self.codec.decode(ring_read_slot(&self.ring), n))
                    else:
                        self.on_message(self._take())
                except Exception as exc:
                    if self.on_error is None:
                        raise
                    # The error hook has seen it: the message counts as taken.
                    self.on_error(exc)
                ring_consume(&self.ring)
                ring_release(&self.ring)
        except ChannelClosedError:
            if not _closing(self):
                self.error = ChannelClosedError(f"Receiver {self.name!r} stopped delivering")
        except BaseException as exc:
            # The message that failed stays in the ring for the next receiver;
            # close() re-raises the error in the caller.  Say so now, not only then.
            self.error = exc
            log.error("Receiver %r stopped delivering to %s: %s: %s. What it failed on stays in "
                      "the channel for the next receiver, and close() raises this error; with "
                      "on_error=callable, errors go to that hook and delivery goes on",
                      self.name, "on_batch" if self.on_batch is not None else "on_message",
                      type(exc).__name__, exc, exc_info=exc)
        finally:
            if _closing(self):
                self._finish_close()
            cw_guard_give(&self.busy)

    cdef int _deliver_batch(self, int64_t avail) except -1:
        """Build what is waiting into one batch for on_batch; take it once that returns.

        A message that cannot be built (the deserializer raises, its slot is
        corrupt) ends the batch before it, and the messages before it are
        delivered first.  Then with on_error the hook gets that error once and
        the message counts as taken; without, the thread stops with the
        message first in line.  If on_batch raises without on_error, none of
        its batch is taken.
        """
        cdef uint64_t start = ring_read_position(&self.ring)
        cdef Py_ssize_t k = min(avail, self.max_queued_messages)
        cdef Py_ssize_t got
        cdef Py_buffer view
        failure = None
        if self.codec.batches_as_array:
            batch = self.codec.new_batch(k)
            self.codec.get_records(batch, &view, PyBUF_STRIDED | PyBUF_WRITABLE, "on_batch")
            try:
                with nogil:
                    got = ring_read_records(&self.ring, <char *>view.buf, view.strides[0], k,
                                            <uint32_t>self.record_size)
            finally:
                PyBuffer_Release(&view)
            if got < k:
                batch = batch[:got]
                try:
                    self._raise_bad_length()
                except ChannelCorruptError as exc:
                    failure = exc
        else:
            self.take_error = None
            try:
                batch = self._take_list(k)
            except Exception as exc:
                batch, failure = [], exc
            else:
                failure, self.take_error = self.take_error, None
        if len(batch):
            try:
                try:
                    self.on_batch(batch)
                except Exception as exc:
                    if self.on_error is None:
                        raise
                    self.on_error(exc)
            except BaseException:
                # Nothing of the batch is taken: it is delivered again to the next receiver.
                ring_rewind(&self.ring, start)
                raise
            ring_release(&self.ring)
        if failure is not None:
            if self.on_error is None or (self.ring.bytes and isinstance(failure, ChannelCorruptError)):
                # Without the hook, or on a byte channel's impossible record, which has no
                # length to step over: the thread stops with it first in line.
                raise failure
            self.on_error(failure)
            ring_consume(&self.ring)
            ring_release(&self.ring)
        return 0

    # ------------------------------------------------------------- the rest

    @property
    def group(self):
        """The receiver group this end belongs to ("" by default)."""
        return self.region.group if self.region is not None else None

    @property
    def durable(self):
        """Whether this end's group keeps its place when all its members are gone."""
        return self.region.durable if self.region is not None else None

    @property
    def taken(self):
        """Messages ever taken from this channel (its read cursor; a group member: its
        group's first message not taken)."""
        self._check_open()
        return ring_taken(&self.ring)

    @property
    def _skipped(self):
        """Many senders: slots stepped over without a message, as (holes, void): a sender died
        between its claim and its publish, or its serializer raised."""
        self._check_open()
        return self.ring.skipped, self.ring.voided

    @property
    def running(self):
        """True while the on_message thread is delivering messages."""
        return self.thread is not None and self.thread.is_alive()

    @property
    def exception(self):
        """The error that stopped the on_message thread, if one did."""
        return self.error

    def close(self):
        """Close this end; stop and join the on_message thread.

        Messages not yet taken stay in the channel for the next receiver.  If
        the on_message thread stopped on an error, close() raises it.
        """
        thread = self.thread
        if thread is not None and self.region is not None:
            cw_store_release_i32(&self.closing, 1)
            ring_interrupt(&self.ring, False)
            if thread is not threading.current_thread():
                thread.join()
                # The thread has ended (perhaps long ago, on an error): close, unless it did.
                self._close()
        else:
            self._close()
        err = self.error
        if err is not None:
            self.error = None
            raise err


cdef void _byte_view(Py_buffer *buffer, object owner, const char *data, Py_ssize_t *length,
                     Py_ssize_t *one, bint readonly, int flags):
    """Export length[0] bytes at data as a 1-D buffer of unsigned bytes owned by owner (a
    reservation's room in the ring, a lease's lent pages)."""
    buffer.buf = <void *>data
    buffer.obj = owner
    buffer.len = length[0]
    buffer.readonly = readonly
    buffer.itemsize = 1
    buffer.format = NULL
    if flags & PyBUF_FORMAT:
        buffer.format = b"B"
    buffer.ndim = 1
    buffer.shape = length if flags & PyBUF_ND else NULL
    buffer.strides = one if flags & PyBUF_STRIDES else NULL
    buffer.suboffsets = NULL
    buffer.internal = NULL


# Reservation states.
cdef enum:
    RES_NEW = 0
    RES_OPEN = 1       # entered: the room is claimed, the guard held
    RES_DONE = 2       # exited: sent, or nothing sent and the guard given back
    RES_STUCK = 3      # exited with views alive: nothing sent, the guard held until they go


cdef class Reservation:
    """What Sender.reserve() returns: room for one message in the ring, written in place."""

    def __cinit__(self, Sender sender, object size, object timeout):
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"reserve() needs a size in bytes (an int), not {type(size).__name__} ({size!r})")
        if size < 0:
            raise ValueError(f"reserve() needs a size of 0 bytes or more, got {size}")
        _check_timeout(timeout)
        self.sender = sender
        self.size = size
        self.used = size
        self.timeout = timeout
        self.buf = NULL
        self.exports = 0
        self.state = RES_NEW
        self.one = 1
        self.view = None

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        if self.state != RES_OPEN:
            raise ValueError("a reservation's buffer is usable only inside its with block")
        _byte_view(buffer, self, self.buf, &self.size, &self.one, False, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *buffer):
        self.exports -= 1
        if self.exports == 0 and self.state == RES_STUCK:
            # The last view kept past the block is gone: the room was never published, and the
            # sender may now use it again.
            self._finish(False)

    def truncate(self, size):
        """Send only the first ``size`` bytes of the reservation when the block ends."""
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"truncate() needs a size in bytes (an int), not {type(size).__name__} ({size!r})")
        if not 0 <= size <= self.size:
            raise ValueError(f"truncate() needs a size between 0 and the {self.size} bytes reserved, got {size}")
        self.used = size
        return None

    def __enter__(self):
        cdef Sender s = self.sender
        if self.state != RES_NEW:
            raise RuntimeError("a reservation can be entered once: call reserve() for each message")
        if self.size > s.message_length:
            s._check_open()
            s.codec._raise_too_long(self.size)
        _enter(s)
        try:
            if s.ring.bytes:
                s.ring.want_bytes = <uint64_t>self.size
            if ring_claim(&s.ring) <= 0:
                s._claim(deadline_ns(self.timeout), self.timeout, None)
            self.buf = ring_write_slot(&s.ring)
            self.state = RES_OPEN
            self.view = memoryview(self)
        except BaseException:
            if self.state == RES_OPEN:
                self._finish(False)
            else:
                _leave(s)
            raise
        return self.view

    cdef int _finish(self, bint send) except -1:
        """Publish the message (send) or give the room back; then give the guard back."""
        cdef Sender s = self.sender
        try:
            if send:
                ring_commit(&s.ring, <uint32_t>self.used)
                ring_publish(&s.ring)
            elif s.ring.many:
                # The claimed slot must be published: void, so that receivers step over it.
                ring_commit_void(&s.ring)
                ring_publish(&s.ring)
        finally:
            self.state = RES_DONE
            _leave(s)
        return 0

    def __exit__(self, exc_type, exc, tb):
        if self.state != RES_OPEN:
            return False
        try:
            self.view.release()
        except BufferError:
            pass   # a view made from it lives on: counted below
        self.view = None
        if self.exports > 0:
            # A view of the room outlives the block: it could write into a message after it is
            # sent.  Send nothing; keep the guard (no other call, and no close(), reuses the
            # room or unmaps it) until the last view goes (__releasebuffer__).
            # With many senders the claimed slot is published void only then: until it is,
            # receivers wait at it, as for any live sender filling a slot.
            self.state = RES_STUCK
            raise BufferError(
                f"a view of the {self.size} bytes reserved on channel {self.sender.name!r} is still "
                f"alive after the with block (a slice, a NumPy array or another memoryview of it): "
                f"nothing was sent, and the sender stays busy until every view is released")
        self._finish(exc_type is None)
        return False


cdef class _Lease:
    """The context manager borrow() returns: lends waiting messages in place, takes them on exit.

    The messages are lent through a read-only mapping of just their pages,
    made for this lease by the region.  On exit that mapping is replaced, in
    one step, by zero pages, and only then are the messages handed back to
    the sender: a view kept past the block can never read a slot being
    rewritten, nor memory that is gone.
    """

    def __cinit__(self, Receiver receiver, object max_count, object timeout):
        self.receiver = receiver
        self.max_count = max_count
        self.timeout = timeout
        self.map = NULL
        self.map_size = 0
        self.base = NULL
        self.count = 0
        self.span = 0
        self.one = 1
        self.entered = 0
        self.exited = 0
        self.views = None

    def __dealloc__(self):
        if self.map != NULL:
            munmap(self.map, self.map_size)

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        if self.base == NULL or self.exited:
            raise ValueError("these borrowed messages were already taken; use them inside the with block")
        if flags & PyBUF_WRITABLE:
            raise BufferError("borrowed messages are read-only")
        _byte_view(buffer, self, self.base, &self.span, &self.one, True, flags)

    def __enter__(self):
        cdef Receiver r = self.receiver
        cdef Py_ssize_t k, i, slot_size
        cdef uint32_t *lengths = NULL
        if self.entered:
            raise RuntimeError("a borrow() can be entered once")
        r._enter_pull()
        try:
            r.ring.want = self.max_count if self.max_count is not None else r.max_queued_messages
            k = r._await(self.timeout)
            if self.max_count is not None and k > self.max_count:
                k = self.max_count
            if r.ring.bytes:
                batch = self._lend_records(r, k)
                self.entered = 1
                return batch
            lengths = <uint32_t *>PyMem_Malloc(k * sizeof(uint32_t))
            if lengths == NULL:
                raise MemoryError()
            # One contiguous run of slots, each length read once and checked.
            k = ring_lend_run(&r.ring, k, <uint32_t>r.record_size, lengths)
            if k == 0:
                r._raise_bad_length()
            slot_size = ring_lend_stride(&r.ring)
            self.span = ring_lend_span(&r.ring, k)
            self.base = (<Region>r.region).lend_pages(ring_read_offset(&r.ring), self.span,
                                                      &self.map, &self.map_size)
            self.count = k
            whole = memoryview(self)
            batch = r.codec.lend(whole, k, slot_size, [lengths[i] for i in range(k)], None)
            self.views = [whole] + batch if type(batch) is list else [whole]
            self.entered = 1
            return batch
        except BaseException:
            self.base = NULL
            _leave(r)
            raise
        finally:
            PyMem_Free(lengths)

    cdef list _lend_records(self, Receiver r, Py_ssize_t k):
        """A byte channel's lease: up to k messages from the read cursor, none past the ring's
        end (a padding record first is stepped over, one after the first message ends the run),
        each header read once and checked (step B6).  They are taken now (B7) and released by
        __exit__; an error takes none back."""
        cdef uint64_t start = ring_read_position(&r.ring)
        cdef uint64_t at, first, here, nxt = 0
        cdef int64_t n
        cdef list spans = []
        # A codec that builds objects from the bytes refuses to lend them.
        r.codec.lend(memoryview(b""), 0, 1, [], None)
        try:
            while len(spans) < k and ring_more(&r.ring):
                at = ring_read_position(&r.ring)
                n = ring_recv_peek(&r.ring, 0)
                if n < 0 or (spans and ring_read_offset(&r.ring) != nxt):
                    # Impossible (those before it are lent; it stays first in line), or not
                    # right after the last one lent (past a padding record, or at the ring's
                    # start after a record that filled it to its end).
                    ring_rewind(&r.ring, at)
                    if spans:
                        break
                    if n == -1:
                        r._raise_bad_length()
                    raise ChannelCorruptError(
                        f"channel {r.name!r} is corrupt: only a padding record was published at "
                        f"byte {at}, which a sender never publishes alone")
                here = ring_read_position(&r.ring)
                spans.append((ring_read_offset(&r.ring), n))
                ring_consume(&r.ring)
                # Where the next payload lies if the next record follows this one in the ring.
                nxt = spans[len(spans) - 1][0] + (ring_read_position(&r.ring) - here)
            # From the first record's header: a lease of empty messages is never empty.
            first = spans[0][0] - <Py_ssize_t>ring_header_bytes(&r.ring)
            last = spans[len(spans) - 1]
            self.span = last[0] + last[1] - first
            self.base = (<Region>r.region).lend_pages(first, self.span, &self.map, &self.map_size)
            self.count = 0
            whole = memoryview(self)
            batch = [whole[off - first:off - first + length] for off, length in spans]
            self.views = [whole] + batch
            return batch
        except BaseException:
            ring_rewind(&r.ring, start)
            raise

    def __exit__(self, *exc):
        cdef Receiver r = self.receiver
        if not self.entered or self.exited:
            return
        self.exited = 1
        for view in self.views:
            try:
                view.release()
            except BufferError:
                pass   # a view derived from it lives on; it will read zeros
        self.views = None
        # Zero pages over the lent ones, in one step, before the sender may
        # rewrite the slots.
        if unlend_pages(self.map, self.map_size) != 0:
            self.map = NULL
        if r.region is not None:
            # A byte channel's lease took its records as it lent them (count 0).
            ring_consume_run(&r.ring, self.count)
            ring_release(&r.ring)
        _leave(r)
