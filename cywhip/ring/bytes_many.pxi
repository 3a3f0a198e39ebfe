# Included by cywhip/_ring.pyx.
# Byte channels of many senders (r.bytes and r.many): claims under the claim bit of the claim
# word (header write_cursor), steps S0, M1-M6, T0-T2 and R1-R5 of docs/protocol.md ("Many
# senders on a byte ring"), as docs/models/bytes_many.pml checks them.  Every value loaded from
# the ring, the claim word or a place is read once into a local, checked, and only the local
# used; an impossible one gives -1 with its reason in r.corrupt_why.

# Pauses spent watching a claim bit held by another sender before testing its place's lock:
# an owner holds the bit for a few stores (M1's compare-and-swap to M3), unless it is preempted.
cdef enum:
    CLAIM_BIT_SPINS = 256
    # A sender's look at the claim word and read_cursor that finds them more than a ring apart
    # (read_cursor moved on between the two loads), in a row, before it calls them impossible.
    CLAIM_LOOKS = 64
    # _record_at()'s kind for a void of slack 1 (the rest of a message's claim, stepped over,
    # not counted as a message lost); never stored in a header.
    KIND_REST = 3


cdef inline cw_place *_splace(ring_t *r, uint64_t p) noexcept nogil:
    return <cw_place *>(r.places + p * CW_PLACE_SIZE)


cdef inline cw_var_many_header *_mhdr(ring_t *r, uint64_t index) noexcept nogil:
    return <cw_var_many_header *>cw_var_record(r.slots, index)


cdef inline uint64_t _need(ring_t *r, uint64_t c, uint64_t rec, uint64_t *pad) noexcept nogil:
    """The bytes a claim at cursor c takes for a record of rec bytes: padding to the ring's end
    first where the record would cross it (8 bytes of it an implicit padding, no header)."""
    cdef uint64_t i = c % r.capacity
    pad[0] = r.capacity - i if i + rec > r.capacity else 0
    return pad[0] + rec


cdef inline int _corrupt(ring_t *r, int why, uint64_t cursor, uint64_t write, uint64_t length) noexcept nogil:
    r.corrupt_why = why
    r.bad_cursor = cursor
    r.bad_write = write
    r.bad_length = length
    return -1


cdef inline void _read_pair(uint64_t *pos, uint64_t *length, uint64_t *c1, uint64_t *n) noexcept nogil:
    """A place's (position + 1, length) pair, read whole: the position, the length, the position
    again (its writer stores 0 first, then the length, then the position).  c1[0] is 0 unless
    the two loads of the position agree."""
    cdef uint64_t a = cw_load_acquire_u64(pos)
    cdef uint64_t ln = cw_load_acquire_u64(length)
    cdef uint64_t b = cw_load_acquire_u64(pos)
    c1[0] = a if a == b else 0
    n[0] = ln


# ------------------------------------------------------------------ sender

cdef uint64_t ring_bytes_claim_ref(ring_t *r) noexcept nogil:
    """A position to decode the claim word from (cw_claim_position()): at or below the claim
    cursor, and close behind it.  One receiver: the read cursor.  With groups the read cursor
    (the floor) stays where the groups started while any is in use, which after 2^43 bytes
    decodes the word wrong: the position of a group in use instead (no group hands out bytes
    past the claim cursor, and the senders run at most a ring ahead of the slowest); with
    none in use, the floor (the last group removed left it at its position, R2; F moves it
    up).  Load it before the word."""
    cdef uint32_t g
    cdef cw_group *e
    if r.groups:
        for g in range(r.max_receivers):
            e = _gentry(r.gtable, g)
            if cw_load_acquire_u32(&e.flags) & CW_GROUP_IN_USE:
                return cw_load_acquire_u64(&e.next) & ~(<uint64_t>CW_VAR_ALIGN_MASK)
    return cw_load_acquire_u64(&r.hdr.read_cursor) & ~(<uint64_t>CW_VAR_ALIGN_MASK)


cdef int _bound(ring_t *r, uint64_t *rd) noexcept nogil:
    """What the senders may not pass: the read cursor (one receiver), or with receiver groups
    the groups' bound (G1: every group in use's position and its members' claims, under the
    sequence lock of groups_gen; ring_groups_floor()).  0 when no bound is known (a group
    creation is under way: no room for now), else 1."""
    if r.groups:
        rd[0] = ring_groups_floor(r)
        return 0 if r.bound_stale else 1
    # Acquire pairs with the receiver's release of read_cursor (R5).
    rd[0] = cw_load_acquire_u64(&r.hdr.read_cursor)
    return 1


