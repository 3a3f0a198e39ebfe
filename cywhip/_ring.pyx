# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Waiting on a ring, and a single-process model of it for tests."""
from libc.errno cimport ETIMEDOUT, EINTR
from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from posix.unistd cimport getpid
from cywhip.includes.c_atomics cimport (
    cw_load_relaxed_u64, cw_load_acquire_u64, cw_store_relaxed_u32, cw_store_release_u64,
    cw_store_relaxed_u64, cw_cas_acq_rel_u64, cw_fetch_add_relaxed_u64, cw_load_relaxed_u32,
    cw_load_acquire_u32, cw_store_release_u32, cw_exchange_u32, cw_store_relaxed_i64,
    cw_fence_seq_cst, cw_cpu_relax, cw_cas_u32,
)
from cywhip.includes.c_futex cimport cw_futex_wait, cw_futex_wake
from cywhip.includes.c_membarrier cimport cw_membarrier_register, cw_membarrier_global
from libc.stdlib cimport getenv
from cywhip.includes.c_layout cimport (
    cw_many_slot_header, CW_SLOT_ALIGN, CW_SLOT_HEADER_SIZE, CW_HEADER_SIZE, CW_PLACE_SIZE, CW_MANY_SLOT_HEADER_SIZE, cw_place,
    cw_place_offset, cw_slots_offset, cw_slot_header_size, cw_group, cw_group_offset,
    CW_GROUP_IN_USE, CW_GROUP_DURABLE, CW_GROUPS_LOCK_BYTE,
)
from cywhip.includes.c_ofd_lock cimport cw_ofd_is_locked, cw_ofd_trylock, cw_ofd_unlock

cdef extern from "<sched.h>" nogil:
    int sched_yield()

# How long a sleep may last before the end must look again, for what no wake-up
# announces (ring_wait_slice_ns()).  A receiver waiting at a hole (a slot
# claimed by a live sender, not yet published), or a group member while
# another member holds a claim or the claim lock, sleeps at most
# HOLE_SLICE_NS: that sender's publish (that member's take) wakes it at once,
# its death cannot.  (The caller may cut every sleep shorter: SLEEP_SLICE_NS
# in _ring.pxd for the Python ends, none for the Cython API.)
cdef enum:
    HOLE_SLICE_NS = 1_000_000
    # Receiver groups: a sender on a full ring sleeps at most this long while only
    # non-durable groups hold it back (their last member's death wakes nobody: the
    # sender removes such a group when it looks), or while no bound is known (a
    # group creation stalled: its creator's death wakes nobody either).
    GROUP_SLICE_NS = 10_000_000
    # A member looks for dead members' claims at most this often when it polls.
    DETECT_EVERY_NS = 1_000_000
    # Spins on a group's claim lock before testing its holder's place lock.
    CLAIM_LOCK_SPINS = 4096
    # A sender's reads of the groups' positions that a group creation may invalidate, in a row.
    GROUPS_BOUND_LOOKS = 64
    # An end about to sleep whose barrier the kernel refused though it has membarrier (a
    # filter forbids it) sleeps at most this long: a registered process's publish may not
    # have seen it waiting.
    UNFENCED_SLICE_NS = 1_000_000
    # A waiting end spins with a CPU pause between looks for this long; for the rest of its
    # spin_time it yields its core between looks instead.  A peer that runs at all is usually
    # seen within the pauses; when more ends run than the machine has cores (a sender and two
    # receiver groups on two cores), the yield hands the core to the peer this end waits for,
    # where a pause would hold it.  On an idle core the yield returns at once.
    SPIN_PAUSE_NS = 2_000


# Whether this process publishes with a compiler barrier only (ring_publish_order()):
# -1 not yet asked, 0 no, 1 yes.  Registering is per process and kept across fork.
cdef int _light = -1


cdef bint membarrier_refused() noexcept nogil:
    """CYWHIP_NO_MEMBARRIER set to anything but "" or "0": this process keeps the full fence
    on every publish and takes every one-thread guard by compare-and-swap."""
    cdef const char *v = getenv("CYWHIP_NO_MEMBARRIER")
    return v != NULL and v[0] != 0 and not (v[0] == 48 and v[1] == 0)


cdef bint light_publish() noexcept nogil:
    """Register this process for membarrier's global expedited barriers, once; whether it is
    registered (not with CYWHIP_NO_MEMBARRIER)."""
    global _light
    if _light < 0:
        _light = 0 if membarrier_refused() else cw_membarrier_register()
    return _light == 1


cdef extern from *:
    """
    #if defined(CYTHON_TRACE_NOGIL) && CYTHON_TRACE_NOGIL
    #define CYWHIP_LINE_TRACED 1
    #else
    #define CYWHIP_LINE_TRACED 0
    #endif
    """
    const int CYWHIP_LINE_TRACED

# Built with line tracing (CYWHIP_DEBUG=1): nogil code then takes the GIL on every line.
LINE_TRACED = bool(CYWHIP_LINE_TRACED)


def publish_mode():
    """How this process orders a publish before its look at the other end's waiting word:
    "membarrier" (a compiler barrier; ends about to sleep run membarrier(2)) or "fence"."""
    return "membarrier" if light_publish() else "fence"


# Tokens of the ends that share a waiting word (many senders, receiver groups): the n-th
# token this process makes, hashed with its pid.  Counted across fork, so a child's tokens
# differ from its parent's.
cdef uint64_t _tokens = 0


cdef inline uint32_t _mix32(uint32_t x) noexcept nogil:
    """murmur3's finalizer: a bijection of 32-bit words that spreads every bit."""
    x ^= x >> 16
    x *= 0x85EBCA6BU
    x ^= x >> 13
    x *= 0xC2B2AE35U
    x ^= x >> 16
    return x


cdef uint32_t ring_new_token() noexcept nogil:
    """A waiting token: never 0 (no sleeper) and, within this process, distinct for 2**32
    calls in a row; another process's differ but by chance (2**-32)."""
    cdef uint32_t t = 0
    while t == 0:
        t = _mix32(<uint32_t>cw_fetch_add_relaxed_u64(&_tokens, 1) * 0x9E3779B1U
                   + _mix32(<uint32_t>getpid()))
    return t


