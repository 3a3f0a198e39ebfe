# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Waiting on a ring, and a single-process model of it for tests."""
from libc.errno cimport ETIMEDOUT, EINTR
from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from cywhip.includes.c_atomics cimport (
    cw_load_relaxed_u64, cw_load_acquire_u64, cw_store_relaxed_u32,
    cw_fence_seq_cst, cw_cpu_relax,
)
from cywhip.includes.c_futex cimport cw_futex_wait, cw_futex_wake
from cywhip.includes.c_layout cimport (
    cw_many_slot_header, CW_SLOT_ALIGN, CW_SLOT_HEADER_SIZE, CW_HEADER_SIZE, CW_PLACE_SIZE, CW_MANY_SLOT_HEADER_SIZE, cw_place,
    cw_place_offset, cw_slots_offset, cw_slot_header_size,
)
from cywhip.includes.c_ofd_lock cimport cw_ofd_is_locked

# A receiver waiting at a hole (a slot claimed by a live sender, not yet
# published) sleeps at most HOLE_SLICE_NS before it tests the claimer's lock
# again: the claimer's publish wakes it at once, its death cannot.  (How long
# other sleeps last is the caller's: SLEEP_SLICE_NS in _ring.pxd for the
# Python ends, none for the Cython API.)
cdef enum:
    HOLE_SLICE_NS = 1_000_000


cdef int64_t monotonic_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1_000_000_000 + ts.tv_nsec


cdef int ring_attach(ring_t *r, cw_header *hdr, uint64_t slots_offset, uint64_t capacity,
                     uint64_t message_length, int64_t spin_ns, uint32_t max_senders,
                     int fd, uint64_t *intent) noexcept nogil:
    """Point r at a header whose geometry was validated; load both cursors. -1 if they are impossible.

    slots_offset, capacity, message_length and max_senders are the values
    this end opened with and checked against the header: the geometry is
    never read from shared memory again, where another process could have
    changed it since.  fd is the channel file (a receiver tests sender places'
    locks on it); intent is a sender's place's intent word (many senders),
    else NULL.
    """
    # Acquire: a restarted sender must see the slots the receiver finished
    # reading before it released read_cursor (pairs with ring_release), and
    # a restarted receiver the slots published before write_cursor (pairs
    # with ring_publish).
    cdef uint64_t rd = cw_load_acquire_u64(&hdr.read_cursor)
    cdef uint64_t w = cw_load_acquire_u64(&hdr.write_cursor)
    r.hdr = hdr
    r.slots = (<char *>hdr) + slots_offset
    r.slots_offset = slots_offset
    r.capacity = capacity
    r.message_length = message_length
    r.slot_header = cw_slot_header_size(max_senders)
    r.slot_size = r.slot_header + (message_length + CW_SLOT_ALIGN - 1) // CW_SLOT_ALIGN * CW_SLOT_ALIGN
    r.spin_ns = spin_ns
    r.many = max_senders > 1
    r.max_senders = max_senders
    r.places = (<char *>hdr) + CW_HEADER_SIZE
    r.intent = intent
    r.fd = fd
    r.wake_count = (1 << 30) if r.many else 1
    r.hole = 0
    r.skipped = 0
    r.voided = 0
    r.stop = 0
    r.bad_cursor = 0
    r.bad_write = 0
    r.bad_length = 0
    if intent != NULL:
        # S0: this place's lock is ours now; a claim a dead sender left in it is void.
        cw_store_release_u64(intent, 0)
    r.write = w
    r.write_index = w % capacity
    r.read_cache = rd
    r.read = rd
    r.read_index = rd % capacity
    r.write_cache = rd
    if w - rd > capacity:
        r.bad_cursor = w
        r.bad_write = w
        return -1
    return 0