cdef int ring_bytes_adopt(ring_t *r) noexcept nogil:
    """S0a-S0e, a new sender on its place (its lock held, generation counted by ring_attach):
    what a dead predecessor left in the intent is voided (never committed) or kept in the dead
    claim for the receiver.  1 when done, 2 when S0f remains (ring_bytes_adopted()), 0 while
    S0d must wait for the receiver to pass the place's earlier dead claim (call again), -1 if
    the place or the cursors are impossible."""
    cdef cw_place *p = r.splace
    cdef uint64_t c1, ln, rd, word, w, c0, again, again_ln, dp, dl
    cdef int looks
    c1 = cw_load_acquire_u64(&p.intent)                                       # S0a
    ln = cw_load_acquire_u64(&p.intent_length)
    if c1 == 0:
        return 1
    c0 = c1 - 1
    if c0 & CW_VAR_ALIGN_MASK or ln & CW_VAR_ALIGN_MASK or ln < CW_VAR_MANY_HEADER_SIZE \
            or ln > r.capacity:
        return _corrupt(r, CORRUPT_INTENT, c0, 0, ln)
    for looks in range(CLAIM_LOOKS):
        # S0b: the bound (the read cursor, or the groups' bound, G1), then the claim word.
        if not _bound(r, &rd):
            # No bound known: a group creation (or removal) is under way; call again.  No
            # claim's end is waited for (bad_cursor 0: a claim's end is never 0), so the
            # caller does not report one.
            r.bad_cursor = 0
            r.bad_write = 0
            return 0
        word = cw_load_acquire_u64(&r.hdr.write_cursor)
        if rd & CW_VAR_ALIGN_MASK:
            return _corrupt(r, CORRUPT_READ, rd, cw_claim_position(word, rd & ~(<uint64_t>CW_VAR_ALIGN_MASK)), 0)
        w = cw_claim_position(word, rd)
        if w - rd <= r.capacity:
            break
        # The bound moved on between the two loads and others claimed, or the word is
        # impossible.
    else:
        return _corrupt(r, CORRUPT_CLAIM, w, word, 0)
    if w != c0:
        if c0 > w:
            return _corrupt(r, CORRUPT_INTENT, c0, w, ln)
        again = cw_load_acquire_u64(&p.intent)                                # S0c
        again_ln = cw_load_acquire_u64(&p.intent_length)
        if again == c1 and again_ln == ln:
            # Committed: the receiver must step over it (unless its record was published).
            _read_pair(&p.dead_claim, &p.dead_length, &dp, &dl)                # S0d
            if dp != c1 or dl != ln:
                # An earlier dead claim of this place lies whole before the intent's claim
                # (this place committed it first); anything else would be waited for in vain.
                if dp != 0 and ((dp - 1) & CW_VAR_ALIGN_MASK or dl & CW_VAR_ALIGN_MASK
                                or dl < CW_VAR_MANY_HEADER_SIZE or dl > r.capacity
                                or dp - 1 > c0 or c0 - (dp - 1) < dl):
                    return _corrupt(r, CORRUPT_DEAD_PLACE, dp - 1, c0, dl)
                if dp != 0 and rd < dp - 1 + dl:
                    # G5 with groups: every group must have passed it (rd is their bound).
                    # For the caller's text: the end of the claim waited for, the bound.
                    r.bad_cursor = dp - 1 + dl
                    r.bad_write = rd
                    return 0
                cw_store_relaxed_u64(&p.dead_claim, 0)                        # S0e
                cw_store_release_u64(&p.dead_length, ln)
                cw_store_release_u64(&p.dead_claim, c1)
    return 2


cdef void ring_bytes_adopted(ring_t *r) noexcept nogil:
    """S0f: the intent a dead predecessor left is withdrawn (kept, or void)."""
    cw_store_release_u64(&r.splace.intent, 0)


cdef void ring_bytes_claim_step(ring_t *r, int step) noexcept nogil:
    """One of M2-M4 for the claim bit this sender holds at r.claim_at, with r.pad and
    r.claim_end set (ring_bytes_claim_held()): M2 the intent, M3 the claim committed and the bit freed in
    one store, M4 the padding record published.  Separate for the tests that stop a sender
    between any two steps (cywhip._testing._steps)."""
    cdef cw_place *p = r.splace
    cdef cw_var_many_header *h
    cdef uint64_t c = r.claim_at, need = r.claim_end - r.claim_at, pad = r.pad
    if step == 2:                                                             # M2
        cw_store_relaxed_u64(&p.intent, 0)
        cw_store_release_u64(&p.intent_length, need)
        cw_store_release_u64(&p.intent, c + 1)
        if r.groups:
            # G2 (Z): no receiver zeroes what it consumed on a channel with groups, so the seq
            # word of every header this claim will hold may keep a payload of an earlier lap:
            # zero it before M3's release publishes the claim (every group has passed those
            # bytes: the room was counted from their bound).  Plain stores: M3 orders them.
            if pad >= CW_VAR_MANY_HEADER_SIZE:
                _mhdr(r, c % r.capacity).seq = 0
            _mhdr(r, (c + pad) % r.capacity).seq = 0
    elif step == 3:                                                           # M3
        # Release: the intent before the claim, for whoever acquires the word (R2, S0b).
        cw_store_release_u64(&r.hdr.write_cursor, cw_claim_word(c + need, 0))
        r.holding = False
    elif step == 4:                                                           # M4
        if pad >= CW_VAR_MANY_HEADER_SIZE:
            h = _mhdr(r, c % r.capacity)
            h.length = <uint32_t>pad
            h.kind = CW_VAR_PADDING
            cw_store_release_u64(&h.seq, c + 1)
        r.write = c + pad
        r.write_index = (c + pad) % r.capacity


