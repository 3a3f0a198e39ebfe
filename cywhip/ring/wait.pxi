# Included by cywhip/_ring.pyx.
# Waiting and waking: membarrier, waiting words and tokens, sleep slices, ring_wait().

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
                        &(<cw_many_slot_header *>ring_slot(r, n % r.capacity)).seq) != n + 1:
                    reason = SLICE_HOLE
        elif r.many:
            c = cw_load_acquire_u64(&r.hdr.write_cursor)
            if c != r.read and c - r.read <= r.capacity and cw_load_acquire_u64(
                    &(<cw_many_slot_header *>ring_slot(r, r.read_index)).seq) != r.read + 1:
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
