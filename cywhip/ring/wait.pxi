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
    """A waiting token: never 0 (no sleeper), below CW_WAIT_FD (bit 31 says that an end
    waits on a descriptor); two tokens are equal by chance only (2**-31: the hash, a bijection
    of 32-bit words, loses its top bit)."""
    cdef uint32_t t = 0
    while t == 0:
        # The top bit is CW_WAIT_FD's (an end waiting on a descriptor announced here).
        t = _mix32(<uint32_t>cw_fetch_add_relaxed_u64(&_tokens, 1) * 0x9E3779B1U
                   + _mix32(<uint32_t>getpid())) & CW_WAIT_FUTEX
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
    return ring_announce(word, shared, 0, expect)


cdef bint ring_announce(uint32_t *word, bint shared, uint32_t fd_bit, uint32_t *expect) noexcept nogil:
    """ring_announce_sleep(), for an end that sleeps in the kernel (fd_bit 0) or waits on a file
    descriptor (fd_bit CW_WAIT_FD): then whoever clears the word also sends the wake bytes
    (ring_wake_fds()).  Alone on its word, such an end stores CW_WAIT_FD only (no FUTEX_WAKE
    is owed to it); on a shared word it joins the value there with the bit added (a sleeper
    in the kernel expecting the value without it is still woken by the clearing end, whose
    FUTEX_WAKE the token's low bits ask for), or stores a new token with the bit."""
    cdef uint32_t v, mine
    if shared:
        v = cw_load_relaxed_u32(word)
        while True:
            mine = (v if v != 0 else ring_new_token()) | fd_bit
            if cw_cas_u32(word, &v, mine):
                break
        expect[0] = mine
    else:
        mine = fd_bit if fd_bit else 1
        cw_store_relaxed_u32(word, mine)
        expect[0] = mine
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
    fenced) and then found nothing to do may sleep before it must look again, in ns (always
    >= 0).  why (unless NULL) says which SLICE_* reason chose it.

    Every other end's progress wakes a sleeper (a publish, a take, a group made or removed,
    close()); what wakes nobody is a death, and a refused barrier.  So the sleep is in short
    slices while this end waits for something whose death it must see for itself:

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

    Otherwise (SLICE_IDLE) it sleeps at most IDLE_SLICE_NS: the other end may die between a
    publish (a take) and its wake-up, and nobody else owes this end that wake-up.

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
    if r.bytes and r.many and ((not sending and r.hole and not r.groups) or (sending and r.bit_busy)):
        # A byte ring of many senders: a receiver at a hole (its claimer's death wakes nobody;
        # the scan that followed the announcement set r.hole), a sender at a claim bit a live
        # sender holds (its commit, M3, wakes nobody).
        ns = HOLE_SLICE_NS
        reason = SLICE_HOLE
    elif not sending:
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
            if reason == SLICE_NONE and r.many and r.bytes:
                # A byte ring: the claim (G4) that found a hole at the group's position set
                # r.hole (another member's claim lock or claim would have been seen above).
                if r.hole:
                    reason = SLICE_HOLE
            elif reason == SLICE_NONE and r.many:
                n = cw_load_acquire_u64(&r.group.next)
                c = cw_load_acquire_u64(&r.hdr.write_cursor)
                if c != n and c - n <= r.capacity and cw_load_acquire_u64(
                        &(<cw_many_slot_header *>ring_slot(r, n % r.capacity)).seq) != n + 1:
                    reason = SLICE_HOLE
        elif r.many and not r.bytes:
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
    if ns < 0:
        ns = IDLE_SLICE_NS
        reason = SLICE_IDLE
    if not fenced and ns > UNFENCED_SLICE_NS:
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
            if sending and r.bit_busy and ring_bytes_owner_gone(r):
                continue
            return _timed_out(r, sending)
        if now >= spin_end:
            if not sending and r.many and r.hole and ring_resolve_hole(r):
                continue
            if sending and r.bit_busy and ring_bytes_owner_gone(r):
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
            return _timed_out(r, sending)
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


