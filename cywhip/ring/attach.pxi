# Included by cywhip/_ring.pyx.
# Attaching an end to a ring, and what any thread may ask of it: depth, taken.

cdef int ring_attach(ring_t *r, cw_header *hdr, uint64_t slots_offset, uint64_t capacity,
                     uint64_t message_length, int64_t spin_ns, uint32_t max_senders,
                     int fd, int sender_place, uint32_t max_receivers=1, bint bytes=False) noexcept nogil:
    """Point r at a header whose geometry was validated; load both cursors. -1 if they are impossible.

    slots_offset, capacity, message_length and max_senders are the values
    this end opened with and checked against the header: the geometry is
    never read from shared memory again, where another process could have
    changed it since.  fd is the channel file (a receiver tests sender places'
    locks on it); sender_place is a sender's place among the sender places
    (many senders: its intent word is this sender's), else -1.  bytes: a byte
    channel, whose capacity is its ring's bytes and whose cursors count bytes.
    """
    cdef uint64_t *intent = NULL
    cdef uint64_t gen, w_word, to, rd_2, slack = 0
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
    r.bytes = bytes
    r.want_bytes = 0
    r.pad = 0
    r.rec = 0
    r.align_mask = CW_VAR_ALIGN_MASK if bytes else 0
    if bytes:
        # The cursor's unit is a byte and each payload follows its record header (16 bytes
        # with many senders: seq).
        r.slot_header = cw_var_header_size(max_senders)
        r.slot_size = 1
    else:
        r.slot_header = cw_slot_header_size(max_senders)
        r.slot_size = cw_fixed_slot_size(message_length, max_senders)
    r.spin_ns = spin_ns
    r.light = light_publish()
    r.many = max_senders > 1
    r.max_senders = max_senders
    r.places = (<char *>hdr) + CW_HEADER_SIZE
    if sender_place >= 0 and max_senders > 1:
        intent = &(<cw_place *>((<char *>hdr) + cw_place_offset(<uint64_t>sender_place))).intent
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
    # Waiting on a file descriptor: the names this end wakes (ring_wake_fds()); its own
    # descriptor is made by ring_fd_open() when asked for.
    r.wake_prefix_len = ring_wake_prefix(hdr, fd, r.wake_prefix)
    r.own_place = sender_place if sender_place >= 0 else 0
    r.bad_cursor = 0
    r.bad_write = 0
    r.bad_length = 0
    r.splace = NULL
    r.owner = 0
    r.holding = False
    r.claim_at = 0
    r.claim_end = 0
    r.bit_busy = False
    r.busy_word = 0
    # R5 is the one receiver's: the members of receiver groups never zero (G2 instead).
    r.zeroing = bytes and r.many and sender_place < 0 and max_receivers <= 1
    r.release_to = NULL
    if r.zeroing:
        r.release_to = &(<cw_place *>((<char *>hdr) + cw_place_offset(max_senders))).intent
    r.corrupt_why = 0
    r.hole_bad = False
    if bytes and r.many:
        # The claim word: its position from the read cursor (at most a ring behind it).
        if rd & CW_VAR_ALIGN_MASK:
            r.bad_cursor = rd
            r.bad_write = w
            return -1
        w_word = w
        w = cw_claim_position(w, rd)
        if intent != NULL:
            # S0's first step: one more generation on this place, the owner this sender is in
            # the claim word; ring_bytes_adopt() does the rest before the first claim.
            r.splace = <cw_place *>((<char *>hdr) + cw_place_offset(<uint64_t>sender_place))
            gen = cw_load_relaxed_u64(&r.splace.generation) + 1
            if cw_claim_owner_of(<uint64_t>sender_place, gen) == cw_claim_owner(w_word):
                # The word names a dead predecessor of this place whose generation is this one
                # modulo 2^11 (it died holding the bit, and 2,047 senders came and went here
                # since): one more, or this sender would be that owner again.
                gen += 1
            cw_store_release_u64(&r.splace.generation, gen)
            r.owner = cw_claim_owner_of(<uint64_t>sender_place, gen)
            # The other senders claim meanwhile, and the receiver takes: the claim cursor is
            # at most a ring past read_cursor as loaded again after the word (as ring_depth).
            rd_2 = cw_load_acquire_u64(&hdr.read_cursor)
            if rd_2 >= rd:
                slack = rd_2 - rd
    elif intent != NULL:
        # S0: this place's lock is ours now; a claim a dead sender left in it is void.
        cw_store_release_u64(intent, 0)
    r.write = w
    r.write_index = w % capacity
    r.read_cache = rd
    r.read = rd
    r.read_index = rd % capacity
    r.write_cache = rd
    r.released = rd
    # A new end on its place: the end that held it before may have died between a publish (a
    # release) and its wake-up, which nobody else owes the other side's waiters: wake them all,
    # whatever the word says (docs/protocol.md, "Waiting on a file descriptor").
    _attach_wake(r, sender_place >= 0, max_receivers)
    if max_receivers > 1:
        # Groups: read_cursor is only where a first group starts; a sender
        # learns how far the groups are on its first look for room, which the
        # cache forces (ring_attach_groups() sets a member's cursors).  A byte
        # channel's write cursor is a record's start: a sender must not write
        # records from anywhere else.
        if bytes and w % CW_SLOT_ALIGN != 0:
            r.bad_cursor = w
            r.bad_write = w
            return -1
        r.read_cache = w - capacity
        return 0
    if w - rd > capacity + slack or (bytes and (w | rd) % CW_SLOT_ALIGN != 0):
        r.bad_cursor = w
        r.bad_write = w
        return -1
    if r.zeroing:
        # R5 of a receiver that died between recording its release and storing read_cursor
        # (its zeroing begun or done): the bytes up to it may have no header left to read or
        # step over, so the release is finished here.  Those messages were taken (read) by
        # the dead receiver.  A target at or behind read_cursor is an old, finished release.
        to = cw_load_acquire_u64(r.release_to)
        if to != 0 and 0 < to - 1 - rd <= capacity:
            to -= 1
            if to % CW_SLOT_ALIGN != 0 or to - rd > w - rd:
                r.bad_cursor = to
                r.bad_write = w
                r.corrupt_why = CORRUPT_RELEASE
                return -1
            r.read = to
            r.read_index = to % capacity
            r.write_cache = to
            ring_release(r)
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
        if r.bytes and r.many:
            # The claim word, decoded from a position loaded before it.
            read_1 = ring_bytes_claim_ref(r)
            write = cw_claim_position(cw_load_acquire_u64(&r.hdr.write_cursor), read_1)
        else:
            write = cw_load_acquire_u64(&r.hdr.write_cursor)
        if r.group != NULL:
            m = group_position(r.rplaces, r.max_receivers, r.group, r.group_tag)
        else:
            m = groups_min(r.hdr, r.rplaces, r.gtable, r.max_receivers, &any)
            if not any:
                m = cw_load_acquire_u64(&r.hdr.read_cursor)
        # A byte channel's positions are records' starts (align_mask 7; 0 on a slot channel).
        if (m | write) & r.align_mask or (write > m and write - m > r.capacity):
            r.bad_cursor = m
            r.bad_write = write
            return -1
        if write <= m:
            return 0
        return <int64_t>(write - m)
    read_1 = cw_load_acquire_u64(&r.hdr.read_cursor)
    write = cw_load_acquire_u64(&r.hdr.write_cursor)
    if r.bytes and r.many:
        # The claim word: the claim cursor is at least read_1.
        write = cw_claim_position(write, read_1 & ~(<uint64_t>CW_VAR_ALIGN_MASK))
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


cdef void _attach_wake(ring_t *r, bint sending, uint32_t max_receivers) noexcept nogil:
    """Wake the other side's waiters, in the kernel and on descriptors (ring_attach())."""
    cdef uint32_t *word = &r.hdr.receiver_waiting if sending else &r.hdr.sender_waiting
    cw_exchange_u32(word, 0)
    cw_futex_wake(word, 1 << 30)
    if r.wake_prefix_len == 0:
        return
    if sending:
        _wake_places(r.hdr, r.wake_prefix, r.wake_prefix_len, r.max_senders, max_receivers, 114,
                     max_receivers > 1)
    else:
        _wake_places(r.hdr, r.wake_prefix, r.wake_prefix_len, 0, r.max_senders, 115, r.many)