cdef inline int64_t _claimed(ring_t *r, uint64_t c, uint64_t pad, uint64_t need, bint commit) noexcept nogil:
    """ring_bytes_claim_held() once there is room: the claim's extent, then (commit) M2-M4."""
    r.pad = pad
    r.claim_end = c + need
    if commit:
        ring_bytes_claim_step(r, 2)
        ring_bytes_claim_step(r, 3)
        ring_bytes_claim_step(r, 4)
    return 1


cdef int64_t _claim_held_looked(ring_t *r, uint64_t rec, bint commit) noexcept nogil:
    """ring_bytes_claim_held() once the cached bound says no room: the bound looked at again
    (out of line, so that the common path calls nothing)."""
    cdef uint64_t c = r.claim_at, pad, rd
    cdef uint64_t need = _need(r, c, rec, &pad)
    if not _bound(r, &rd):
        return 0
    if rd & CW_VAR_ALIGN_MASK or rd > c or c - rd > r.capacity:
        return _corrupt(r, CORRUPT_READ, rd, c, 0)
    r.read_cache = rd
    if c + need - rd > r.capacity:
        return 0
    return _claimed(r, c, pad, need, commit)


cdef int64_t ring_bytes_claim_held(ring_t *r, uint64_t rec, bint commit) noexcept nogil:
    """This sender holds the claim bit at r.claim_at (M1's compare-and-swap, or T1-T2): room
    for rec bytes there, then (commit) M2-M4: 1; no room yet (0: it keeps the bit, a taker must
    not free it without moving it); -1 if impossible."""
    cdef uint64_t c = r.claim_at, pad, need
    cdef uint64_t rd = r.read_cache
    need = _need(r, c, rec, &pad)
    if rd > c or c + need - rd > r.capacity:
        return _claim_held_looked(r, rec, commit)
    return _claimed(r, c, pad, need, commit)


cdef inline int _owner_dead(ring_t *r, uint64_t owner) noexcept nogil:
    """T0's test: 1 if the owner of the claim bit is dead: its place's lock free, or an earlier
    sender of its place (this sender's own place, whose lock is ours now; or another place
    whose lock a later sender holds, its generation counted past the owner's); 0 if alive (or
    the test failed); -1 if no sender place has that number."""
    cdef uint64_t place = cw_claim_owner_place(owner)
    cdef uint64_t gen
    cdef int held
    if place >= r.max_senders:
        return -1
    if <int>place == r.own_place:
        return 1
    held = cw_ofd_is_locked(r.fd, cw_place_offset(place))
    if held == 0:
        return 1
    if held < 0:
        return 0
    # Held: by the owner, or by a later sender of its place, which counts its generation
    # (S0) after taking the lock: one seen counted past the owner's means the owner is gone.
    # (Not seen yet: wait, and test again.)
    gen = cw_load_acquire_u64(&_splace(r, place).generation)
    return 1 if cw_claim_owner_of(place, gen) != owner else 0