cdef bint ring_announce_sleep(uint32_t *word, bint shared, uint32_t *expect) noexcept nogil:
    """Announce a sleep on word and order it before the look that follows (the waiter's half
    of the wake-up handshake); expect[0] is the value to sleep on.  The full fence pairs with
    an end that fences when it publishes; the barrier membarrier(2) runs on every CPU of a
    registered process pairs with an end that does not.  False if the kernel refused that
    barrier though it has it (a filter): the caller then sleeps at most UNFENCED_SLICE_NS.
    A kernel without it has no registered process either.

    An end alone on its word stores 1.  Ends that share it (shared) never store over a
    sleeper's value: they join the value there (a compare-and-swap of it with itself, so
    that the fence orders it as a store), or, finding 0 (no sleeper, or a wake-up just
    cleared it), store a new token.  A waker's exchange to 0 then always changes what each
    sleeper expects, even when another end announces again before a sleeper's futex wait:
    that end stores another token, and the sleeper's wait returns at once.  With 1 for all,
    the word would read 1 again and the sleeper would sleep through the wake-up."""
    cdef uint32_t v, mine
    if shared:
        v = cw_load_relaxed_u32(word)
        while True:
            mine = v if v != 0 else ring_new_token()
            if cw_cas_u32(word, &v, mine):
                break
        expect[0] = mine
    else:
        cw_store_relaxed_u32(word, 1)
        expect[0] = 1
    cw_fence_seq_cst()
    return cw_membarrier_global() >= 0


cdef int64_t monotonic_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1_000_000_000 + ts.tv_nsec


cdef int ring_attach(ring_t *r, cw_header *hdr, uint64_t slots_offset, uint64_t capacity,
                     uint64_t message_length, int64_t spin_ns, uint32_t max_senders,
                     int fd, uint64_t *intent, uint32_t max_receivers=1) noexcept nogil:
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
    r.light = light_publish()
    r.many = max_senders > 1
    r.max_senders = max_senders
    r.places = (<char *>hdr) + CW_HEADER_SIZE
    r.intent = intent
    r.fd = fd
    r.wake_count = (1 << 30) if r.many else 1
    r.groups = False
    r.max_receivers = 1
    r.rplaces = NULL
    r.gtable = NULL
    r.group = NULL
    r.group_index = 0
    r.group_tag = 0
    r.place = NULL
    r.place_index = 0
    r.want = 1
    r.receiver_wake_count = 1
    r.detect_ns = 0
    r.bound_stale = False
    r.resolve_now = False
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
    if max_receivers > 1:
        # Groups: read_cursor is only where a first group starts; a sender
        # learns how far the groups are on its first look for room, which the
        # cache forces (ring_attach_groups() sets a member's cursors).
        r.read_cache = w - capacity
        return 0
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
    cdef uint64_t read_1, write, m
    cdef bint any
    if r.groups:
        # A member: what its group has not taken; a sender: what the slowest group has not.
        # Positions only grow, and were at most capacity behind write when it was loaded.
        write = cw_load_acquire_u64(&r.hdr.write_cursor)
        if r.group != NULL:
            m = group_position(r.rplaces, r.max_receivers, r.group, r.group_tag)
        else:
            m = groups_min(r.hdr, r.rplaces, r.gtable, r.max_receivers, &any)
            if not any:
                m = cw_load_acquire_u64(&r.hdr.read_cursor)
        if write <= m:
            return 0
        if write - m > r.capacity:
            r.bad_cursor = m if r.group == NULL else write
            r.bad_write = write
            return -1
        return <int64_t>(write - m)
    read_1 = cw_load_acquire_u64(&r.hdr.read_cursor)
    write = cw_load_acquire_u64(&r.hdr.write_cursor)
    cdef uint64_t read_2 = cw_load_acquire_u64(&r.hdr.read_cursor)
    if read_2 < read_1 or write < read_1 or write - read_1 > r.capacity + (read_2 - read_1):
        r.bad_cursor = write
        return -1
    return <int64_t>(write - read_2) if write > read_2 else 0


cdef uint64_t ring_taken(ring_t *r) noexcept nogil:
    """The read cursor as this receiver last released it (a group member: its group's
    first message not taken)."""
    if r.groups and r.group != NULL:
        return group_position(r.rplaces, r.max_receivers, r.group, r.group_tag)
    return cw_load_relaxed_u64(&r.hdr.read_cursor)


cdef inline int64_t _ready(ring_t *r, bint sending) noexcept nogil:
    if sending:
        return ring_refresh_free(r)
    return ring_available(r)


cdef uint32_t *ring_waiting_word(ring_t *r, bint sending, bint *shared) noexcept nogil:
    """The word this end sleeps on: sender_waiting or receiver_waiting.  shared[0]: other
    ends sleep on it too (the senders of a many-senders channel, the members of receiver
    groups); such an end never clears it (it would hide another's sleep: the other end
    clears it and wakes them all) and announces with a token (ring_announce_sleep())."""
    shared[0] = (sending and r.many) or (not sending and r.groups)
    return &r.hdr.sender_waiting if sending else &r.hdr.receiver_waiting


