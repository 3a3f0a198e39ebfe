# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""What cywhip.asyncio needs in C: the fast calls' awaitable, and one thread that sleeps on
many ends' waiting words at once.

``recv``, ``recv_many``, ``send`` and ``__anext__`` of an asyncio end (``_ReceiverCore``,
``_SenderCore``) return a ``_Call``.  Its first step takes (or sends) at once through the
plain end's non-blocking calls when it can, and returns its result through the type's
``am_send`` slot (includes/awaitable.h): no coroutine is made and no StopIteration raised.
Otherwise it hands over to the end's waiting coroutine (cywhip/asyncio.py) and steps it from
then on.  Nothing happens before the first step.

A ``Waker`` serves up to ``WAKER_SLOTS`` ends of one event loop.  An end that
finds nothing to do *arms* its slot (``arm``): it announces its sleep on the
ring's waiting word exactly as ``ring_wait`` does (``ring_announce_sleep``:
1, or a shared word's token; full fence; re-check), and if it must still wait,
lists the word and the value it expects in its slot, with a deadline when
``ring_wait_slice_ns`` says its sleep is in slices.  The waker's thread sleeps
in one ``futex_waitv`` on every armed word plus a private word, ``rearm``,
that the loop bumps and wakes when the list changes, until the earliest
deadline.  When the other end publishes (or releases) it clears the word and
wakes it, as it does for any sleeping end; the thread then marks the slot
*fired* (so too a slot whose deadline passed) and writes the loop's eventfd,
whose reader callback resolves the end's future (``collect``).  Taking the
message happens afterwards, on the loop thread, through the ordinary
non-blocking calls: waiting and taking are separate, so a cancelled wait has
taken nothing.

The thread reads a word only for a slot that is armed, under the waker's lock;
an end is disarmed under that lock (``close_slot``) before its mapping goes
away, so the thread never touches unmapped memory.  The kernel may still hold
a stale address in a ``futex_waitv`` that began before; ``close_slot`` bumps
``rearm`` so that wait ends and is rebuilt without it.

