# Included by cywhip/_ring.pyx.
# Receiver groups: claim (C), detect (D), adopt, remove (R), the floor and the senders' bound.

cdef inline cw_place *_rplace(char *rplaces, uint32_t q) noexcept nogil:
    return <cw_place *>(rplaces + q * CW_PLACE_SIZE)


cdef inline cw_group *_gentry(char *gtable, uint32_t g) noexcept nogil:
    return <cw_group *>(gtable + g * sizeof(cw_group))


cdef int ring_attach_groups(ring_t *r, uint32_t max_receivers, bint member, uint32_t group_index,
                            uint64_t group_tag, uint32_t place_index) noexcept nogil:
    """After ring_attach(): the channel has receiver groups.  A member (a sender passes
    member false) passes its group's entry, the tag it joined with (its place carries it) and
    its place among the receiver places: it goes on with the claim found in its place (one
    it took over from a dead member), or claims anew.  -1 if the claim found is impossible."""
    cdef cw_group *group = NULL
    cdef cw_place *place = NULL
    cdef uint64_t h, e, n
    r.groups = True
    r.max_receivers = max_receivers
    r.rplaces = (<char *>r.hdr) + cw_place_offset(r.max_senders)
    r.gtable = (<char *>r.hdr) + cw_group_offset(r.max_senders, max_receivers, 0)
    r.receiver_wake_count = 1 << 30
    r.wake_count = 1 << 30
    if member:
        group = _gentry(r.gtable, group_index)
        place = _rplace(r.rplaces, place_index)
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
    if r.bytes and r.many:
        # The claim word: the claim cursor is at least the claim's start.
        w = cw_claim_position(w, (h - 1) & ~(<uint64_t>CW_VAR_ALIGN_MASK))
    # A byte channel's claim starts and ends at records (multiples of 8).
    if e < h or e > w or w - (h - 1) > r.capacity or ((h - 1) | e) & r.align_mask:
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
    cdef uint64_t past = 0, top = 0
    return _groups_min(hdr, rplaces, gtable, max_receivers, any, <uint64_t>-1, &past, &top)