cdef int _timed_out(ring_t *r, bint sending) noexcept nogil:
    """A wait's deadline passed: WAIT_TIMEOUT; but an end waiting on a descriptor (fileno())
    arms it first, and goes on if the look that follows finds what it waits for."""
    cdef int64_t n
    if r.fd_wait:
        n = ring_fd_arm(r, sending, True)
        if n != 0:
            return WAIT_READY if n > 0 else WAIT_CORRUPT
    return WAIT_TIMEOUT


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



# ------------------------------------------------------ waiting on a file descriptor
# docs/protocol.md, "Waiting on a file descriptor".  An end that waits on a descriptor
# announces on its waiting word with CW_WAIT_FD; the end that clears the word (a publish, a
# release, a group made or removed) sends one byte to the socket of every such end of the
# kind it wakes, named after the channel file, the place and the place's starts.


cdef inline cw_place *_place_at(cw_header *hdr, uint32_t index) noexcept nogil:
    """Place index, counting the sender places first."""
    return <cw_place *>((<char *>hdr) + cw_place_offset(index))


cdef int ring_wake_prefix(cw_header *hdr, int fd, char *buf) noexcept nogil:
    """The wake names' prefix of the channel file fd (its inode, device and creation time):
    its length, 0 if it cannot be made.  created_ns is read once, for a name only: ends that
    read another value there simply do not meet, as a corrupt channel's ends do not."""
    cdef struct_stat st
    if fstat(fd, &st) != 0:
        return 0
    return cw_fdwake_prefix(buf, <uint64_t>st.st_dev, <uint64_t>st.st_ino,
                            cw_load_relaxed_u64(&hdr.created_ns))


cdef void _wake_places(cw_header *hdr, const char *prefix, int plen, uint32_t first,
                       uint32_t count, char kind, bint scan) noexcept nogil:
    """One wake byte to the socket of each place first .. first + count - 1 (all of them held,
    with scan: those whose pid is not 0).  Each place's starts is read once, for the name
    only: a wrong one names a socket nobody binds (or one that looks again for nothing)."""
    cdef sockaddr_un a
    cdef socklen_t n
    cdef uint32_t i
    cdef cw_place *p
    for i in range(count):
        p = _place_at(hdr, first + i)
        if scan and cw_load_relaxed_i64(&p.pid) == 0:
            continue
        n = cw_fdwake_addr(&a, prefix, plen, kind, i, cw_load_relaxed_u64(&p.starts))
        cw_fdwake_send(&a, n)


cdef void ring_wake_now(ring_t *r, uint32_t *word, int count, bint senders) noexcept nogil:
    """ring_wake_word()'s wake, once its look found someone waiting: clear the word; FUTEX_WAKE
    count sleepers for a sleeper's value, wake bytes to the descriptors for CW_WAIT_FD."""
    cdef uint32_t old = cw_exchange_u32(word, 0)
    if old & CW_WAIT_FUTEX:
        cw_futex_wake(word, count)
    if old & CW_WAIT_FD:
        ring_wake_fds(r, senders)


cdef void ring_wake_fds(ring_t *r, bint senders) noexcept nogil:
    """The word this end cleared said that an end waits on a descriptor: wake the senders'
    (senders) or the receivers' descriptors.  Out of line: only a waker that found the bit
    pays for it."""
    if r.wake_prefix_len == 0:
        return
    if senders:
        _wake_places(r.hdr, r.wake_prefix, r.wake_prefix_len, 0, r.max_senders, 115, r.many)
    else:
        _wake_places(r.hdr, r.wake_prefix, r.wake_prefix_len, r.max_senders,
                     r.max_receivers if r.groups else 1, 114, r.groups)