cdef int64_t ring_wait_slice_ns(ring_t *r, bint sending, bint fenced, int *why) noexcept nogil:
    """How long an end that announced its sleep (ring_announce_sleep(), which returned
    fenced) and then found nothing to do may sleep before it must look again, in ns; -1: until
    woken.  why (unless NULL) says which SLICE_* reason chose it.

    Every other end's progress wakes a sleeper (a publish, a take, a group made or removed,
    close()); what wakes nobody is a death, and a refused barrier.  So the sleep is in slices
    only while this end waits for something whose death it must see for itself:

    - a receiver of many senders at a hole: the claim cursor is past its read cursor and that
      slot is not published (SLICE_HOLE, HOLE_SLICE_NS; its claimer's lock is tested on
      waking, ring_resolve_hole());
    - a group member while another place holds a claim of its group, or another member holds
      its group's claim lock (SLICE_MEMBER, HOLE_SLICE_NS; dead ones are taken over, D), or
      with many senders at a hole of its group (SLICE_HOLE);
    - a sender of a channel with groups while no bound is known (ring_groups_floor() gave up:
      a creation stalled, SLICE_CREATOR), or while every group at its bound is non-durable
      (SLICE_GROUP: one whose last member died is removed when the sender looks); both
      GROUP_SLICE_NS;
    - any end whose membarrier the kernel refused (SLICE_UNFENCED, UNFENCED_SLICE_NS).

    Reads only: every value it reads from shared memory picks a slice length, nothing else.
    Call it after the look that follows the announcement, so that it sees what that look saw
    or later."""
    cdef int64_t ns = -1
    cdef int reason = SLICE_NONE
    cdef uint64_t c, n, lock, tag, pos
    cdef uint32_t q, g, flags
    cdef cw_place *p
    cdef cw_group *e
    cdef bint nondurable = False, durable = False
    if not sending:
        if r.groups and r.group != NULL:
            lock = cw_load_acquire_u64(&r.group.lock)
            if lock != 0 and lock != r.place_index + 1:
                reason = SLICE_MEMBER
            else:
                for q in range(r.max_receivers):
                    if q == r.place_index:
                        continue
                    p = _rplace(r.rplaces, q)
                    if cw_load_acquire_u64(&p.hold_start) != 0 and cw_load_relaxed_u64(&p.group) == r.group_tag:
                        reason = SLICE_MEMBER
                        break
            if reason == SLICE_NONE and r.many:
                n = cw_load_acquire_u64(&r.group.next)
                c = cw_load_acquire_u64(&r.hdr.write_cursor)
                if c != n and c - n <= r.capacity and cw_load_acquire_u64(
                        &(<cw_many_slot_header *>_slot(r, n % r.capacity)).seq) != n + 1:
                    reason = SLICE_HOLE
        elif r.many:
            c = cw_load_acquire_u64(&r.hdr.write_cursor)
            if c != r.read and c - r.read <= r.capacity and cw_load_acquire_u64(
                    &(<cw_many_slot_header *>_slot(r, r.read_index)).seq) != r.read + 1:
                reason = SLICE_HOLE
        if reason != SLICE_NONE:
            ns = HOLE_SLICE_NS
    elif r.groups:
        if r.bound_stale:
            reason = SLICE_CREATOR
        else:
            for g in range(r.max_receivers):
                e = _gentry(r.gtable, g)
                flags = cw_load_acquire_u32(&e.flags)
                if not (flags & CW_GROUP_IN_USE):
                    continue
                tag = (cw_load_relaxed_u64(&e.epoch) << 32) | (g + 1)
                pos = group_position(r.rplaces, r.max_receivers, e, tag)
                if pos != r.read_cache:
                    continue
                if flags & CW_GROUP_DURABLE:
                    durable = True
                else:
                    nondurable = True
            # A durable group at the bound holds the sender whatever happens to the others, and
            # its takes wake the sender.
            if nondurable and not durable:
                reason = SLICE_GROUP
        if reason != SLICE_NONE:
            ns = GROUP_SLICE_NS
    if not fenced and (ns < 0 or ns > UNFENCED_SLICE_NS):
        ns = UNFENCED_SLICE_NS
        reason = SLICE_UNFENCED
    if why != NULL:
        why[0] = reason
    return ns


cdef int ring_wait(ring_t *r, bint sending, int64_t deadline_ns, int64_t slice_ns) noexcept nogil:
    """Wait for free slots (sending) or messages (not sending).

    Spins for r.spin_ns (a CPU pause between looks for the first SPIN_PAUSE_NS, a yield of
    the core after that), then sleeps on this end's waiting word until woken,
    until the deadline (deadline_ns < 0: none), for at most what
    ring_wait_slice_ns() says and, if slice_ns > 0, for at most slice_ns.  A
    receiver of many senders that finds a hole after spinning resolves it
    (ring_resolve_hole): steps over it if its claimer is dead.
    """
    cdef bint shared_word
    cdef uint32_t *word = ring_waiting_word(r, sending, &shared_word)
    cdef int64_t n, now, remaining
    cdef const timespec *timeout
    cdef int64_t spin_end
    cdef int64_t pause_end
    cdef unsigned int i = 0
    cdef timespec ts
    cdef int rc
    cdef bint fenced
    cdef uint32_t expect

    now = monotonic_ns()
    spin_end = now + r.spin_ns
    pause_end = now + SPIN_PAUSE_NS
    while True:
        n = _ready(r, sending)
        if n != 0:
            return WAIT_READY if n > 0 else WAIT_CORRUPT
        if r.stop:
            return WAIT_STOPPED
        if deadline_ns >= 0 and now >= deadline_ns:
            if not sending and r.many and r.hole and ring_resolve_hole(r):
                continue
            return WAIT_TIMEOUT
        if now >= spin_end:
            if not sending and r.many and r.hole and ring_resolve_hole(r):
                continue
            if r.groups and _group_unstick(r, sending):
                continue
            break
        if now < pause_end:
            cw_cpu_relax()
            i += 1
            if (i & 15) == 0:
                now = monotonic_ns()
        else:
            sched_yield()
            now = monotonic_ns()

    # Announce the sleep, then look once more: the barrier orders our store
    # of the waiting word before our reload of the other end's cursor, and
    # the other end orders its store of its cursor before its load of the
    # waiting word (ring_publish_order()), so either we see its progress or
    # it sees us waiting.
    fenced = ring_announce_sleep(word, shared_word, &expect)
    n = _ready(r, sending)
    if n != 0 or r.stop:
        if not shared_word:
            cw_store_relaxed_u32(word, 0)
        if r.stop:
            return WAIT_STOPPED
        return WAIT_READY if n > 0 else WAIT_CORRUPT
    # remaining < 0: no limit.
    remaining = ring_wait_slice_ns(r, sending, fenced, NULL)
    if slice_ns > 0 and (remaining < 0 or slice_ns < remaining):
        remaining = slice_ns
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
    rc = cw_futex_wait(word, expect, timeout)
    if not shared_word:
        cw_store_relaxed_u32(word, 0)
    if r.stop:
        return WAIT_STOPPED
    n = _ready(r, sending)
    if n != 0:
        return WAIT_READY if n > 0 else WAIT_CORRUPT
    # A signal handled by this thread while it slept: its caller checks signals now
    # (the Cython API returns INTERRUPTED), not at the end of a slice.
    if rc == EINTR:
        return WAIT_INTERRUPTED
    if r.groups and _group_unstick(r, sending):
        n = _ready(r, sending)
        if n != 0:
            return WAIT_READY if n > 0 else WAIT_CORRUPT
    return WAIT_AGAIN