cdef uint64_t _groups_min(cw_header *hdr, char *rplaces, char *gtable, uint32_t max_receivers,
                          bint *any, uint64_t limit, uint64_t *past, uint64_t *top) noexcept nogil:
    """groups_min(), and past[0] = the first position found beyond limit (a group in use's
    claim cursor, or the start of a claim held for one; left alone if none): a sender of one
    passes its write cursor, past which no sound channel holds a position.  top[0]: the
    largest position found at or below limit (a sender of many, which learns its limit, the
    claim cursor, only after these loads, checks it then: ring_groups_floor()).  Each value is
    read once: the one found beyond is the one the least was taken over (read twice, a value put
    back between the reads would hide a claim from both)."""
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
            if v > limit and past[0] == 0:
                past[0] = v
            if v < m:
                m = v
            if v <= limit and v > top[0]:
                top[0] = v
    if not any[0]:
        return 0
    for q in range(max_receivers):
        p = _rplace(rplaces, q)
        h = cw_load_acquire_u64(&p.hold_start)
        if h == 0 or (h - 1 >= m and h - 1 <= limit and h - 1 <= top[0]):
            continue
        tag = cw_load_relaxed_u64(&p.group)
        gi = <uint32_t>tag
        if gi == 0 or gi > max_receivers:
            continue
        e = _gentry(gtable, gi - 1)
        # A claim counts while its group is the one it was made in.
        if (cw_load_acquire_u32(&e.flags) & CW_GROUP_IN_USE) and (cw_load_relaxed_u64(&e.epoch) << 32 | gi) == tag:
            if h - 1 > limit:
                if past[0] == 0:
                    past[0] = h - 1
            else:
                if h - 1 < m:
                    m = h - 1
                if h - 1 > top[0]:
                    top[0] = h - 1
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
    cdef uint64_t g1, g2, m, past, top, c
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
        # One sender knows where it has written up to: a group position past it is
        # impossible, and the least would pass over it; so the floor is that position, which
        # the caller finds impossible against its write cursor.
        past = 0
        top = 0
        m = _groups_min(r.hdr, r.rplaces, r.gtable, r.max_receivers, &any,
                        <uint64_t>-1 if r.many else r.write, &past, &top)
        if any and past != 0:
            m = past
        elif any and r.many and top > m:
            # Senders of many share the claim cursor: no group hands out messages (bytes) past
            # it, and it only moves on, so loaded after every position above it is past none
            # of them.  One that is (a claim's start or a claim cursor far ahead) would hide
            # from the least a claim a member still reads: the floor is that position, which
            # the caller finds impossible against the claim cursor, as a sender of one does.
            if r.bytes:
                c = cw_claim_position(cw_load_acquire_u64(&r.hdr.write_cursor),
                                      m & ~(<uint64_t>CW_VAR_ALIGN_MASK))
            else:
                c = cw_load_acquire_u64(&r.hdr.write_cursor)
            if top > c:
                if r.bytes and top - m >= (<uint64_t>1) << 42:
                    # The claim word keeps the cursor modulo 2^43 bytes, decoded from m: with
                    # the least and the largest half that range apart one of them is impossible, but
                    # either may be (a least far behind decodes the cursor a lap of 2^43 short,
                    # and then the largest, sound, would pass for one past it).  No bound is
                    # known: no room, and nothing written over.
                    r.bound_stale = True
                    return r.read_cache
                m = top
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
    if r.bytes and r.many:
        # The claim word: the claim cursor is at least the floor m.
        t = cw_claim_position(t, m & ~(<uint64_t>CW_VAR_ALIGN_MASK))
    if r.many:
        for p in range(r.max_senders):
            place = <cw_place *>(r.places + p * CW_PLACE_SIZE)
            intent = cw_load_acquire_u64(&place.intent)
            # A live sender filling sequence intent - 1: the floor stays below it, so that
            # no sender can claim that slot's next lap while it writes.  A dead one's claim
            # is never written again: it can be overwritten.
            # (A byte ring: the start of the claim it is filling, a record's start.)
            if intent != 0 and m <= intent - 1 < t and (intent - 1) & r.align_mask == 0 \
                    and cw_ofd_is_locked(r.fd, cw_place_offset(p)) != 0:
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
    # A descriptor this member waits on answers to the new place's name.
    ring_fd_rebind(r)
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
    cdef uint64_t n, w, k, free_lock, lock, past, stop, voids
    cdef int64_t span
    cdef int spins = 0
    cdef int64_t now
    cdef int at = RUN
    # A byte ring of many senders: write_cursor is the claim word (G3, G4 below).
    cdef bint claim_word = r.bytes and r.many
    cdef bint shared
    if r.hole_bad:
        # The last resolve found the hole impossible (r.corrupt_why says why): say so once.
        r.hole_bad = False
        return -1
    while True:
        while True:
            n = cw_load_acquire_u64(&g.next)                         # C1
            # Acquire pairs with the sender's release in ring_publish().
            w = cw_load_acquire_u64(&r.hdr.write_cursor)             # C2
            if claim_word:
                # The claim cursor is at least n, loaded before it (G3).
                w = cw_claim_position(w, n & ~(<uint64_t>CW_VAR_ALIGN_MASK))
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
            if r.many and not claim_word:
                # The claim cursor counts slots claimed, not all published: the run of
                # published messages from n (R1), or what stops it at n.
                at = _group_run(r, n, &w)
            free_lock = 0
            if cw_cas_acq_rel_u64(&g.lock, &free_lock, mine):        # C3
                if not r.many or claim_word:
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
                _wake_for_room(r)
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
        if claim_word:
            # G3: the claim word again, under the claim lock; the walk loads no seq word at
            # or past it.
            w = cw_claim_position(cw_load_acquire_u64(&r.hdr.write_cursor),
                                  n & ~(<uint64_t>CW_VAR_ALIGN_MASK))
        if w - n > r.capacity or n > w:
            cw_store_release_u64(&g.lock, 0)
            if n > w:
                return 0
            r.bad_cursor = n
            r.bad_write = w
            return -1
        if claim_word:
            if n & CW_VAR_ALIGN_MASK:
                cw_store_release_u64(&g.lock, 0)
                r.bad_cursor = n
                r.bad_write = w
                return -1
            shared = cw_load_relaxed_u64(&g.members) > 1
            if shared and r.want == 0:
                cw_store_release_u64(&g.lock, 0)
                return 0
            span = ring_bytes_many_group_span(r, n, w, shared, &past, &stop, &voids)
            if span == 0 and w != n:
                span = _bytes_many_group_pass(r, n, w, past, stop, voids)
                if span == 0:
                    spins = 0
                    continue         # passed over what nobody takes: look on (C1)
                if span == 2:
                    # Published meanwhile, or a claim changed while its place's lock was free:
                    # look again, but not for ever inside this call (a damaged ring could say
                    # so each time): after a few, wait as at a live claim.
                    spins += 1
                    if spins >= CLAIM_LOCK_SPINS:
                        r.hole = True
                        return 0
                    continue
                if span == -2:
                    return 0         # a live sender's claim: wait (r.hole)
            if span <= 0:
                cw_store_release_u64(&g.lock, 0)
                return span
            k = <uint64_t>span
        elif r.bytes:
            # Whole records, by the same rule (ring/bytes.pxi).
            span = ring_bytes_group_span(r, n, w, cw_load_relaxed_u64(&g.members) > 1)
            if span <= 0:
                cw_store_release_u64(&g.lock, 0)
                return span
            k = <uint64_t>span
        else:
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