cdef void ring_wake_senders_of(cw_header *hdr, int fd, uint32_t max_senders) noexcept nogil:
    """Wake every sleeping sender of a channel, in the kernel or on a descriptor (a group
    made or removed changed the bound they wait for): for callers without a ring."""
    cdef uint32_t old
    cdef char prefix[CW_WAKE_PREFIX_MAX]
    cdef int plen
    cw_fence_seq_cst()
    if cw_load_relaxed_u32(&hdr.sender_waiting):
        old = cw_exchange_u32(&hdr.sender_waiting, 0)
        if old & CW_WAIT_FUTEX:
            cw_futex_wake(&hdr.sender_waiting, 1 << 30)
        if old & CW_WAIT_FD:
            plen = ring_wake_prefix(hdr, fd, prefix)
            if plen:
                _wake_places(hdr, prefix, plen, 0, max_senders, 115, max_senders > 1)


cdef int _fd_bind_own(ring_t *r, bint sending) noexcept nogil:
    """A socket bound under this end's wake name (its place as it holds it now): the
    descriptor, or -errno."""
    cdef sockaddr_un a
    cdef socklen_t n
    cdef uint32_t index
    cdef cw_place *p
    if r.wake_prefix_len == 0 or r.hdr == NULL:
        return -EINVAL
    if sending:
        index = <uint32_t>r.own_place
        p = _place_at(r.hdr, index)
    else:
        index = r.place_index
        p = _place_at(r.hdr, r.max_senders + index)
    n = cw_fdwake_addr(&a, r.wake_prefix, r.wake_prefix_len, 115 if sending else 114, index,
                       cw_load_relaxed_u64(&p.starts))
    return cw_fdwake_bind(&a, n)


cdef int ring_fd_open(ring_t *r, bint sending) noexcept nogil:
    """Make this end's wake descriptor, once: 0, or -errno (EADDRINUSE: another socket holds
    its name)."""
    cdef int s, ep
    if r.fd_open:
        return 0
    s = _fd_bind_own(r, sending)
    if s < 0:
        return s
    ep = cw_fdwake_epoll(s)
    if ep < 0:
        close(s)
        return ep
    r.wake_sock = s
    r.wake_ep = ep
    r.wake_timer = -1
    r.fd_armed = False
    r.fd_sliced = False
    r.fd_open = True
    return 0


cdef int ring_fd_rebind(ring_t *r) noexcept nogil:
    """A member moved into another place (A): its descriptor answers to that place's name from
    now on, and reads as readable once (look again).  0, or -errno (it keeps the old name, and
    is readable: its holder looks again, and is woken in slices from then on)."""
    cdef int s
    if not r.fd_open:
        return 0
    s = _fd_bind_own(r, False)
    if s < 0 or cw_fdwake_swap(r.wake_ep, r.wake_sock, s) != 0:
        if s >= 0:
            close(s)
        ring_fd_poke(r)
        return -1
    close(r.wake_sock)
    r.wake_sock = s
    r.fd_armed = False
    ring_fd_poke(r)
    return 0