cdef int64_t ring_depth(ring_t *r) noexcept nogil:
    """Messages published and not yet taken, from the shared cursors alone; -1 if impossible.

    Reads no private cursor, so any thread may ask while another uses the
    end.  The ends move the cursors meanwhile: load read_cursor, then
    write_cursor, then read_cursor again (acquire keeps the three loads in
    order).  Both only grow and a sound channel keeps read <= write <= read +
    capacity at every moment, so read_1 <= write <= read_2 + capacity.
    """
    cdef uint64_t read_1 = cw_load_acquire_u64(&r.hdr.read_cursor)
    cdef uint64_t write = cw_load_acquire_u64(&r.hdr.write_cursor)
    cdef uint64_t read_2 = cw_load_acquire_u64(&r.hdr.read_cursor)
    if read_2 < read_1 or write < read_1 or write - read_1 > r.capacity + (read_2 - read_1):
        r.bad_cursor = write
        return -1
    return <int64_t>(write - read_2) if write > read_2 else 0


cdef uint64_t ring_taken(ring_t *r) noexcept nogil:
    """The read cursor as this receiver last released it."""
    return cw_load_relaxed_u64(&r.hdr.read_cursor)


cdef inline int64_t _ready(ring_t *r, bint sending) noexcept nogil:
    if sending:
        return ring_refresh_free(r)
    return ring_available(r)


cdef int ring_wait(ring_t *r, bint sending, int64_t deadline_ns, int64_t slice_ns) noexcept nogil:
    """Wait for free slots (sending) or messages (not sending).

    Spins for r.spin_ns, then sleeps on this end's waiting word until woken,
    until the deadline (deadline_ns < 0: none) or, if slice_ns > 0, for at
    most slice_ns.  A receiver of many senders that finds a hole after
    spinning resolves it (ring_resolve_hole): steps over it if its claimer is
    dead, else sleeps at most HOLE_SLICE_NS.
    """
    cdef uint32_t *word = &r.hdr.sender_waiting if sending else &r.hdr.receiver_waiting
    # Many senders share sender_waiting: a sender never clears it (it would
    # hide another sender's sleep); the receiver clears it and wakes them all.
    cdef bint shared_word = sending and r.many
    cdef int64_t n, now, remaining
    cdef const timespec *timeout
    cdef int64_t spin_end
    cdef unsigned int i = 0
    cdef timespec ts
    cdef int rc

    now = monotonic_ns()
    spin_end = now + r.spin_ns
    while True:
        n = _ready(r, sending)
        if n != 0:
            return WAIT_READY if n > 0 else WAIT_CORRUPT
        if r.stop:
            return WAIT_STOPPED
        if deadline_ns >= 0 and now >= deadline_ns:
            if not sending and r.hole and ring_resolve_hole(r):
                continue
            return WAIT_TIMEOUT
        if now >= spin_end:
            if not sending and r.hole and ring_resolve_hole(r):
                continue
            break
        cw_cpu_relax()
        i += 1
        if (i & 15) == 0:
            now = monotonic_ns()

    # Announce the sleep, then look once more: the fence orders our store
    # of the waiting word before our reload of the other end's cursor, and
    # the other end fences between storing its cursor and loading the
    # waiting word, so either we see its progress or it sees us waiting.
    cw_store_relaxed_u32(word, 1)
    cw_fence_seq_cst()
    n = _ready(r, sending)
    if n != 0 or r.stop:
        if not shared_word:
            cw_store_relaxed_u32(word, 0)
        if r.stop:
            return WAIT_STOPPED
        return WAIT_READY if n > 0 else WAIT_CORRUPT
    # remaining < 0: no limit.
    remaining = HOLE_SLICE_NS if (not sending and r.hole) else (slice_ns if slice_ns > 0 else -1)
    if deadline_ns >= 0:
        now = monotonic_ns()
        if now >= deadline_ns:
            if not shared_word:
                cw_store_relaxed_u32(word, 0)
            return WAIT_TIMEOUT
        if remaining < 0 or deadline_ns - now < remaining:
            remaining = deadline_ns - now
    timeout = &ts
    if remaining < 0:
        timeout = NULL
    else:
        ts.tv_sec = remaining // 1_000_000_000
        ts.tv_nsec = remaining % 1_000_000_000
    rc = cw_futex_wait(word, 1, timeout)
    if not shared_word:
        cw_store_relaxed_u32(word, 0)
    if r.stop:
        return WAIT_STOPPED
    n = _ready(r, sending)
    if n != 0:
        return WAIT_READY if n > 0 else WAIT_CORRUPT
    # A signal handled by this thread while it slept: its caller checks signals now
    # (the Cython API returns INTERRUPTED), not at the end of a slice.
    return WAIT_INTERRUPTED if rc == EINTR else WAIT_AGAIN