cdef int _group_unstick(ring_t *r, bint sending) noexcept nogil:
    """Groups, after a spin or a sleep slice found nothing: a member looks for dead members'
    claims to finish (D); a sender for a non-durable group with no live member holding it
    back (R).  1 if something changed: look again."""
    if sending:
        return ring_groups_release_dead(r)
    r.detect_ns = monotonic_ns()
    return ring_group_detect(r)


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
    cdef int64_t got
    if r.groups:
        # A member at a hole of its group (ring_group_claim), or waiting while another
        # member holds a claim: test the locks now.
        r.resolve_now = True
        r.hole = False
        got = ring_group_claim(r)
        r.resolve_now = False
        if got == 0 and not r.hole and r.read == r.write_cache:
            got = ring_group_detect(r)
        return got != 0
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
    # r.hole of a group member means another member holds a claim: nothing to resolve.
    while n == 0 and r.many and r.hole and ring_resolve_hole(r):
        n = ring_available(r)
    return n


# ------------------------------------------------------------ receiver groups

cdef inline cw_place *_rplace(char *rplaces, uint32_t q) noexcept nogil:
    return <cw_place *>(rplaces + q * CW_PLACE_SIZE)


cdef inline cw_group *_gentry(char *gtable, uint32_t g) noexcept nogil:
    return <cw_group *>(gtable + g * sizeof(cw_group))


cdef int ring_attach_groups(ring_t *r, uint32_t max_receivers, cw_group *group, uint32_t group_index,
                            uint64_t group_tag, cw_place *place, uint32_t place_index) noexcept nogil:
    """After ring_attach(): the channel has receiver groups.  A member passes its group, the
    tag it joined with (its place carries it) and its place (a sender NULL): it goes on with
    the claim found in its place (one it took over from a dead member), or claims anew.
    -1 if the claim found is impossible."""
    cdef uint64_t h, e, n
    r.groups = True
    r.max_receivers = max_receivers
    r.rplaces = (<char *>r.hdr) + cw_place_offset(r.max_senders)
    r.gtable = (<char *>r.hdr) + cw_group_offset(r.max_senders, max_receivers, 0)
    r.receiver_wake_count = 1 << 30
    r.wake_count = 1 << 30
    r.group = group
    r.place = place
    r.place_index = place_index
    r.group_index = group_index
    if group == NULL:
        return 0
    r.group_tag = group_tag
    n = cw_load_acquire_u64(&group.next)
    h = cw_load_acquire_u64(&place.hold_start)
    e = cw_load_relaxed_u64(&place.hold_end)
    if h != 0:
        return _take_over_hold(r, h, e)
    r.read = n
    r.read_index = n % r.capacity
    r.write_cache = n
    return 0


cdef int _take_over_hold(ring_t *r, uint64_t h, uint64_t e) noexcept nogil:
    """Go on with a claim [h - 1, e) found in this member's place (checked first)."""
    cdef uint64_t w = cw_load_acquire_u64(&r.hdr.write_cursor)
    if e < h or e > w or w - (h - 1) > r.capacity:
        r.bad_cursor = h - 1
        r.bad_write = e
        return -1
    r.read = h - 1
    r.read_index = r.read % r.capacity
    r.write_cache = e
    return 0


cdef uint64_t group_position(char *rplaces, uint32_t max_receivers, cw_group *g, uint64_t tag) noexcept nogil:
    """The group's first message not taken: its claim cursor, or an older claim still held."""
    # Acquire pairs with C6: a claim seen handed out brings its hold (C5).
    cdef uint64_t m = cw_load_acquire_u64(&g.next)
    cdef uint64_t h
    cdef uint32_t q
    cdef cw_place *p
    for q in range(max_receivers):
        p = _rplace(rplaces, q)
        h = cw_load_acquire_u64(&p.hold_start)
        if h != 0 and h - 1 < m and cw_load_relaxed_u64(&p.group) == tag:
            m = h - 1
    return m


cdef uint64_t groups_min(cw_header *hdr, char *rplaces, char *gtable, uint32_t max_receivers,
                         bint *any) noexcept nogil:
    """The oldest message some group in use has not taken (any[0] false: no group in use).

    Every group's claim cursor is loaded before any place: a claim handed out
    after that load starts at or past the value loaded."""
    cdef uint64_t m = <uint64_t>-1, v, h, tag
    cdef uint32_t g, q, gi
    cdef cw_group *e
    cdef cw_place *p
    any[0] = False
    for g in range(max_receivers):
        e = _gentry(gtable, g)
        if cw_load_acquire_u32(&e.flags) & CW_GROUP_IN_USE:
            any[0] = True
            v = cw_load_acquire_u64(&e.next)
            if v < m:
                m = v
    if not any[0]:
        return 0
    for q in range(max_receivers):
        p = _rplace(rplaces, q)
        h = cw_load_acquire_u64(&p.hold_start)
        if h == 0 or h - 1 >= m:
            continue
        tag = cw_load_relaxed_u64(&p.group)
        gi = <uint32_t>tag
        if gi == 0 or gi > max_receivers:
            continue
        e = _gentry(gtable, gi - 1)
        # A claim counts while its group is the one it was made in.
        if (cw_load_acquire_u32(&e.flags) & CW_GROUP_IN_USE) and (cw_load_relaxed_u64(&e.epoch) << 32 | gi) == tag:
            m = h - 1
    return m