cdef int64_t ring_bytes_take_bit(ring_t *r, int upto) noexcept nogil:
    """M1 (T0-T2 where the bit is held): take the claim bit at the claim cursor for the record
    of r.want_bytes payload bytes.  1 when this sender holds it (r.holding, at r.claim_at; a
    free word only with room for the record); 0 when there is no room (r.bit_busy clear) or a
    live sender holds the bit (r.bit_busy set): wait (ring_wait()); -1 if impossible.  upto 1
    stops a takeover after T1, before T2 (for tests)."""
    cdef uint64_t rec = cw_var_record_size_with(r.want_bytes, CW_VAR_MANY_HEADER_SIZE)
    cdef uint64_t rd, ref, word, c, owner, pad, need, again
    cdef uint32_t q
    cdef cw_place *dead
    cdef int looks = 0, spins, st
    # With groups the bound is dear to compute (every group and member place): the one last
    # seen (r.read_cache, at most the bound now) serves until it says no room.
    cdef bint fresh = False
    while True:
        if not r.groups:
            # Acquire pairs with the receiver's release of read_cursor (R5).
            rd = cw_load_acquire_u64(&r.hdr.read_cursor)
        elif not fresh:
            rd = r.read_cache
        elif not _bound(r, &rd):
            r.bit_busy = False
            return 0             # no bound known (a group creation is under way): no room
        # The word decoded from a position loaded before it: with groups not the bound last
        # seen, which an idle sender may hold from 2^43 bytes ago.
        ref = ring_bytes_claim_ref(r) if r.groups else rd
        word = cw_load_acquire_u64(&r.hdr.write_cursor)                       # M1
        if rd & CW_VAR_ALIGN_MASK:
            return _corrupt(r, CORRUPT_READ, rd, cw_claim_position(word, rd & ~(<uint64_t>CW_VAR_ALIGN_MASK)), 0)
        c = cw_claim_position(word, ref & ~(<uint64_t>CW_VAR_ALIGN_MASK))
        if c - rd > r.capacity:
            if r.groups and not fresh:
                fresh = True
                continue
            # The bound moved on between the two loads (or the word is impossible).
            looks += 1
            if looks >= CLAIM_LOOKS:
                return _corrupt(r, CORRUPT_CLAIM, c, word, 0)
            continue
        owner = cw_claim_owner(word)
        if owner == 0:
            need = _need(r, c, rec, &pad)
            if c + need - rd > r.capacity:
                if r.groups and not fresh:
                    fresh = True
                    continue
                # A dead non-durable group holding the senders back goes (step R), at most
                # once a millisecond per sender.
                if r.groups and ring_groups_release_dead_now(r):
                    continue
                r.read_cache = rd
                r.bit_busy = False
                return 0
            r.read_cache = rd
            if cw_cas_acq_rel_u64(&r.hdr.write_cursor, &word, cw_claim_word(c, r.owner)):
                r.holding = True
                r.claim_at = c
                r.bit_busy = False
                return 1
            continue
        if owner == r.owner:
            # Nobody else holds this owner, and this sender holds no bit (r.holding).
            return _corrupt(r, CORRUPT_OWNER, c, word, owner)
        # T0: the owner commits within a few stores unless it is preempted or dead.
        again = word
        for spins in range(CLAIM_BIT_SPINS):
            cw_cpu_relax()
            again = cw_load_acquire_u64(&r.hdr.write_cursor)
            if again != word:
                break
        if again != word:
            continue
        st = _owner_dead(r, owner)
        if st < 0:
            return _corrupt(r, CORRUPT_OWNER, c, word, owner)
        if st == 0:
            r.bit_busy = True
            r.busy_word = word
            return 0
        if not cw_cas_acq_rel_u64(&r.hdr.write_cursor, &word, cw_claim_word(c, r.owner)):   # T1
            continue
        r.holding = True
        r.claim_at = c
        r.read_cache = rd
        r.bit_busy = False
        if upto == 1:
            return 1
        # T2: an intent for c was never committed (the position is still c): void.  Not only
        # the dead owner's: an owner that took the bit over and died before its T2 left its
        # dead predecessor's, which a later S0 would take for a committed claim once this
        # sender's M3 moves the position past c.  Only the holder of the bit stores an intent
        # for the word's position, and the holder is this sender now: every intent for c + 1
        # is void (a new sender's S0 may clear it too).
        for q in range(r.max_senders):
            dead = _splace(r, q)
            if cw_load_acquire_u64(&dead.intent) == c + 1:
                cw_store_release_u64(&dead.intent, 0)
        return 1


cdef int64_t ring_bytes_many_claim(ring_t *r) noexcept nogil:
    """M1-M4 (T0-T2 where the claim bit is held): claim room for the record of r.want_bytes
    payload bytes.  1 when claimed (its payload at ring_write_slot(), r.write its header); 0
    when there is no room or a live sender holds the bit: wait (ring_wait()); -1 if the
    cursors are impossible.  A taker that finds no room frees the bit at the same position
    (T3): a call that then returns (try_send(), a timeout) holds no other sender back."""
    cdef uint64_t rec = cw_var_record_size_with(r.want_bytes, CW_VAR_MANY_HEADER_SIZE)
    cdef int64_t st
    r.corrupt_why = 0
    if not r.holding:
        st = ring_bytes_take_bit(r, 2)
        if st <= 0:
            return st
    st = ring_bytes_claim_held(r, rec, True)
    if st == 0:
        # T3: no room at claim_at after a takeover.  Free the bit, the position unchanged (no
        # intent was stored): nobody else stores the word while this live sender owns it (a
        # T1 takes over only an owner seen dead), and a stale T1 expects its dead owner.
        cw_store_release_u64(&r.hdr.write_cursor, cw_claim_word(r.claim_at, 0))
        r.holding = False
    return st