See docs/protocol.md ("Waiting from asyncio") and docs/architecture.md.
"""
cimport cython
from cpython.exc cimport PyErr_WarnEx
from cpython.object cimport PyObject, PyTypeObject
from cpython.pythread cimport (
    PyThread_type_lock, PyThread_allocate_lock, PyThread_free_lock,
    PyThread_acquire_lock, PyThread_release_lock, WAIT_LOCK, NOWAIT_LOCK,
)
from cpython.ref cimport Py_INCREF
from libc.errno cimport EAGAIN, EINTR, ENOSYS, ETIMEDOUT
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from posix.unistd cimport write

from cywhip.includes.c_awaitable cimport cw_set_am_send, cw_iter_send, cw_set_unawaited_hook
from cywhip.includes.c_atomics cimport cw_load_relaxed_u32, cw_store_relaxed_u32
from cywhip.includes.c_futex cimport cw_futex_wake
from cywhip.includes.c_waitv cimport (
    cw_waitv_t, cw_waitv_set, cw_futex_waitv, cw_futex_waitv_until, CW_WAITV_MAX,
)

from cywhip._channel cimport Receiver as PlainReceiver, Sender as PlainSender
from cywhip._end cimport _End, _enter, _leave, check_count, deadline_ns
from cywhip._ring cimport (
    monotonic_ns, ring_announce_sleep, ring_waiting_word, ring_wait_slice_ns,
    SLICE_NONE, SLICE_HOLE, SLICE_MEMBER, SLICE_GROUP, SLICE_CREATOR, SLICE_UNFENCED, SLICE_IDLE,
)

import collections.abc

from cywhip.errors import ChannelClosedError

# Slots of a waker: futex_waitv takes at most 128 words, one of them rearm.
WAKER_SLOTS = CW_WAITV_MAX - 1

# The names of ring_wait_slice_ns()'s reasons, by value (Waker.armed_slice()).
_SLICE_NAMES = {SLICE_NONE: "none", SLICE_HOLE: "hole", SLICE_MEMBER: "member", SLICE_GROUP: "group",
                SLICE_CREATOR: "creator", SLICE_UNFENCED: "unfenced", SLICE_IDLE: "idle"}

cdef enum:
    SLOTS = 127
    UNUSED = 0      # no end holds the slot
    IDLE = 1        # an end holds it and is not waiting
    ARMED = 2       # the end waits: its word is 1 and listed for the thread
    FIRED = 3       # its word was cleared (the other end made progress): the loop is told


cdef struct slot_t:
    uint32_t *word
    uint64_t gen      # which holder: a slot reused by another end gets a new number
    int state
    int listed        # the word is in the futex_waitv the thread sleeps in now
    uint32_t expect   # the value the end announced (1, or a shared word's token)
    uint32_t listed_expect  # the value the thread's futex_waitv expects of the word
    bint shared       # a word several ends share (many senders, group members): never cleared by a waiter
    int64_t deadline  # CLOCK_MONOTONIC ns by which the armed end must look again; -1: none
    int why           # the SLICE_* reason of the deadline (for tests)


def futex_waitv_supported():
    """Whether this kernel has futex_waitv (Linux 5.16 or newer)."""
    cdef uint32_t word = 0
    cdef cw_waitv_t w
    cdef int rc
    cw_waitv_set(&w, &word, 1)     # expects 1, finds 0: returns at once
    with nogil:
        rc = cw_futex_waitv(&w, 1)
    return rc != -ENOSYS


cdef class Waker:
    """Up to WAKER_SLOTS ends of one event loop, waited for by one thread (run()).

    ``efd`` is an eventfd the thread writes 1 to when slots fire; the loop
    reads it and calls collect().
    """
    cdef PyThread_type_lock lock
    cdef uint32_t *rearm
    cdef slot_t slots[SLOTS]
    cdef int efd
    cdef int stopping
    cdef uint64_t next_gen
    cdef readonly int bound
    # How often the thread returned from futex_waitv, and the last error it met (for tests).
    cdef readonly unsigned long long wakeups
    cdef readonly int error
    # When the thread's current futex_waitv times out (CLOCK_MONOTONIC ns); -1: it does not.
    cdef int64_t sleep_until

    def __cinit__(self, int efd):
        self.lock = PyThread_allocate_lock()
        self.rearm = <uint32_t *>calloc(1, sizeof(uint32_t))
        if self.lock == NULL or self.rearm == NULL:
            raise MemoryError()
        self.efd = efd
        self.stopping = 0
        self.next_gen = 1
        self.bound = 0
        self.wakeups = 0
        self.error = 0
        self.sleep_until = -1

    def __dealloc__(self):
        if self.lock != NULL:
            PyThread_free_lock(self.lock)
        free(self.rearm)

    cdef inline void _lock(self) noexcept nogil:
        PyThread_acquire_lock(self.lock, WAIT_LOCK)

    cdef inline void _lock_gil(self) noexcept:
        """_lock() from a thread holding the GIL: it waits for the lock without the GIL, so
        that the waker thread (run()) never waits for the GIL while it holds the lock.  (That
        thread takes the GIL nowhere in a release build, but on every line in a build with
        line tracing.)"""
        if not PyThread_acquire_lock(self.lock, NOWAIT_LOCK):
            with nogil:
                PyThread_acquire_lock(self.lock, WAIT_LOCK)

    cdef inline void _unlock(self) noexcept nogil:
        PyThread_release_lock(self.lock)

    cdef inline bint _holds(self, int slot, uint64_t gen) noexcept nogil:
        return 0 <= slot < SLOTS and self.slots[slot].gen == gen and self.slots[slot].state != UNUSED

    cdef void _bump(self) noexcept nogil:
        """Make the thread rebuild its list (caller holds the lock; wake after unlocking)."""
        self.rearm[0] += 1

    cdef void _poke(self) noexcept nogil:
        cw_futex_wake(self.rearm, 1)

    def bind(self):
        """Give an end a slot: (slot, gen), or None when all are held."""
        cdef int i
        cdef uint64_t gen
        self._lock_gil()
        for i in range(SLOTS):
            if self.slots[i].state == UNUSED:
                gen = self.next_gen
                self.next_gen += 1
                self.slots[i].gen = gen
                self.slots[i].state = IDLE
                self.slots[i].word = NULL
                self.slots[i].shared = False
                self.slots[i].deadline = -1
                self.slots[i].why = 0
                self.bound += 1
                self._unlock()
                return i, gen
        self._unlock()
        return None

    def arm(self, int slot, uint64_t gen, _End end):
        """Announce that ``end`` sleeps, unless it can go on: 1 armed, 0 ready now, -1 slot gone.

        Runs under the end's one-thread guard, so the end cannot close (and
        unmap its word) meanwhile.  Raises the end's errors (closed, corrupt).
        """
        cdef uint32_t *word
        cdef uint32_t expect
        cdef int ready, why
        cdef int64_t slice_ns, deadline
        cdef bint poke = False
        cdef bint shared, fenced
        _enter(end)
        try:
            if end.ring.hdr == NULL:
                end._raise_closed()
            word = ring_waiting_word(&end.ring, end.sending, &shared)
            # As ring_wait: announce, barrier, re-check.  The other end stores its
            # cursor, orders it (ring_publish_order()), then loads this word: one of
            # the two sees the other.
            # A word several ends share (shared): as in ring_wait, never cleared by a
            # sleeper, and announced with a token, which a wake-up always changes.
            fenced = ring_announce_sleep(word, shared, &expect)
            try:
                # Claims nothing: the caller sends or takes afterwards, by the ordinary calls.
                ready = end._ready_peek()
            except BaseException:
                if not shared:
                    cw_store_relaxed_u32(word, 0)
                raise
            if ready:
                if not shared:
                    cw_store_relaxed_u32(word, 0)
                return 0
            # What no wake-up announces (a hole's claimer, a fellow member or a group
            # creator dying, ...): the end looks again by this deadline, as ring_wait does.
            slice_ns = ring_wait_slice_ns(&end.ring, end.sending, fenced, &why)
            deadline = monotonic_ns() + slice_ns if slice_ns >= 0 else -1
            self._lock_gil()
            if not self._holds(slot, gen):
                self._unlock()
                if not shared:
                    cw_store_relaxed_u32(word, 0)
                return -1
            self.slots[slot].word = word
            self.slots[slot].expect = expect
            self.slots[slot].shared = shared
            self.slots[slot].deadline = deadline
            self.slots[slot].why = why
            self.slots[slot].state = ARMED
            if (not self.slots[slot].listed or self.slots[slot].listed_expect != expect
                    or (deadline >= 0 and (self.sleep_until < 0 or deadline < self.sleep_until))):
                # Not in the thread's sleep yet (or with another value), or due before it ends.
                self._bump()
                poke = True
            self._unlock()
            if poke:
                self._poke()
            return 1
        finally:
            _leave(end)

    def disarm(self, int slot, uint64_t gen):
        """The end stops waiting (it was woken, timed out or cancelled): clear its word if armed.

        The word stays in the thread's current futex_waitv until it next
        wakes; that costs nothing, and arming again needs no wake-up of the
        thread.
        """
        self._lock_gil()
        if self._holds(slot, gen):
            if self.slots[slot].state == ARMED and not self.slots[slot].shared:
                # Armed means the end is open and its mapping in place (close_slot()
                # disarms under this lock before any unmapping).
                cw_store_relaxed_u32(self.slots[slot].word, 0)
            self.slots[slot].state = IDLE
        self._unlock()

    def close_slot(self, int slot, uint64_t gen):
        """Give the slot up (the end closes): from any thread, before the end unmaps."""
        self._lock_gil()
        if self._holds(slot, gen):
            if self.slots[slot].state == ARMED and not self.slots[slot].shared:
                cw_store_relaxed_u32(self.slots[slot].word, 0)
            self.slots[slot].state = UNUSED
            self.slots[slot].word = NULL
            self.slots[slot].gen = 0
            self.bound -= 1
            self._bump()
        self._unlock()
        self._poke()

    def armed_slice(self, int slot, uint64_t gen):
        """Why an armed slot sleeps in slices ("hole", "member", "group", "creator",
        "unfenced", "idle": ring_wait_slice_ns()) and the ns left to its deadline (None: no deadline);
        None if the slot is not armed.  For tests."""
        cdef int why
        cdef int64_t deadline
        self._lock_gil()
        if not self._holds(slot, gen) or self.slots[slot].state != ARMED:
            self._unlock()
            return None
        why = self.slots[slot].why
        deadline = self.slots[slot].deadline
        self._unlock()
        name = _SLICE_NAMES.get(why, str(why))
        return name, (None if deadline < 0 else deadline - monotonic_ns())

    def collect(self):
        """The slots that fired since the last call, as (slot, gen); they become idle."""
        cdef int i
        cdef list out = []
        self._lock_gil()
        for i in range(SLOTS):
            if self.slots[i].state == FIRED:
                self.slots[i].state = IDLE
                out.append((i, self.slots[i].gen))
        self._unlock()
        return out

    def stop(self):
        """End run() (it returns within one wake-up)."""
        self._lock_gil()
        self.stopping = 1
        self._bump()
        self._unlock()
        self._poke()

    def run(self):
        """The thread's body: sleep on every armed word, fire the slots whose word was cleared."""
        with nogil:
            self._run()

    cdef void _run(self) noexcept nogil:
        cdef cw_waitv_t vec[CW_WAITV_MAX]
        cdef int i, n, rc = -EAGAIN, fired
        cdef int64_t now, earliest
        cdef uint32_t *woken
        cdef uint64_t one = 1
        self._lock()
        while not self.stopping:
            fired = 0
            # Fire every armed slot whose word no longer holds the value its end announced
            # (the other end cleared it, or close()'s interrupt did; a word shared by several
            # ends may hold another sharer's token since: a wake-up came between), every slot
            # whose deadline passed, whatever woke the thread (other ends' wake-ups do not
            # postpone it), and the slots on the word the kernel said it woke.
            now = monotonic_ns()
            for i in range(SLOTS):
                if self.slots[i].state == ARMED and (
                        cw_load_relaxed_u32(self.slots[i].word) != self.slots[i].expect
                        or (self.slots[i].deadline >= 0 and now >= self.slots[i].deadline)):
                    self.slots[i].state = FIRED
                    fired += 1
            if rc > 0:
                # The kernel names one entry, but every armed slot on that word was woken:
                # ends that share a word (many senders, the members of receiver groups)
                # are listed once each, and the wake is for all of them.
                woken = <uint32_t *><size_t>vec[rc].uaddr
                for i in range(SLOTS):
                    if self.slots[i].state == ARMED and self.slots[i].word == woken:
                        self.slots[i].state = FIRED
                        fired += 1
            if fired:
                write(self.efd, &one, sizeof(one))
            # Rebuild the list: rearm first, with the value it has now, so any
            # change after this point makes the wait return at once.
            cw_waitv_set(&vec[0], self.rearm, self.rearm[0])
            n = 1
            earliest = -1
            for i in range(SLOTS):
                self.slots[i].listed = self.slots[i].state == ARMED
                if self.slots[i].listed:
                    cw_waitv_set(&vec[n], self.slots[i].word, self.slots[i].expect)
                    self.slots[i].listed_expect = self.slots[i].expect
                    n += 1
                    if self.slots[i].deadline >= 0 and (earliest < 0 or self.slots[i].deadline < earliest):
                        earliest = self.slots[i].deadline
            self.sleep_until = earliest
            self._unlock()
            if earliest >= 0:
                rc = cw_futex_waitv_until(vec, n, earliest)
            else:
                rc = cw_futex_waitv(vec, n)
            self._lock()
            self.wakeups += 1
            if rc < 0 and rc != -EAGAIN and rc != -EINTR and rc != -ETIMEDOUT:
                self.error = -rc
                if rc == -ENOSYS:
                    break
        self._unlock()