cdef int64_t _bytes_many_group_pass(ring_t *r, uint64_t n, uint64_t w, uint64_t past,
                                    uint64_t stop, uint64_t voids) noexcept nogil:
    """G4 where the walk from n took no message (this member holds its group's claim lock; the
    claim cursor w is past n): voids published in a row from n (to past) are handed to nobody
    (C6 alone); else at stop (n, or past the padding published before the record at index 0)
    is a hole, and the claim covering it decides (R3-R4, asked for: after a spin, at once in
    try_recv): a dead claimer's bytes, its padding included, are handed to nobody the same way.  0
    when group_next moved (the claim lock freed: look on), 2 when the hole must be looked at
    again (the lock freed: published meanwhile, or a claim changed while its place's lock was
    free), -2 while a live sender's claim covers the hole or no test was asked for (the lock
    freed, r.hole set: wait), -1 if impossible (r.corrupt_why; the lock held)."""
    cdef uint64_t found = 0
    cdef int st
    cdef cw_group *g = r.group
    if past == n:
        if not r.resolve_now:
            cw_store_release_u64(&g.lock, 0)
            r.hole = True
            return -2
        st = _hole_claim(r, stop, w, &found)
        if st < 0:
            return -1
        if st == 0:
            cw_store_release_u64(&g.lock, 0)
            r.hole = True
            return -2
        if st == 1:
            cw_store_release_u64(&g.lock, 0)
            return 2
        r.skipped += 1
        past = found
    else:
        r.voided += voids
    # C6 alone: no member holds those bytes, and no group but this one is told (each decides
    # for itself; G5 keeps a dead claim's record until every group has passed it).
    cw_store_release_u64(&g.next, past)
    cw_store_release_u64(&g.lock, 0)
    _wake_for_room(r)
    return 0


cdef void _wake_for_room(ring_t *r) noexcept nogil:
    """A member moved its group's position past what nobody takes (C6 alone): wake the
    senders sleeping for that room, as ring_release() does for what a member took."""
    ring_publish_order(r)
    ring_wake_word(r, &r.hdr.sender_waiting, r.wake_count, True)


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
        slot = ring_slot(r, index)
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
    if cw_load_acquire_u64(&(<cw_many_slot_header *>ring_slot(r, n % r.capacity)).seq) == n + 1:
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
    ring_wake_senders_of(hdr, fd, max_senders)
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