# ------------------------------------------------------ many senders: receiving

cdef inline char *_slot(ring_t *r, uint64_t index) noexcept nogil:
    return r.slots + index * r.slot_size


cdef inline void _step_over(ring_t *r) noexcept nogil:
    """Pass the slot at the read cursor without delivering it (void, or a dead claimer's)."""
    r.read += 1
    r.read_index += 1
    if r.read_index == r.capacity:
        r.read_index = 0
    r.write_cache = r.read


cdef int64_t ring_scan(ring_t *r) noexcept nogil:
    """Many senders, step R1 for a run: count the messages published in a row from the read
    cursor, stepping over void slots at its start (and releasing them).

    Returns the count (its end in r.write_cache); 0 when there is none, with
    r.hole set if the read cursor is claimed but not published (R4) and clear
    if the ring is empty; -1 if the claim cursor is impossible.
    """
    cdef uint64_t seq = r.read, index = r.read_index, n = 0, c, stepped = 0
    cdef uint32_t length
    cdef char *slot
    while n + stepped < r.capacity:
        slot = _slot(r, index)
        # R1.  Acquire pairs with the sender's release of seq (S5): the
        # payload and length are complete once seq says this lap's message.
        if cw_load_acquire_u64(&(<cw_many_slot_header *>slot).seq) != seq + 1:
            break
        length = cw_load_relaxed_u32(&(<cw_many_slot_header *>slot).length)
        if length == CW_VOID_LENGTH:
            if n:
                break       # deliver the run before it first
            _step_over(r)
            r.voided += 1
            stepped += 1
            seq += 1
            index = r.read_index
            continue
        n += 1
        seq += 1
        index += 1
        if index == r.capacity:
            index = 0
    if stepped:
        ring_release(r)
    if n:
        r.hole = False
        r.write_cache = r.read + n
        return <int64_t>n
    # R4.  Acquire pairs with S3's compare-and-swap: a claim seen here
    # brings its claimer's intent (S2) with it.
    c = cw_load_acquire_u64(&r.hdr.write_cursor)
    if c - r.read > r.capacity:
        r.bad_cursor = c
        return -1
    r.hole = c != r.read
    return 0


cdef int ring_resolve_hole(ring_t *r) noexcept nogil:
    """Many senders, steps R4-R5 at a hole (the read cursor claimed, not published).

    Returns 1 when the hole is gone: its message was published meanwhile, or
    no live sender holds its claim and it was stepped over (for good: nobody
    can write that sequence any more); look again.  Returns 0 while a live
    sender may still fill it (wait for its publish, which wakes the receiver).
    """
    cdef uint64_t target = r.read + 1
    cdef uint32_t p
    cdef cw_place *place
    for p in range(r.max_senders):
        place = <cw_place *>(r.places + p * CW_PLACE_SIZE)
        # Acquire pairs with S6's release: an intent seen cleared brings the publish (S5).
        if cw_load_acquire_u64(&place.intent) == target:
            # Held (1), or the test failed (< 0): presume a live claimer.
            if cw_ofd_is_locked(r.fd, cw_place_offset(p)) != 0:
                return 0
    # R5: no live place claims it.  Published during the scan?
    if cw_load_acquire_u64(&(<cw_many_slot_header *>_slot(r, r.read_index)).seq) == target:
        r.hole = False
        return 1
    # Its claimer died before publishing: step over it, and hand the slot back.
    _step_over(r)
    r.skipped += 1
    r.hole = False
    ring_release(r)
    return 1