cdef int64_t ring_bytes_many_look(ring_t *r) noexcept nogil:
    """ring_refresh_free() of a sender: 1 if a claim may succeed now (room for r.want_bytes at
    a free claim word; or the word changed since a live owner held it), 0 if not, -1 if
    impossible.  Claims nothing."""
    cdef uint64_t rec = cw_var_record_size_with(r.want_bytes, CW_VAR_MANY_HEADER_SIZE)
    cdef uint64_t rd, word, c, pad, need
    cdef int looks
    if r.holding:
        if not _bound(r, &rd):
            return 0
        if rd & CW_VAR_ALIGN_MASK or rd > r.claim_at or r.claim_at - rd > r.capacity:
            return _corrupt(r, CORRUPT_READ, rd, r.claim_at, 0)
        need = _need(r, r.claim_at, rec, &pad)
        return 1 if r.claim_at + need - rd <= r.capacity else 0
    for looks in range(CLAIM_LOOKS):
        if not _bound(r, &rd):
            return 0
        word = cw_load_acquire_u64(&r.hdr.write_cursor)
        if rd & CW_VAR_ALIGN_MASK:
            return _corrupt(r, CORRUPT_READ, rd, cw_claim_position(word, rd & ~(<uint64_t>CW_VAR_ALIGN_MASK)), 0)
        c = cw_claim_position(word, rd)
        if c - rd > r.capacity:
            continue
        if cw_claim_owner(word) != 0:
            # Held: by the live owner the last claim saw (wait), or by another (try).
            return 0 if r.bit_busy and word == r.busy_word else 1
        r.bit_busy = False
        need = _need(r, c, rec, &pad)
        r.read_cache = rd
        return 1 if c + need - rd <= r.capacity else 0
    return _corrupt(r, CORRUPT_CLAIM, c, word, 0)


cdef bint ring_bytes_owner_gone(ring_t *r) noexcept nogil:
    """A sender waiting on a claim bit held by a live sender (r.bit_busy), after its spin or a
    slice: whether that holder died meanwhile (or the word moved on): look again (claim)."""
    cdef uint64_t word = cw_load_acquire_u64(&r.hdr.write_cursor)
    if word != r.busy_word or _owner_dead(r, cw_claim_owner(word)) != 0:
        r.bit_busy = False
        return True
    return False


cdef void ring_bytes_commit_step(ring_t *r, uint32_t length, int step) noexcept nogil:
    """One of M5's two halves and M6 for the record claimed at r.write: 1, the header's length
    and kind (a message of length bytes, at most r.want_bytes, or void for CW_VOID_LENGTH) and
    the record for the room a shorter message leaves; 2, seq (published); 3, the intent
    withdrawn.  Separate for the tests that stop a sender between any two steps."""
    cdef uint64_t h = r.write, i = r.write_index, rec, gap
    cdef uint32_t kind = CW_VAR_MESSAGE
    cdef cw_var_many_header *hd = _mhdr(r, i)
    cdef cw_var_many_header *v
    if step == 1:
        if length == CW_VOID_LENGTH:
            hd.length = <uint32_t>(r.claim_end - h)
            hd.kind = CW_VAR_VOID
            return
        rec = cw_var_record_size_with(length, CW_VAR_MANY_HEADER_SIZE)
        gap = r.claim_end - h - rec
        if gap == CW_SLOT_ALIGN:
            kind = CW_VAR_MESSAGE | (1U << CW_VAR_SLACK_SHIFT)
        elif gap:
            v = _mhdr(r, i + rec)
            v.length = <uint32_t>gap
            # Slack 1 on a void: the rest of a message's claim, not a message lost.
            v.kind = CW_VAR_VOID | (1U << CW_VAR_SLACK_SHIFT)
            cw_store_release_u64(&v.seq, h + rec + 1)
        hd.length = length
        hd.kind = kind
    elif step == 2:
        # Release: the payload, length and kind before seq; pairs with R1's acquire.
        cw_store_release_u64(&hd.seq, h + 1)                                   # M5
    elif step == 3:
        # Release: whoever sees the intent gone sees the record published (R3, R4).
        cw_store_release_u64(r.intent, 0)                                     # M6
        r.write = r.claim_end
        r.write_index = r.claim_end % r.capacity
        r.pad = 0


cdef void ring_bytes_many_commit(ring_t *r, uint32_t length) noexcept nogil:
    """M5-M6: publish the record claimed at r.write with a message of length bytes (at most
    r.want_bytes), or void (CW_VOID_LENGTH: the message could not be built); the room a
    shorter message leaves of its claim is published too (slack of 8 bytes, or a void record
    before the message's seq), so that every byte of the claim is published when the intent is
    withdrawn."""
    ring_bytes_commit_step(r, length, 1)
    ring_bytes_commit_step(r, length, 2)
    ring_bytes_commit_step(r, length, 3)