cdef uint64_t ring_groups_floor(ring_t *r) noexcept nogil:
    """A sender of a channel with groups: the first message the slowest group has not taken
    (the floor if no group is in use): messages before it are free to overwrite.

    A sequence lock against group creation (groups_gen odd while a group is
    made): a new group starts at the oldest message some group still holds,
    and must not be overtaken by a sender that computed its bound without it.

    While a live creator holds the groups lock with the number odd, or when
    the number keeps changing under the reads, returns the bound last seen
    (r.read_cache): no room known, so the caller waits, by its deadline, and
    asks again."""
    cdef uint64_t g1, g2, m
    cdef bint any
    cdef int tries = 0, looks = 0
    r.bound_stale = False
    while True:
        g1 = cw_load_acquire_u64(&r.hdr.groups_gen)
        if g1 & 1:
            # A group is being created: a few stores.  Unless its creator died
            # midway (the groups lock is free then; the next to take it makes the
            # number even again): every state the creator leaves is one to read.
            tries += 1
            if tries < CLAIM_LOCK_SPINS:
                cw_cpu_relax()
                continue
            if cw_ofd_is_locked(r.fd, CW_GROUPS_LOCK_BYTE) != 0:
                # Alive, and long in its creation (preempted or stopped).
                r.bound_stale = True
                return r.read_cache
            # Read as it is; a creation that starts meanwhile changes the number.
        m = groups_min(r.hdr, r.rplaces, r.gtable, r.max_receivers, &any)
        if not any:
            # No group: the floor, where the last group removed had got to; moved up to
            # what the senders have published if every group has left.
            m = _groups_left_floor(r, cw_load_acquire_u64(&r.hdr.read_cursor))
        cw_fence_seq_cst()
        g2 = cw_load_relaxed_u64(&r.hdr.groups_gen)
        if g1 == g2:
            return m
        looks += 1
        if looks == GROUPS_BOUND_LOOKS:
            r.bound_stale = True
            return r.read_cache


cdef uint64_t _groups_left_floor(ring_t *r, uint64_t m) noexcept nogil:
    """Step F, a sender that found no group in use (inside ring_groups_floor()'s sequence
    lock): m is the floor.  If groups have been (some entry's epoch is not 0), every group
    has left, and the channel does not hold its senders: it keeps the most recent messages
    for a group that joins later.  So move the floor up to the first message that may
    still be unpublished (one sender: the write cursor; many: the claim cursor, or the
    oldest sequence a live sender is still filling) and return it.  A channel on which
    no group was ever made holds its senders at the floor (ends start in any order)."""
    cdef uint64_t t, intent
    cdef uint32_t g, p
    cdef cw_place *place
    cdef bint been = False
    for g in range(r.max_receivers):
        if cw_load_relaxed_u64(&_gentry(r.gtable, g).epoch) != 0:
            been = True
            break
    if not been:
        return m
    # Acquire pairs with the claim's compare-and-swap (many) or the publish (one sender):
    # the intents of claims before t are visible below.
    t = cw_load_acquire_u64(&r.hdr.write_cursor)
    if r.many:
        for p in range(r.max_senders):
            place = <cw_place *>(r.places + p * CW_PLACE_SIZE)
            intent = cw_load_acquire_u64(&place.intent)
            # A live sender filling sequence intent - 1: the floor stays below it, so that
            # no sender can claim that slot's next lap while it writes.  A dead one's claim
            # is never written again: it can be overwritten.
            if intent != 0 and m <= intent - 1 < t and cw_ofd_is_locked(r.fd, cw_place_offset(p)) != 0:
                t = intent - 1
    if t <= m or t - m > r.capacity:
        return m        # nothing to move, or impossible cursors: the caller checks them
    while not cw_cas_acq_rel_u64(&r.hdr.read_cursor, &m, t):
        if m >= t:
            return m    # another sender moved it as far or further
    return t


cdef int64_t ring_groups_bound(ring_t *r) noexcept nogil:
    """A sender of one: reload how far the slowest group is (into r.read_cache); return the
    free slots (0 when no room is known, see ring_groups_floor()), or -1 if impossible."""
    cdef uint64_t m = ring_groups_floor(r)
    if r.write - m > r.capacity:
        r.bad_cursor = m
        r.bad_write = r.write
        return -1
    r.read_cache = m
    return <int64_t>(r.capacity - (r.write - m))


cdef int group_resolve_lock(cw_group *g, uint64_t tag, cw_place *q, uint32_t q_index) noexcept nogil:
    """Step L: the claim lock of group g (tag: its tag) names place q, whose member died; the
    caller holds q's place lock now.  Decide whether q's claim was handed out (C6 done: it
    stands) or not (drop it), and free the claim lock.  A claim q holds for another group
    is that group's: a lock naming q does not touch it."""
    cdef uint64_t h, e, n
    if cw_load_acquire_u64(&g.lock) != q_index + 1:
        return 0
    h = cw_load_acquire_u64(&q.hold_start)
    e = cw_load_relaxed_u64(&q.hold_end)
    n = cw_load_acquire_u64(&g.next)
    if h != 0 and n != e and cw_load_relaxed_u64(&q.group) == tag:
        # C5 done, C6 not: nothing was handed out.
        cw_store_release_u64(&q.hold_start, 0)
    cw_store_release_u64(&g.lock, 0)
    return 1