cdef int64_t ring_fd_arm(ring_t *r, bint sending, bint drain) noexcept nogil:
    """The look of a non-blocking call found nothing: arm this end's descriptor, so that it
    becomes readable once there may be something to do.  As ring_wait(): announce (with
    CW_WAIT_FD), barrier, look again; then see that the timer fires by the end of the slice
    (ring_wait_slice_ns()).  Returns what the look found (free slots, messages: go on), 0 when
    armed, -1 if the cursors are impossible.  drain: first read the wake bytes and the timer's
    expiry if it is due (a caller that reads them itself, the asyncio face, passes False).

    The timer is lazy: a timer still pending from an earlier arming that fires by the end of
    this slice is kept (it costs a look at most), so an end woken more than once a second by
    the other end's progress sets it about once a second, and reading the descriptor empty
    (ring_fd_drain()) touches it only once it is due.

    Armed already (the word still holds what this end announced, and the timer has not fired):
    no waker has cleared it since, so no publish came after that arming's look, and its slice
    is not over; it only drains (a byte of a wake-up from before that arming may have come
    since: left there, the descriptor would stay readable with nothing to do)."""
    cdef bint shared, fenced
    cdef uint32_t *word
    cdef uint32_t expect
    cdef int64_t n, ns, now
    if not r.fd_open or r.hdr == NULL:
        return 0
    word = ring_waiting_word(r, sending, &shared)
    if drain:
        _fd_drain(r)
    if (r.fd_armed and r.fd_sliced and cw_load_relaxed_u32(word) == r.fd_expect
            and monotonic_ns() < r.fd_deadline):
        return 0
    r.fd_armed = False
    fenced = ring_announce(word, shared, CW_WAIT_FD, &expect)
    n = _ready(r, sending)
    if n != 0:
        if not shared:
            cw_store_relaxed_u32(word, 0)
        return n if n > 0 else -1
    ns = ring_wait_slice_ns(r, sending, fenced, &r.fd_why)
    now = monotonic_ns()
    if not r.fd_sliced or r.fd_deadline <= now or r.fd_deadline > now + ns:
        r.fd_deadline = now + ns
        r.fd_sliced = True
        if cw_fdwake_timer_set(r.wake_ep, &r.wake_timer, ns) != 0:
            # No timer: readable now, so that the holder looks again (and arms again).
            r.fd_sliced = False
            ring_fd_poke(r)
    r.fd_expect = expect
    r.fd_armed = True
    return 0


cdef void ring_fd_disarm(ring_t *r, bint sending) noexcept nogil:
    """Stop waiting on the descriptor (a wait timed out or was cancelled): clear the word
    if this end alone announced there and it still holds that, and stop the timer."""
    cdef bint shared
    cdef uint32_t *word
    cdef uint32_t v
    if not r.fd_open:
        return
    if r.fd_armed and r.hdr != NULL:
        word = ring_waiting_word(r, sending, &shared)
        v = r.fd_expect
        if not shared:
            cw_cas_u32(word, &v, 0)
    r.fd_armed = False
    if r.fd_sliced:
        cw_fdwake_timer_clear(r.wake_timer)
        r.fd_sliced = False


cdef inline void _fd_drain(ring_t *r) noexcept nogil:
    """Read the wake bytes, and the timer's expiry once it is due (a timer not yet due is left
    to run: ring_fd_arm())."""
    cw_fdwake_drain(r.wake_sock)
    if r.fd_sliced and monotonic_ns() >= r.fd_deadline:
        cw_fdwake_timer_clear(r.wake_timer)
        r.fd_sliced = False


cdef void ring_fd_drain(ring_t *r) noexcept nogil:
    """Read the wake bytes and the timer's expiry: the descriptor is no longer readable, and
    its arming is spent (the holder looks again, and arms again if it finds nothing)."""
    if not r.fd_open:
        return
    r.fd_armed = False
    _fd_drain(r)


cdef void ring_fd_poke(ring_t *r) noexcept nogil:
    """Make this end's descriptor readable: a byte to its own socket."""
    cdef sockaddr_un a
    cdef socklen_t n = sizeof(a)
    if not r.fd_open:
        return
    if getsockname(r.wake_sock, <sockaddr *>&a, &n) == 0:
        cw_fdwake_send(&a, n)


cdef void ring_fd_close(ring_t *r) noexcept nogil:
    """Close this end's wake descriptors (its name goes with its socket)."""
    if not r.fd_open:
        return
    r.fd_open = False
    r.fd_wait = False
    r.fd_armed = False
    close(r.wake_ep)
    close(r.wake_sock)
    if r.wake_timer >= 0:
        close(r.wake_timer)
    r.wake_ep = -1
    r.wake_sock = -1
    r.wake_timer = -1
