# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Waking ends awaited from asyncio: one thread sleeps on many ends' waiting words at once.

A ``Waker`` serves up to ``WAKER_SLOTS`` ends of one event loop.  An end that
finds nothing to do *arms* its slot (``arm``): it announces its sleep on the
ring's waiting word exactly as ``ring_wait`` does (store 1, full fence,
re-check), and if it must still wait, lists the word in its slot.  The waker's
thread sleeps in one ``futex_waitv`` on every armed word plus a private word,
``rearm``, that the loop bumps and wakes when the list changes.  When the
other end publishes (or releases) it clears the word and wakes it, as it does
for any sleeping end; the thread then marks the slot *fired* and writes the
loop's eventfd, whose reader callback resolves the end's future
(``collect``).  Taking the message happens afterwards, on the loop thread,
through the ordinary non-blocking calls: waiting and taking are separate, so a
cancelled wait has taken nothing.

The thread reads a word only for a slot that is armed, under the waker's lock;
an end is disarmed under that lock (``close_slot``) before its mapping goes
away, so the thread never touches unmapped memory.  The kernel may still hold
a stale address in a ``futex_waitv`` that began before; ``close_slot`` bumps
``rearm`` so that wait ends and is rebuilt without it.

See docs/protocol.md ("Waiting from asyncio") and docs/architecture.md.
"""
from cpython.pythread cimport (
    PyThread_type_lock, PyThread_allocate_lock, PyThread_free_lock,
    PyThread_acquire_lock, PyThread_release_lock, WAIT_LOCK,
)
from libc.errno cimport EAGAIN, EINTR, ENOSYS
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from posix.unistd cimport write

from cywhip.includes.c_atomics cimport cw_load_relaxed_u32, cw_store_relaxed_u32, cw_fence_seq_cst
from cywhip.includes.c_futex cimport cw_futex_wake
from cywhip.includes.c_waitv cimport cw_waitv_t, cw_waitv_set, cw_futex_waitv, CW_WAITV_MAX

from cywhip._end cimport _End, _enter, _leave

# Slots of a waker: futex_waitv takes at most 128 words, one of them rearm.
WAKER_SLOTS = CW_WAITV_MAX - 1

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
    bint shared       # a many-senders channel's sender_waiting: never cleared by a waiter


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

    def __dealloc__(self):
        if self.lock != NULL:
            PyThread_free_lock(self.lock)
        free(self.rearm)

    cdef inline void _lock(self) noexcept nogil:
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
        self._lock()
        for i in range(SLOTS):
            if self.slots[i].state == UNUSED:
                gen = self.next_gen
                self.next_gen += 1
                self.slots[i].gen = gen
                self.slots[i].state = IDLE
                self.slots[i].word = NULL
                self.slots[i].shared = False
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
        cdef int ready
        cdef bint poke = False
        cdef bint shared
        _enter(end)
        try:
            if end.ring.hdr == NULL:
                end._raise_closed()
            word = &end.ring.hdr.sender_waiting if end.sending else &end.ring.hdr.receiver_waiting
            # As ring_wait: announce, fence, re-check.  The other end stores its
            # cursor, fences, then loads this word: one of the two sees the other.
            # Several senders of one channel share sender_waiting: as in ring_wait, a
            # sender never clears it (that could hide another's sleep); the receiver does.
            # So do the members of receiver groups share receiver_waiting.
            shared = (end.sending and end.ring.many) or (not end.sending and end.ring.groups)
            cw_store_relaxed_u32(word, 1)
            cw_fence_seq_cst()
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
            self._lock()
            if not self._holds(slot, gen):
                self._unlock()
                if not shared:
                    cw_store_relaxed_u32(word, 0)
                return -1
            self.slots[slot].word = word
            self.slots[slot].shared = shared
            self.slots[slot].state = ARMED
            if not self.slots[slot].listed:
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
        self._lock()
        if self._holds(slot, gen):
            if self.slots[slot].state == ARMED and not self.slots[slot].shared:
                # Armed means the end is open and its mapping in place (close_slot()
                # disarms under this lock before any unmapping).
                cw_store_relaxed_u32(self.slots[slot].word, 0)
            self.slots[slot].state = IDLE
        self._unlock()

    def close_slot(self, int slot, uint64_t gen):
        """Give the slot up (the end closes): from any thread, before the end unmaps."""
        self._lock()
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

    def collect(self):
        """The slots that fired since the last call, as (slot, gen); they become idle."""
        cdef int i
        cdef list out = []
        self._lock()
        for i in range(SLOTS):
            if self.slots[i].state == FIRED:
                self.slots[i].state = IDLE
                out.append((i, self.slots[i].gen))
        self._unlock()
        return out

    def stop(self):
        """End run() (it returns within one wake-up)."""
        self._lock()
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
        cdef int which[CW_WAITV_MAX]
        cdef int i, n, rc = -EAGAIN, fired
        cdef uint64_t one = 1
        self._lock()
        while not self.stopping:
            fired = 0
            # Fire every armed slot whose word the other end cleared (or close()'s
            # interrupt did), and the one the kernel said it woke: another waiter
            # of the same word may have set it to 1 again since.
            for i in range(SLOTS):
                if self.slots[i].state == ARMED and cw_load_relaxed_u32(self.slots[i].word) != 1:
                    self.slots[i].state = FIRED
                    fired += 1
            if rc > 0:
                i = which[rc]
                if self.slots[i].state == ARMED and self.slots[i].word == <uint32_t *><size_t>vec[rc].uaddr:
                    self.slots[i].state = FIRED
                    fired += 1
            if fired:
                write(self.efd, &one, sizeof(one))
            # Rebuild the list: rearm first, with the value it has now, so any
            # change after this point makes the wait return at once.
            cw_waitv_set(&vec[0], self.rearm, self.rearm[0])
            n = 1
            for i in range(SLOTS):
                self.slots[i].listed = self.slots[i].state == ARMED
                if self.slots[i].listed:
                    cw_waitv_set(&vec[n], self.slots[i].word, 1)
                    which[n] = i
                    n += 1
            self._unlock()
            rc = cw_futex_waitv(vec, n)
            self._lock()
            self.wakeups += 1
            if rc < 0 and rc != -EAGAIN and rc != -EINTR:
                self.error = -rc
                if rc == -ENOSYS:
                    break
        self._unlock()