cdef int64_t ring_available_now(ring_t *r) noexcept nogil:
    """ring_available(), resolving a hole at once (the non-waiting receive calls)."""
    cdef int64_t n = ring_available(r)
    while n == 0 and r.hole and ring_resolve_hole(r):
        n = ring_available(r)
    return n


cdef void ring_interrupt(ring_t *r, bint sending) noexcept nogil:
    """End any wait on r in another thread of this process (used by close())."""
    cdef uint32_t *word
    r.stop = 1
    # Orders the store of stop before the store to the waiting word; the
    # waiter fences between announcing its sleep and checking stop.  Either
    # the waiter sees stop, or our clearing of its word comes after its
    # announcement, and the futex wait finds the word changed and returns
    # at once, instead of sleeping out its slice.
    cw_fence_seq_cst()
    if r.hdr != NULL:
        word = &r.hdr.sender_waiting if sending else &r.hdr.receiver_waiting
        cw_store_relaxed_u32(word, 0)
        cw_futex_wake(word, 1 << 30)


cdef class RingModel:
    """Both ends of one ring in private memory, driven from Python by tests.

    Exercises the same inline functions the channel uses: cursor arithmetic,
    index wrap-around, the free/available checks and the slot lengths.
    """
    cdef ring_t tx
    cdef ring_t rx
    cdef cw_header *hdr
    cdef size_t size

    def __cinit__(self, uint64_t capacity, uint64_t message_length, uint64_t start=0):
        if capacity < 1 or message_length < 1:
            raise ValueError(f"capacity and message_length must be >= 1, got {capacity} and {message_length}")
        cdef uint64_t slot_size = CW_SLOT_HEADER_SIZE + (message_length + CW_SLOT_ALIGN - 1) // CW_SLOT_ALIGN * CW_SLOT_ALIGN
        self.size = CW_HEADER_SIZE + capacity * slot_size
        self.hdr = <cw_header *>calloc(1, self.size)
        if self.hdr == NULL:
            raise MemoryError()
        self.hdr.capacity = capacity
        self.hdr.message_length = message_length
        self.hdr.slot_size = slot_size
        self.hdr.write_cursor = start
        self.hdr.read_cursor = start
        ring_attach(&self.tx, self.hdr, CW_HEADER_SIZE, capacity, message_length, 0, 1, -1, NULL)
        ring_attach(&self.rx, self.hdr, CW_HEADER_SIZE, capacity, message_length, 0, 1, -1, NULL)

    def __dealloc__(self):
        free(self.hdr)

    @property
    def write_cursor(self):
        return self.hdr.write_cursor

    @property
    def read_cursor(self):
        return self.hdr.read_cursor

    @property
    def write_index(self):
        return self.tx.write_index

    @property
    def read_index(self):
        return self.rx.read_index

    def free(self):
        return ring_free(&self.tx)

    def available(self):
        return ring_available(&self.rx)

    def send_batch(self, list messages):
        """Commit as many messages as fit and publish once; return how many."""
        cdef Py_ssize_t k = 0
        cdef bytes m
        for m in messages:
            if ring_free(&self.tx) <= 0:
                break
            if <uint64_t>len(m) > self.tx.message_length:
                raise ValueError(f"message of {len(m)} bytes, message_length is {self.tx.message_length}")
            memcpy(ring_write_slot(&self.tx), <char *>m, len(m))
            ring_commit(&self.tx, <uint32_t>len(m))
            k += 1
        ring_publish(&self.tx)
        return k

    def recv_batch(self, Py_ssize_t max_count):
        """Take up to max_count messages and release once."""
        cdef list out = []
        cdef int64_t n
        while len(out) < max_count and ring_available(&self.rx) > 0:
            n = ring_read_length(&self.rx)
            if n < 0:
                raise ValueError("corrupt slot length")
            out.append(ring_read_slot(&self.rx)[:n])
            ring_consume(&self.rx)
        ring_release(&self.rx)
        return out

    def reattach(self):
        """Reattach both ends from the shared cursors, as a restarted process would."""
        if (ring_attach(&self.tx, self.hdr, CW_HEADER_SIZE, self.tx.capacity, self.tx.message_length,
                        0, 1, -1, NULL)
                or ring_attach(&self.rx, self.hdr, CW_HEADER_SIZE, self.rx.capacity, self.rx.message_length,
                               0, 1, -1, NULL)):
            raise ValueError("impossible cursors")

    def interrupt_then_sleep(self, bint sending, double timeout):
        """Announce a sleep, let close() land, then sleep as ring_wait() would: the window
        between ring_wait()'s last check of stop and its futex wait.  Returns how the sleep
        ended: "woken" (the word had changed) or "timed out"."""
        cdef ring_t *r = &self.tx if sending else &self.rx
        cdef uint32_t *word = &r.hdr.sender_waiting if sending else &r.hdr.receiver_waiting
        cdef timespec ts
        cdef int rc
        r.stop = 0
        cw_store_relaxed_u32(word, 1)
        cw_fence_seq_cst()
        ring_interrupt(r, sending)
        ts.tv_sec = <long>timeout
        ts.tv_nsec = <long>((timeout - ts.tv_sec) * 1e9)
        rc = cw_futex_wait(word, 1, &ts)
        cw_store_relaxed_u32(word, 0)
        r.stop = 0
        return "timed out" if rc == ETIMEDOUT else "woken"

    def corrupt_cursors(self, uint64_t write, uint64_t read):
        self.hdr.write_cursor = write
        self.hdr.read_cursor = read