# ------------------------------------------------------------------ fast calls
#
# recv(), recv_many(), send() and async for of cywhip.asyncio's ends return a _Call: an
# awaitable whose first step takes (or sends) at once when messages (or room) are waiting
# and otherwise hands over to the end's waiting coroutine (cywhip/asyncio.py), stepping it
# from then on.  Nothing happens before that first step: a call never awaited, closed or
# cancelled before it has taken nothing.  Through its am_send slot the first step returns
# its value without making a coroutine or raising StopIteration (from Python 3.12 on, await
# steps it through tp_iternext instead, which ends with a StopIteration made in C).

# A call that has not let the loop run for this long (ns) yields to it before its next step.
YIELD_NS = 2_000_000
cdef int64_t YIELD_LIMIT_NS = YIELD_NS
# Fast calls look at the clock once every CLOCK_EVERY calls if their messages are at most
# CLOCK_EVERY_BYTES long (copying 16 of them takes a few microseconds), else at every call.
cdef enum:
    CLOCK_EVERY = 16
    CLOCK_EVERY_BYTES = 4096

cdef enum:
    # What a _Call does.
    RECV = 0
    RECV_MANY = 1
    ANEXT = 2
    SEND = 3
    # How far it is.
    NEW = 0           # not stepped yet: has taken nothing
    WAITING = 1       # stepping the end's waiting coroutine
    DONE = 2          # returned, raised, or closed