cdef int _adopt(ring_t *r, uint32_t qi) noexcept nogil:
    """Steps L and A: take over dead member place qi of this member's group.  The caller's
    own claim is all taken.  1 if this member now goes on with qi's claim."""
    cdef cw_place *q = _rplace(r.rplaces, qi)
    cdef cw_place *old = r.place
    cdef uint64_t h, e
    cdef uint64_t off = cw_place_offset(r.max_senders + qi)
    if cw_ofd_trylock(r.fd, off) != 0:
        return 0        # alive, or another member is taking it over
    group_resolve_lock(r.group, r.group_tag, q, qi)
    h = cw_load_acquire_u64(&q.hold_start)
    e = cw_load_relaxed_u64(&q.hold_end)
    if h == 0 or cw_load_relaxed_u64(&q.group) != r.group_tag:
        # Nothing of ours to finish: leave the place clean for whoever comes.
        if cw_load_relaxed_u64(&q.group) == r.group_tag:
            # A member that died holding no claim: it counts no more.
            cw_store_release_u64(&q.group, 0)
            _group_recount(r)
        cw_ofd_unlock(r.fd, off)
        return 0
    if _take_over_hold(r, h, e) != 0:
        cw_ofd_unlock(r.fd, off)
        return 0
    # Move into the dead member's place; leave ours empty.
    cw_store_relaxed_i64(&q.pid, getpid())
    cw_fetch_add_relaxed_u64(&q.starts, 1)
    cw_store_release_u64(&old.hold_start, 0)
    cw_store_release_u64(&old.group, 0)
    cw_store_relaxed_i64(&old.pid, 0)
    cw_ofd_unlock(r.fd, cw_place_offset(r.max_senders + r.place_index))
    r.place = q
    r.place_index = qi
    # The dead member counts no more (nor, if it had closed, twice).
    _group_recount(r)
    return 1


cdef inline void _group_set_members(cw_group *g, uint64_t live) noexcept nogil:
    """Store the hint members = live, unless it says so already (the entry's line is the
    claimers' too: leave it alone when nothing changes)."""
    if cw_load_relaxed_u64(&g.members) != live:
        cw_store_relaxed_u64(&g.members, live)


cdef void _group_recount(ring_t *r) noexcept nogil:
    """Recount the hint members of this member's group: this member, and every other place
    of its group whose lock is held (a live member; a failed test presumes one)."""
    cdef uint32_t qi
    cdef uint64_t live = 1
    for qi in range(r.max_receivers):
        if qi != r.place_index and cw_load_relaxed_u64(&_rplace(r.rplaces, qi).group) == r.group_tag \
                and cw_ofd_is_locked(r.fd, cw_place_offset(r.max_senders + qi)) != 0:
            live += 1
    _group_set_members(r.group, live)


cdef int ring_group_detect(ring_t *r) noexcept nogil:
    """Step D: a member with nothing to claim looks for the claims of its group's dead
    members (and a dead member holding the claim lock).  1 if it took one over.

    It tests the lock of every other place of its group, so it also finds the members
    that died holding no claim (their places are cleared) and recounts the hint members.
    Sets r.hole while another live member holds a claim (the caller then
    sleeps in short slices: that member's death wakes nobody)."""
    cdef uint32_t qi
    cdef cw_place *q
    cdef uint64_t lock = cw_load_acquire_u64(&r.group.lock)
    cdef uint64_t live = 1, hold
    cdef bint ours
    cdef int rc
    r.hole = False
    if r.read != r.write_cache:
        return 0
    for qi in range(r.max_receivers):
        if qi == r.place_index:
            continue
        q = _rplace(r.rplaces, qi)
        hold = cw_load_acquire_u64(&q.hold_start)
        ours = cw_load_relaxed_u64(&q.group) == r.group_tag
        if lock != qi + 1 and not ours:
            continue
        rc = cw_ofd_is_locked(r.fd, cw_place_offset(r.max_senders + qi))
        if rc != 0:
            # Alive (or the test failed: presume so).
            if ours:
                live += 1
            if lock == qi + 1 or (ours and hold != 0):
                r.hole = True
            continue
        if _adopt(r, qi):
            r.hole = False
            return 1
    _group_set_members(r.group, live)
    return 0


cdef int64_t ring_group_claim(ring_t *r) noexcept nogil:
    """Steps C1-C7: claim for this member the next messages its group has not handed out
    (at most r.want while others share the group).  Its own claim must be all taken.

    Returns how many (r.read .. r.write_cache), 0 if none, -1 if impossible."""
    cdef cw_group *g = r.group
    cdef uint64_t mine = r.place_index + 1
    cdef uint64_t n, w, k, free_lock, lock
    cdef int spins = 0
    cdef int64_t now
    cdef int at = RUN
    while True:
        n = cw_load_acquire_u64(&g.next)                         # C1
        # Acquire pairs with the sender's release in ring_publish().
        w = cw_load_acquire_u64(&r.hdr.write_cursor)             # C2
        if w - n > r.capacity:
            # n may be old: this member was preempted between C1 and C2 while the others
            # claimed on and the sender followed them.  But it was loaded before w, so it is
            # at most w in a sound channel; and a claim cursor loaded after w is at most
            # capacity behind it (the sender never runs further ahead of any group).
            if n > w:
                r.bad_cursor = n
                r.bad_write = w
                return -1
            n = cw_load_acquire_u64(&g.next)
            if n <= w and w - n > r.capacity:
                r.bad_cursor = n
                r.bad_write = w
                return -1
            spins += 1
            if spins >= CLAIM_LOCK_SPINS:
                # The group's claim cursor keeps moving past what the sender published.
                r.bad_cursor = n
                r.bad_write = w
                return -1
            continue
        if w == n:
            if r.rplaces != NULL and r.read == r.write_cache:
                now = monotonic_ns()
                if now - r.detect_ns >= DETECT_EVERY_NS:
                    r.detect_ns = now
                    if ring_group_detect(r):
                        return <int64_t>(r.write_cache - r.read)
            return 0
        if r.many:
            # The claim cursor counts slots claimed, not all published: the run of
            # published messages from n (R1), or what stops it at n.
            at = _group_run(r, n, &w)
        free_lock = 0
        if cw_cas_acq_rel_u64(&g.lock, &free_lock, mine):        # C3
            if not r.many:
                break
            if cw_load_relaxed_u64(&g.next) != n:
                cw_store_release_u64(&g.lock, 0)                 # another member moved on first
                continue
            if at == RUN:
                break
            if at == HOLE and not _group_hole_dead(r, n):
                cw_store_release_u64(&g.lock, 0)
                r.hole = True
                return 0
            # A void slot, or a hole whose claimer died: nobody will ever take it.
            # Hand it out to nobody (C6 without a claim), and look on.
            if at == VOID:
                r.voided += 1
            else:
                r.skipped += 1
            cw_store_release_u64(&g.next, n + 1)
            cw_store_release_u64(&g.lock, 0)
            spins = 0
            continue
        # Another member is claiming: a few instructions, unless it was preempted or died.
        lock = free_lock
        if lock == 0:
            continue
        if lock > r.max_receivers or lock == mine:
            # No member place has that number, or it names this member, which is not claiming.
            r.bad_cursor = lock
            r.bad_write = w
            return -1
        spins += 1
        if spins < CLAIM_LOCK_SPINS:
            cw_cpu_relax()
            continue
        if cw_ofd_is_locked(r.fd, cw_place_offset(r.max_senders + lock - 1)) == 0:
            _adopt(r, <uint32_t>(lock - 1))
            if r.read != r.write_cache:
                return <int64_t>(r.write_cache - r.read)
            spins = 0
            continue
        # Alive, and long in its claim (preempted): wait in short slices rather than spin.
        r.hole = True
        return 0
    n = cw_load_relaxed_u64(&g.next)                             # C4
    if w - n > r.capacity or n > w:
        cw_store_release_u64(&g.lock, 0)
        if n > w:
            return 0
        r.bad_cursor = n
        r.bad_write = w
        return -1
    k = w - n
    if cw_load_relaxed_u64(&g.members) > 1:
        # Others share the group: what the call takes, and at most a quarter of the ring,
        # so that the sender and the other members go on while this member copies.
        if k > r.want:
            k = r.want
        if k > r.capacity // 4 and r.capacity >= 4:
            k = r.capacity // 4
    if k == 0:
        cw_store_release_u64(&g.lock, 0)
        return 0
    cw_store_relaxed_u64(&r.place.hold_end, n + k)               # C5
    cw_store_release_u64(&r.place.hold_start, n + 1)
    cw_store_release_u64(&g.next, n + k)                         # C6
    cw_store_release_u64(&g.lock, 0)                             # C7
    r.read = n
    r.read_index = n % r.capacity
    r.write_cache = n + k
    return <int64_t>k