cdef uint64_t ring_bytes_many_published(ring_t *r) noexcept nogil:
    """Bytes ever claimed on the channel (the claim cursor), some perhaps still being filled."""
    cdef uint64_t ref = ring_bytes_claim_ref(r)
    cdef uint64_t word = cw_load_acquire_u64(&r.hdr.write_cursor)
    return cw_claim_position(word, ref)


# ---------------------------------------------------------------- receiver

cdef inline int _record_at(ring_t *r, uint64_t h, uint64_t i, uint64_t *step, uint32_t *kind,
                           uint64_t *length) noexcept nogil:
    """R1 at cursor h (ring index i, not 8 bytes before the end): 0 if its record is not
    published; else 1 with its bytes, its kind and length, checked; -1 if impossible."""
    cdef cw_var_many_header *hd = _mhdr(r, i)
    cdef uint64_t word, n, rec, slack
    cdef uint32_t k
    # Acquire pairs with M4's and M5's release of seq: the header and payload are whole.
    if cw_load_acquire_u64(&hd.seq) != h + 1:
        return 0
    # One load: length and kind as the sender left them.
    word = cw_load_relaxed_u64(<uint64_t *>hd)
    n = word & 0xFFFFFFFFU
    k = <uint32_t>(word >> 32) & CW_VAR_KIND_MASK
    slack = word >> (32 + CW_VAR_SLACK_SHIFT)
    if k == CW_VAR_MESSAGE:
        if slack > 1 or n > r.message_length:
            return _corrupt(r, CORRUPT_RECORD, h, word >> 32, n)
        rec = cw_var_record_size_with(n, CW_VAR_MANY_HEADER_SIZE) + slack * CW_SLOT_ALIGN
    elif k == CW_VAR_PADDING and slack == 0 and n == r.capacity - i:
        rec = n
    elif k == CW_VAR_VOID and slack <= 1 and n >= CW_VAR_MANY_HEADER_SIZE and (n & CW_VAR_ALIGN_MASK) == 0:
        rec = n
        if slack:
            k = KIND_REST            # the rest of a message's claim: stepped over, not counted
    else:
        return _corrupt(r, CORRUPT_RECORD, h, word >> 32, n)
    if i + rec > r.capacity:
        return _corrupt(r, CORRUPT_RECORD, h, word >> 32, n)
    step[0] = rec
    kind[0] = k
    length[0] = n
    return 1


cdef int64_t ring_bytes_many_scan(ring_t *r) noexcept nogil:
    """R1 for a run, then R2: the bytes from the read cursor to the end of the last message
    published in a row from it (r.write_cache), stepping over padding, implicit padding and
    void records at its start (and releasing them).  0 when none is: r.hole set if the claim
    cursor is past the read cursor (ring_bytes_many_resolve()), clear if the ring is empty;
    -1 if impossible."""
    cdef uint64_t h = r.read, end = r.read, i, at, step, length, word, w
    cdef uint32_t kind
    cdef int64_t n = 0
    cdef uint64_t voids = 0
    cdef int st
    if r.hole_bad:
        # The last resolve found the hole impossible (r.corrupt_why says why): say so once.
        r.hole_bad = False
        return -1
    r.corrupt_why = 0
    while h - r.read < r.capacity:
        i = h % r.capacity
        at = h
        if r.capacity - i == CW_SLOT_ALIGN:
            # The implicit padding: no record starts here; it is passed with the record after
            # it (it belongs to that record's claim, perhaps not yet made).
            at = h + CW_SLOT_ALIGN
            i = 0
        st = _record_at(r, at, i, &step, &kind, &length)
        if st == 0:
            break
        if st < 0:
            if n:
                r.corrupt_why = 0    # deliver the messages before it first
                break
            return -1
        if at + step - r.read > r.capacity:
            # Past a ring from the read cursor: past the claim cursor, which no sender reaches.
            if n:
                break
            return _corrupt(r, CORRUPT_RECORD, at, kind, step)
        h = at + step
        if kind == CW_VAR_MESSAGE:
            end = h
            n += 1
        elif n == 0 and kind == CW_VAR_VOID:
            voids += 1
    if n:
        r.hole = False
        r.write_cache = end
        return <int64_t>(end - r.read)
    if h != r.read:
        # Only padding and voids at the read cursor: stepped over and handed back.
        r.voided += voids
        r.read = h
        r.read_index = h % r.capacity
        r.write_cache = h
        ring_release(r)
    # R2.  Acquire pairs with M3's release: a committed claim brings its intent.
    word = cw_load_acquire_u64(&r.hdr.write_cursor)
    w = cw_claim_position(word, r.read)
    if w - r.read > r.capacity:
        return _corrupt(r, CORRUPT_CLAIM, w, word, 0)
    # The position alone: at the read cursor the ring is empty, whatever the owner.
    r.hole = w != r.read
    return 0


