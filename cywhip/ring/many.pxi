# Included by cywhip/_ring.pyx.
# Many senders, the receiving half: the scan of published slots, holes and void slots.

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
        slot = ring_slot(r, index)
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
        if got < 0:
            # Found impossible (a byte ring's hole, R3-R4): the next claim says so (r.hole_bad),
            # whoever called this.
            r.hole_bad = True
            return 1
        if got == 0 and not r.hole and r.read == r.write_cache:
            got = ring_group_detect(r)
        return got != 0
    if r.bytes:
        return ring_bytes_many_resolve(r)
    for p in range(r.max_senders):
        place = <cw_place *>(r.places + p * CW_PLACE_SIZE)
        # Acquire pairs with S6's release: an intent seen cleared brings the publish (S5).
        if cw_load_acquire_u64(&place.intent) == target:
            # Held (1), or the test failed (< 0): presume a live claimer.
            if cw_ofd_is_locked(r.fd, cw_place_offset(p)) != 0:
                return 0
    # R5: no live place claims it.  Published during the scan?
    if cw_load_acquire_u64(&(<cw_many_slot_header *>ring_slot(r, r.read_index)).seq) == target:
        r.hole = False
        return 1
    # Its claimer died before publishing: step over it, and hand the slot back.
    _step_over(r)
    r.skipped += 1
    r.hole = False
    ring_release(r)
    return 1


cdef int64_t ring_available_now(ring_t *r) noexcept nogil:
    """ring_available(), resolving a hole at once (the non-waiting receive calls); finding
    nothing, an end waiting on a descriptor (fileno()) arms it (ring_fd_arm())."""
    cdef int64_t n = ring_available(r)
    # r.hole of a group member means another member holds a claim: nothing to resolve.
    while n == 0 and r.many and r.hole and ring_resolve_hole(r):
        n = ring_available(r)
    if n == 0 and r.fd_wait:
        n = ring_fd_arm(r, False, True)
    return n