def layout():
    """Offsets and sizes of the shared layout as the compiler laid it out (for tests and docs)."""
    cdef cw_header h
    cdef cw_place p
    cdef cw_many_slot_header ms
    cdef char *base = <char *>&h
    return {
        "header_size": CW_HEADER_SIZE,
        "slot_header_size": CW_SLOT_HEADER_SIZE,
        "many_slot_header_size": CW_MANY_SLOT_HEADER_SIZE,
        "slot_seq": <char *>&ms.seq - <char *>&ms,
        "slot_align": CW_SLOT_ALIGN,
        "magic": <char *>&h.magic - base,
        "version": <char *>&h.version - base,
        "header_size_field": <char *>&h.header_size - base,
        "message_length": <char *>&h.message_length - base,
        "capacity": <char *>&h.capacity - base,
        "slot_size": <char *>&h.slot_size - base,
        "file_size": <char *>&h.file_size - base,
        "type_fingerprint": <char *>&h.type_fingerprint - base,
        "type_size": <char *>&h.type_size - base,
        "creator_pid": <char *>&h.creator_pid - base,
        "created_ns": <char *>&h.created_ns - base,
        "write_cursor": <char *>&h.write_cursor - base,
        "read_cursor": <char *>&h.read_cursor - base,
        "sender_waiting": <char *>&h.sender_waiting - base,
        "receiver_waiting": <char *>&h.receiver_waiting - base,
        "topology": <char *>&h.topology - base,
        "max_senders": <char *>&h.max_senders - base,
        "max_receivers": <char *>&h.max_receivers - base,
        "place_size": <char *>&h.place_size - base,
        "place_pid": <char *>&p.pid - <char *>&p,
        "place_starts": <char *>&p.starts - <char *>&p,
        "place_intent": <char *>&p.intent - <char *>&p,
        "sizeof_place": sizeof(cw_place),
        "places": cw_place_offset(0),
        "place_bytes": CW_PLACE_SIZE,
        # A channel of one sender and one receiver: its two places and its first slot.
        "sender_place": cw_place_offset(0),
        "receiver_place": cw_place_offset(1),
        "slots": cw_slots_offset(1, 1),
        "type_description": <char *>&h.type_description[0] - base,
        "sizeof_header": sizeof(cw_header),
    }