# What _recv_now() returns when nothing is waiting (no deserializer can return it).
cdef object NOTHING = object()

_KIND_NAMES = ("recv", "recv_many", "__anext__", "send")


@cython.auto_pickle(False)
cdef class _Core:
    """What the fast calls of a cywhip.asyncio end read from C: the plain end, whether a task
    is using the end, and when it last let the loop run; and every method they call: ``_begin``
    and ``_deadline`` here, the waiting coroutines (``_recv_waiting``, ...) as hooks that
    cywhip.asyncio's Sender and Receiver, which subclass it, supply."""
    # The plain end (a cywhip Receiver for _ReceiverCore, a Sender for _SenderCore).
    cdef readonly _End _end
    # A task is using the end (from its first step to its end).
    cdef public bint _busy
    # close() was called.
    cdef public bint _closed
    # When this end last let the loop run (suspended or yielded), CLOCK_MONOTONIC ns.
    cdef public int64_t _ran
    # The most one recv_many() takes (about 1 MiB of messages).
    cdef public Py_ssize_t _step
    # Fast calls between two looks at the clock, and those left before the next look.
    cdef int _every
    cdef int _left

    def _attach(self, _End end not None):
        """Hold ``end``, the plain end this one awaits."""
        if type(end) is not (PlainReceiver if isinstance(self, _ReceiverCore) else PlainSender):
            raise TypeError(f"{type(self).__name__} cannot hold a {type(end).__name__}")
        self._end = end
        # Reading the clock costs about as much as taking a short message: look every
        # CLOCK_EVERY calls when each copies at most CLOCK_EVERY_BYTES, else at every call.
        self._every = CLOCK_EVERY if end.message_length <= CLOCK_EVERY_BYTES else 1
        self._left = 0

    def _ready_now(self):
        """Whether there is a message (receiver) or room (sender) right now; claims nothing."""
        cdef _End end = self._end
        _enter(end)
        try:
            return end._ready_peek() != 0
        finally:
            _leave(end)

    @property
    def _spin_ns(self):
        """The plain end's spin_time, in ns."""
        return self._end.ring.spin_ns

    def _begin(self):
        """A task starts using the end: RuntimeError if another one is using it."""
        if self._busy:
            raise RuntimeError(f"{type(self).__name__} {self._end.name!r} is already in use by "
                               f"another task; an end may be used by one task at a time")
        self._busy = True

    def _deadline(self, timeout):
        """The CLOCK_MONOTONIC deadline (ns) of a timeout in seconds, checked as the plain
        end checks it; None for None."""
        cdef int64_t deadline = deadline_ns(timeout)
        return None if deadline < 0 else deadline

    def __reduce__(self):
        # Refused in the plain end's words: an end cannot be pickled.
        return self._end.__reduce__()

    # The waiting coroutines a _Call hands over to when its first step can do nothing now
    # (cywhip.asyncio's Receiver supplies the first three, its Sender the last).

    def _recv_waiting(self, timeout):
        """recv() once its first step found nothing waiting (or owed the loop a turn)."""
        raise NotImplementedError

    def _recv_many_waiting(self, max_count, timeout):
        """recv_many() once its first step found nothing waiting (or owed the loop a turn)."""
        raise NotImplementedError

    def _anext_waiting(self):
        """async for's next message once its first step found nothing waiting."""
        raise NotImplementedError

    def _send_waiting(self, msg, timeout):
        """send() once its first step found the ring full (or owed the loop a turn)."""
        raise NotImplementedError

    cdef inline bint _owes_loop(self) noexcept:
        """Whether the loop has not run for YIELD_NS since this end last let it (looking at the
        clock once every _every calls)."""
        if self._left > 0:
            self._left -= 1
            return False
        if monotonic_ns() - self._ran > YIELD_LIMIT_NS:
            return True
        self._left = self._every - 1
        return False