cdef enum:
    RUN = 0      # published messages from n
    VOID = 1     # n is published without a message
    HOLE = 2     # n is claimed and not published


cdef int _group_run(ring_t *r, uint64_t n, uint64_t *w) noexcept nogil:
    """Many senders and groups, R1 from the group's claim cursor n: w[0] becomes the end of
    the published messages in a row from n (at most the claim cursor w[0]); returns RUN when
    there is at least one, else VOID or HOLE for what is at n."""
    cdef uint64_t seq = n, end = w[0]
    cdef uint64_t index = n % r.capacity
    cdef char *slot
    while seq != end:
        slot = _slot(r, index)
        # Acquire pairs with the sender's release of seq (S5).
        if cw_load_acquire_u64(&(<cw_many_slot_header *>slot).seq) != seq + 1:
            break
        if cw_load_relaxed_u32(&(<cw_many_slot_header *>slot).length) == CW_VOID_LENGTH:
            if seq == n:
                w[0] = n + 1
                return VOID
            break
        seq += 1
        index += 1
        if index == r.capacity:
            index = 0
    w[0] = seq
    return RUN if seq != n else HOLE


cdef int _group_hole_dead(ring_t *r, uint64_t n) noexcept nogil:
    """R4-R5 for a group at a hole n (under its claim lock): 1 if no live sender can ever
    publish n (its claimer died), 0 while one may (or when n was published meanwhile: look
    again).  Only when asked (r.resolve_now: after a spin, at once in try_recv); else 0."""
    cdef uint32_t p
    cdef cw_place *place
    if not r.resolve_now:
        return 0
    for p in range(r.max_senders):
        place = <cw_place *>(r.places + p * CW_PLACE_SIZE)
        if cw_load_acquire_u64(&place.intent) == n + 1:
            if cw_ofd_is_locked(r.fd, cw_place_offset(p)) != 0:
                return 0
    # Published during the scan?  Then it is no hole: the caller looks again.
    if cw_load_acquire_u64(&(<cw_many_slot_header *>_slot(r, n % r.capacity)).seq) == n + 1:
        return 0
    return 1


cdef int group_remove(cw_header *hdr, int fd, uint32_t max_senders, uint32_t max_receivers,
                      uint32_t gi, uint64_t tag, int own_place, int64_t *live_pid) noexcept nogil:
    """Step R, under the groups lock: remove group gi, whose members are all gone (own_place,
    the caller's own place of that group, or -1, is not tested).  tag is the group's tag as
    the caller found it (epoch << 32 | gi + 1).  0 on success; 1 if a live member holds a
    place of it (its pid in live_pid[0]); 2 if the entry no longer carries that tag (the
    group was removed since the caller found it, and the entry perhaps reused by another
    group, which this call must not touch)."""
    cdef char *rplaces = (<char *>hdr) + cw_place_offset(max_senders)
    cdef char *gtable = (<char *>hdr) + cw_group_offset(max_senders, max_receivers, 0)
    cdef cw_group *e = _gentry(gtable, gi)
    cdef uint64_t pos = group_position(rplaces, max_receivers, e, tag)
    cdef uint32_t q, g
    cdef cw_place *p
    cdef bint others = False
    cdef uint64_t off
    if not (cw_load_acquire_u32(&e.flags) & CW_GROUP_IN_USE) or \
            ((cw_load_relaxed_u64(&e.epoch) << 32) | (gi + 1)) != tag:
        return 2
    # R1: a member of it alive holds its place's lock.  Members join only under the groups
    # lock, which the caller holds, so once every place of the group was found free, none
    # of them is taken by a member of it until the group is gone.
    for q in range(max_receivers):
        p = _rplace(rplaces, q)
        if <int>q == own_place or cw_load_relaxed_u64(&p.group) != tag:
            continue
        if cw_ofd_is_locked(fd, cw_place_offset(max_senders + q)) != 0:
            live_pid[0] = cw_load_relaxed_u64(<uint64_t *>&p.pid)
            return 1
    for g in range(max_receivers):
        if g != gi and cw_load_acquire_u32(&_gentry(gtable, g).flags) & CW_GROUP_IN_USE:
            others = True
    if not others:
        # R2: the last group: later groups start where it had got to.
        cw_store_release_u64(&hdr.read_cursor, pos)
    for q in range(max_receivers):
        p = _rplace(rplaces, q)
        if <int>q == own_place or cw_load_relaxed_u64(&p.group) != tag:
            continue
        # Clear the claims its members left, each under its place's lock.
        off = cw_place_offset(max_senders + q)
        if cw_ofd_trylock(fd, off) != 0:
            continue
        cw_store_release_u64(&p.hold_start, 0)
        cw_store_release_u64(&p.group, 0)
        cw_ofd_unlock(fd, off)
    if own_place >= 0:
        p = _rplace(rplaces, <uint32_t>own_place)
        cw_store_release_u64(&p.hold_start, 0)
        cw_store_release_u64(&p.group, 0)
    cw_store_release_u64(&e.lock, 0)
    cw_store_relaxed_u64(&e.members, 0)
    cw_store_release_u32(&e.flags, 0)                            # R3
    cw_fence_seq_cst()
    if cw_load_relaxed_u32(&hdr.sender_waiting) and cw_exchange_u32(&hdr.sender_waiting, 0):
        cw_futex_wake(&hdr.sender_waiting, 1 << 30)
    return 0