cdef inline int _hole_bad(ring_t *r, int why, uint64_t cursor, uint64_t write, uint64_t length) noexcept nogil:
    _corrupt(r, why, cursor, write, length)
    r.hole_bad = True
    r.hole = False
    return 1


cdef inline bint _bad_pair(ring_t *r, uint64_t c1, uint64_t ln) noexcept nogil:
    """R3: a place's (position + 1, length) pair no claim can have: unaligned, shorter than a
    record header, or longer than the ring (whose end could wrap below the read cursor)."""
    return ((c1 - 1) & CW_VAR_ALIGN_MASK or ln & CW_VAR_ALIGN_MASK or ln < CW_VAR_MANY_HEADER_SIZE
            or ln > r.capacity)


cdef int _hole_claim(ring_t *r, uint64_t rd, uint64_t w, uint64_t *found) noexcept nogil:
    """R3-R4 at a hole rd (the claim cursor w past it, nothing published at rd), for the one
    receiver or a group (G4): who claimed it.  0 while a live sender's claim covers it (its
    place's lock held, or the test failed); 1 if it must be looked at again (published
    meanwhile, or a claim changed while its place's lock was free); 2 when its claimer is dead:
    found[0] is the end of the dead claim covering rd (its padding included); -1 if impossible
    (r.corrupt_why)."""
    cdef uint64_t c1, ln, again, again_ln, e, h, end = 0
    cdef uint32_t p
    cdef cw_place *q
    for p in range(r.max_senders):                                            # R3
        q = _splace(r, p)
        _read_pair(&q.intent, &q.intent_length, &c1, &ln)
        if c1 != 0 and c1 - 1 <= rd and rd - (c1 - 1) < ln:
            if _bad_pair(r, c1, ln):
                return _corrupt(r, CORRUPT_PAIR, c1 - 1, ln, p)
            # Held (1), or the test failed (< 0): presume a live claimer.
            if cw_ofd_is_locked(r.fd, cw_place_offset(p)) != 0:
                return 0
            _read_pair(&q.intent, &q.intent_length, &again, &again_ln)
            if again != c1 or again_ln != ln:
                return 1             # changed while its lock was free: look again
            e = c1 - 1 + ln
            if end and end != e:
                return _corrupt(r, CORRUPT_TWO, rd, end, e)
            end = e
        _read_pair(&q.dead_claim, &q.dead_length, &c1, &ln)
        if c1 != 0 and c1 - 1 <= rd and rd - (c1 - 1) < ln:
            if _bad_pair(r, c1, ln):
                return _corrupt(r, CORRUPT_PAIR, c1 - 1, ln, p)
            e = c1 - 1 + ln
            if end and end != e:
                return _corrupt(r, CORRUPT_TWO, rd, end, e)
            end = e
    # R4: published meanwhile?  (The record's header: 8 bytes on before the implicit padding;
    # no seq word at or past the claim cursor is trusted, G3.)
    h = rd + CW_SLOT_ALIGN if r.capacity - rd % r.capacity == CW_SLOT_ALIGN else rd
    if h < w and cw_load_acquire_u64(&_mhdr(r, h % r.capacity).seq) == h + 1:
        return 1
    if end == 0:
        return _corrupt(r, CORRUPT_HOLE, rd, w, 0)
    if end > w or end <= rd or end & CW_VAR_ALIGN_MASK:
        return _corrupt(r, CORRUPT_DEAD, rd, end, w)
    found[0] = end
    return 2


cdef int ring_bytes_many_resolve(ring_t *r) noexcept nogil:
    """R3-R4 at a hole (the claim cursor past the read cursor, nothing published there): 1 when
    the hole is gone (published meanwhile, or a dead claim covering it stepped over and handed
    back) or must be looked at again, or found impossible (the next scan says so); 0 while a
    live sender's claim covers it (wait for its publish, which wakes the receiver)."""
    cdef uint64_t rd = r.read, word, w, found = 0
    cdef int st
    word = cw_load_acquire_u64(&r.hdr.write_cursor)
    w = cw_claim_position(word, rd)
    if w - rd > r.capacity:
        return _hole_bad(r, CORRUPT_CLAIM, w, word, 0)
    if w == rd:
        r.hole = False
        return 1
    st = _hole_claim(r, rd, w, &found)
    if st < 0:
        r.hole_bad = True
        r.hole = False
        return 1
    if st == 0:
        return 0
    r.hole = False
    if st == 1:
        return 1
    # Its claimer died before publishing: step over the whole claim and hand it back.
    r.read = found
    r.read_index = found % r.capacity
    r.write_cache = found
    r.skipped += 1
    ring_release(r)
    return 1


# ------------------------------------------------------------------ groups