@cython.binding(False)
cdef class _ReceiverCore(_Core):
    """cywhip.asyncio.Receiver's fast calls."""

    def recv(self, timeout=None):
        """Take the next message; wait for one (ReceiveTimeout, a queue.Empty, after ``timeout`` s).

        Returns an awaitable: the message is taken when it is awaited, never before.
        """
        return _new_call(self, RECV, None, timeout)

    def recv_many(self, max_count, timeout=None):
        """Wait for at least one message, then take those waiting, up to ``max_count``; return a list.

        Takes at most about 1 MiB of messages per call, so that the loop is
        not held; call again for more.  Returns an awaitable, as recv() does.
        """
        return _new_call(self, RECV_MANY, max_count, timeout)

    def __anext__(self):
        """The next message, waiting as long as it takes; stops once the receiver is closed."""
        return _new_call(self, ANEXT, None, None)


@cython.binding(False)
cdef class _SenderCore(_Core):
    """cywhip.asyncio.Sender's fast calls."""

    def send(self, msg, timeout=None):
        """Send one message; wait while the ring is full (SendTimeout after ``timeout`` seconds).

        Returns an awaitable: the message is sent when it is awaited, never before.
        """
        return _new_call(self, SEND, msg, timeout)


cdef inline _Call _new_call(_Core core, int kind, object arg, object timeout):
    cdef _Call call = _Call.__new__(_Call)
    call.core = core
    call.kind = kind
    call.arg = arg
    call.timeout = timeout
    call.unawaited = 1
    return call