cdef int ring_groups_release_dead(ring_t *r) noexcept nogil:
    """A sender on a full ring: remove each non-durable group that holds it back and has no
    live member (step R).  1 if one was removed."""
    cdef uint32_t g, q
    cdef cw_group *e
    cdef cw_place *p
    cdef uint64_t tag
    cdef bint alive
    cdef int removed = 0
    cdef int64_t pid
    for g in range(r.max_receivers):
        e = _gentry(r.gtable, g)
        if (cw_load_acquire_u32(&e.flags) & (CW_GROUP_IN_USE | CW_GROUP_DURABLE)) != CW_GROUP_IN_USE:
            continue
        tag = (cw_load_relaxed_u64(&e.epoch) << 32) | (g + 1)
        if group_position(r.rplaces, r.max_receivers, e, tag) != r.read_cache:
            continue
        alive = False
        for q in range(r.max_receivers):
            p = _rplace(r.rplaces, q)
            if cw_load_relaxed_u64(&p.group) == tag and cw_ofd_is_locked(r.fd, cw_place_offset(r.max_senders + q)) != 0:
                alive = True
                break
        if alive:
            continue
        if cw_ofd_trylock(r.fd, CW_GROUPS_LOCK_BYTE) != 0:
            continue        # a join, close or removal is under way: look again later
        if (cw_load_acquire_u32(&e.flags) & (CW_GROUP_IN_USE | CW_GROUP_DURABLE)) == CW_GROUP_IN_USE and \
                (cw_load_relaxed_u64(&e.epoch) << 32 | (g + 1)) == tag:
            if group_remove(r.hdr, r.fd, r.max_senders, r.max_receivers, g, tag, -1, &pid) == 0:
                removed = 1
        cw_ofd_unlock(r.fd, CW_GROUPS_LOCK_BYTE)
    return removed


cdef int ring_groups_release_dead_now(ring_t *r) noexcept nogil:
    """ring_groups_release_dead() for a sender call that found the ring full (blocking or
    not), at most once every DETECT_EVERY_NS per sender: the look tests place locks."""
    cdef int64_t now = monotonic_ns()
    if now - r.detect_ns < DETECT_EVERY_NS:
        return 0
    r.detect_ns = now
    return ring_groups_release_dead(r)


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
        # Several ends may share the word (many senders, groups): clearing it
        # costs the others one spurious look, never a lost wake-up.
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

    def sleep_after_another_announces(self, bint sending, double timeout):
        """Two ends that share the waiting word (as many senders, or group members, do): one
        announces its sleep and found nothing; the other end's progress clears the word and
        wakes nobody yet; a second sharer announces its own sleep; only then does the first
        reach its futex wait.  Returns how that wait ended: "woken" (the word had changed) or
        "timed out" (it slept through the wake-up)."""
        cdef ring_t *r = &self.tx if sending else &self.rx
        cdef uint32_t *word = &r.hdr.sender_waiting if sending else &r.hdr.receiver_waiting
        cdef uint32_t first, second
        cdef timespec ts
        cdef int rc
        cw_store_relaxed_u32(word, 0)
        ring_announce_sleep(word, True, &first)
        if cw_load_relaxed_u32(word) and cw_exchange_u32(word, 0):
            cw_futex_wake(word, 1 << 30)
        ring_announce_sleep(word, True, &second)
        ts.tv_sec = <long>timeout
        ts.tv_nsec = <long>((timeout - ts.tv_sec) * 1e9)
        rc = cw_futex_wait(word, first, &ts)
        cw_store_relaxed_u32(word, 0)
        return "timed out" if rc == ETIMEDOUT else "woken"

    def corrupt_cursors(self, uint64_t write, uint64_t read):
        self.hdr.write_cursor = write
        self.hdr.read_cursor = read


def layout():
    """Offsets and sizes of the shared layout as the compiler laid it out (for tests and docs)."""
    cdef cw_header h
    cdef cw_place p
    cdef cw_many_slot_header ms
    cdef cw_group gr
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
        "groups_gen": <char *>&h.groups_gen - base,
        "place_group": <char *>&p.group - <char *>&p,
        "place_hold_start": <char *>&p.hold_start - <char *>&p,
        "place_hold_end": <char *>&p.hold_end - <char *>&p,
        "group_next": <char *>&gr.next - <char *>&gr,
        "group_lock": <char *>&gr.lock - <char *>&gr,
        "group_epoch": <char *>&gr.epoch - <char *>&gr,
        "group_members": <char *>&gr.members - <char *>&gr,
        "group_flags": <char *>&gr.flags - <char *>&gr,
        "group_name_len": <char *>&gr.name_len - <char *>&gr,
        "group_name": <char *>&gr.name[0] - <char *>&gr,
        "sizeof_group": sizeof(cw_group),
        "groups_lock_byte": CW_GROUPS_LOCK_BYTE,
    }