cdef int64_t ring_bytes_many_group_span(ring_t *r, uint64_t n, uint64_t w, bint shared,
                                        uint64_t *past, uint64_t *stop, uint64_t *voids) noexcept nogil:
    """G4, a group member under its group's claim lock: group_next is n and the claim cursor w,
    loaded after the lock was taken (G3).  The bytes from n to the end of the last message
    this claim takes: whole records, published in a row from n (R1: seq, then the header read
    once and checked), a padding or void before a message taken with it; at most r.want
    messages and, while others share the group, at most a quarter of the ring; one message at
    least.  Only seq words below w are loaded: one at or past the claim cursor belongs to no
    claim of this lap and may hold an earlier lap's payload (only G2 zeroes a seq word, inside
    a claim).  0 when it takes no message: past[0] is then the end of the voids published in
    a row from n (n if none; a padding counts only with what follows it), which nobody takes
    (C6 alone), voids[0] how many of them were messages that could not be built, and stop[0]
    where the walk stopped: with past[0] == n, the hole (after the padding published before
    it, if any: M4 publishes a padding before its message), or w.  -1 if the first record is
    impossible (r.corrupt_why)."""
    cdef uint64_t pos = n, at, i, step, length, end = n, taken = 0
    cdef uint64_t limit = r.capacity // 4 if shared else r.capacity
    cdef uint64_t want = r.want if shared else <uint64_t>-1
    cdef uint32_t kind
    cdef int st
    r.corrupt_why = 0
    past[0] = n
    voids[0] = 0
    while pos < w:
        i = pos % r.capacity
        at = pos
        if r.capacity - i == CW_SLOT_ALIGN:
            # The implicit padding: it belongs to the claim of the record after it.
            at = pos + CW_SLOT_ALIGN
            i = 0
            if at >= w:
                if taken:
                    break
                # No claim ends there (one that starts there takes a record after it).
                return _corrupt(r, CORRUPT_CLAIM_END, pos, w, 0)
        st = _record_at(r, at, i, &step, &kind, &length)
        if st == 0:
            break
        if st < 0 or at + step > w or (kind == CW_VAR_PADDING and at + step == w):
            if taken:
                r.corrupt_why = 0    # the messages before it first
                break
            if st > 0:
                # Past the claim cursor: no claim made it.
                _corrupt(r, CORRUPT_RECORD, at, kind, length)
            return -1
        if kind == CW_VAR_MESSAGE:
            if taken and (taken == want or at + step - n > limit):
                break
            taken += 1
            end = at + step
        elif taken == 0 and kind != CW_VAR_PADDING:
            # A void (slack 0: a message that could not be built) or the rest of a message's
            # claim (KIND_REST), and the padding before it if any: nobody takes those bytes.
            if kind == CW_VAR_VOID:
                voids[0] += 1
            past[0] = at + step
        pos = at + step
    stop[0] = pos
    if taken == 0:
        return 0
    return <int64_t>(end - n)


cdef void ring_bytes_zero(ring_t *r) noexcept nogil:
    """R5's first half: zero the ring's bytes consumed since the last release, so that no byte
    a sender has not written this lap reads as a record's seq (a payload of an earlier lap may
    hold any value)."""
    cdef uint64_t start = r.released, n = r.read - r.released, i, first
    if n == 0 or n > r.capacity:
        r.released = r.read
        return
    i = start % r.capacity
    first = r.capacity - i
    if first > n:
        first = n
    memset(cw_var_record(r.slots, i), 0, first)
    if n > first:
        memset(r.slots, 0, n - first)
    r.released = r.read


cdef int64_t ring_bytes_many_peek(ring_t *r) noexcept nogil:
    """ring_bytes_peek() of a ring of many senders (step R1 again, within the run the scan
    found): the length of the message first in line, stepping over implicit padding, padding
    and void records before it; -1 if impossible (the values in r.bad_*), -2 if no message
    follows."""
    cdef uint64_t avail, step, length
    cdef uint32_t kind
    cdef int st
    while True:
        avail = r.write_cache - r.read
        if avail == 0:
            return -2
        if r.capacity - r.read_index == CW_SLOT_ALIGN:
            r.read += CW_SLOT_ALIGN
            r.read_index = 0
            continue
        st = _record_at(r, r.read, r.read_index, &step, &kind, &length)
        if st <= 0 or step > avail:
            if st == 0:
                _corrupt(r, CORRUPT_RECORD, r.read, 0, 0)
            r.corrupt_why = 0
            r.bad_cursor = avail
            return -1
        if kind != CW_VAR_MESSAGE:
            if kind == CW_VAR_VOID:
                r.voided += 1
            r.read += step
            r.read_index += step
            if r.read_index == r.capacity:
                r.read_index = 0
            continue
        r.rec = step
        return <int64_t>length