@cython.final
@cython.freelist(16)
@cython.auto_pickle(False)
cdef class _Call:
    """One awaited call of a cywhip.asyncio end (recv, recv_many, send, async for's next).

    Awaited, it behaves as a coroutine does: send(), throw() and close(), and a second await
    raises RuntimeError.
    """
    cdef _Core core
    cdef object arg           # send: the message; recv_many: max_count
    cdef object timeout
    cdef object waiting       # the end's waiting coroutine, once handed over to
    cdef int kind
    cdef int state
    cdef int yielded          # the last step yielded (1) or returned (0) its value
    cdef int unawaited        # made, and neither stepped nor closed (see _warn_unawaited)

    def __await__(self):
        return self

    @property
    def __qualname__(self):
        """What the call is, as in a task's repr: ``Receiver.recv``."""
        return f"{type(self.core).__name__}.{_KIND_NAMES[self.kind]}"

    @property
    def __name__(self):
        return _KIND_NAMES[self.kind]

    cdef object _step(self, object arg):
        """One step: the value yielded (self.yielded = 1) or returned (0); raises when the call does."""
        if self.state == WAITING:
            return self._forward(arg)
        if self.state == DONE:
            raise RuntimeError(f"cannot reuse an already awaited {_KIND_NAMES[self.kind]}()")
        if arg is not None:
            raise TypeError("can't send a non-None value to a just-started call")
        self.state = DONE
        self.unawaited = 0
        self.yielded = 0
        cdef _Core core = self.core
        if core._busy:
            core._begin()          # raises: another task is using the end
        if core._end is None:
            raise ChannelClosedError(f"{type(core).__name__} was never opened")
        if self.timeout is not None:
            deadline_ns(self.timeout)    # a timeout it cannot take is refused at once, waiting or not
        if not core._owes_loop():
            # The common case, at once: messages (room) are waiting.
            if self.kind == RECV:
                msg = (<PlainReceiver>core._end)._recv_now(NOTHING)
                if msg is not NOTHING:
                    return msg
            elif self.kind == SEND:
                if (<PlainSender>core._end)._send_now(self.arg):
                    return None
            elif self.kind == RECV_MANY:
                got = self._recv_many_now()
                if got:
                    return got
            else:
                try:
                    msg = (<PlainReceiver>core._end)._recv_now(NOTHING)
                except ChannelClosedError:
                    if core._closed:
                        raise StopAsyncIteration from None
                    raise
                if msg is not NOTHING:
                    return msg
        # Nothing to do now (or the loop is owed a turn): the end's waiting coroutine takes over.
        if self.kind == RECV:
            self.waiting = core._recv_waiting(self.timeout)
        elif self.kind == SEND:
            self.waiting = core._send_waiting(self.arg, self.timeout)
        elif self.kind == RECV_MANY:
            self.waiting = core._recv_many_waiting(self.arg, self.timeout)
        else:
            self.waiting = core._anext_waiting()
        self.state = WAITING
        return self._forward(None)

    cdef list _recv_many_now(self):
        check_count(self.arg)
        cdef Py_ssize_t k = self.core._step
        if self.arg < k:
            k = self.arg
        return (<PlainReceiver>self.core._end)._recv_many_now(k)

    cdef object _forward(self, object arg):
        cdef int yielded = 0
        try:
            value = cw_iter_send(self.waiting, arg, &yielded)
        except BaseException:
            self.state = DONE
            self.waiting = None
            raise
        self.yielded = yielded
        if not yielded:
            self.state = DONE
            self.waiting = None
        return value

    def send(self, value):
        """Step the call: what it yields; StopIteration with its result once it returns."""
        out = self._step(value)
        if self.yielded:
            return out
        raise StopIteration(out)

    def __next__(self):
        # Called by name only: the type's tp_iternext is includes/awaitable.h's, through am_send.
        out = self._step(None)
        if self.yielded:
            return out
        raise StopIteration(out)

    def throw(self, *args):
        """Raise an exception inside the call (a cancellation): into the waiting coroutine if the
        call is waiting, else here, before anything was taken or sent."""
        if self.state == WAITING:
            try:
                return self.waiting.throw(*args)
            except BaseException:
                self.state = DONE
                self.waiting = None
                raise
        self.state = DONE
        self.unawaited = 0
        _raise_thrown(args)

    def close(self):
        """End the call: close the waiting coroutine if it is waiting; a call not yet stepped
        takes nothing."""
        if self.state == WAITING:
            waiting = self.waiting
            self.state = DONE
            self.waiting = None
            waiting.close()
        self.state = DONE
        self.unawaited = 0


cdef int _raise_thrown(tuple args) except -1:
    """Raise what throw() was given: an exception, or (type[, value[, traceback]])."""
    if not 1 <= len(args) <= 3:
        raise TypeError(f"throw expected 1 to 3 arguments, got {len(args)}")
    typ = args[0]
    val = args[1] if len(args) > 1 else None
    tb = args[2] if len(args) > 2 else None
    if isinstance(typ, type) and issubclass(typ, BaseException):
        if isinstance(val, typ):
            exc = val
        elif val is None:
            exc = typ()
        elif isinstance(val, tuple):
            exc = typ(*val)
        else:
            exc = typ(val)
    elif isinstance(typ, BaseException):
        if val is not None:
            raise TypeError("instance exception may not have a separate value")
        exc = typ
    else:
        raise TypeError(f"exceptions must be classes or instances deriving from BaseException, "
                        f"not {type(typ).__name__}")
    if tb is not None:
        exc = exc.with_traceback(tb)
    raise exc


cdef int _call_am_send(PyObject *op, PyObject *arg, PyObject **result) except -1:
    cdef _Call call = <_Call>op
    result[0] = NULL
    value = call._step(<object>arg)
    Py_INCREF(value)
    result[0] = <PyObject *>value
    return call.yielded


cdef void _warn_unawaited(PyObject *op) noexcept:
    """A _Call freed before it was awaited: warn as for a coroutine never awaited (most likely
    an await is missing; a send() not awaited sent nothing)."""
    cdef _Call call = <_Call>op
    what = f"{type(call.core).__name__}.{_KIND_NAMES[call.kind]}() was never awaited"
    PyErr_WarnEx(RuntimeWarning, what.encode(), 1)


cdef int _install() except -1:
    cdef _Call probe = _Call.__new__(_Call)
    cw_set_am_send(<PyTypeObject *>_Call, _call_am_send)
    cw_set_unawaited_hook(<PyTypeObject *>_Call, <char *>&probe.unawaited - <char *><PyObject *>probe,
                          _warn_unawaited)
    return 0


_install()
collections.abc.Coroutine.register(_Call)
