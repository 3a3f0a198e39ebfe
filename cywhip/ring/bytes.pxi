# Included by cywhip/_ring.pyx.
# Byte channels (CW_RECORDS_BYTES): variable-size records in a ring of bytes, steps B1-B7 of
# docs/protocol.md.  Out of line, so that the slot channels' inline steps stay as small as they
# were: the inline calls of _ring.pxd branch here on r.bytes.

cdef int64_t ring_bytes_room(ring_t *r) noexcept nogil:
    """Byte channels, step B1: 1 if the record of r.want_bytes payload bytes fits at the write
    cursor (after a padding record to the ring's end if it would cross it), 0 if not, -1 if the
    cursors are impossible.  Looks at read_cursor only when the cached copy says no room."""
    cdef uint64_t rec = cw_var_record_size(r.want_bytes)
    # Where this sender writes next: past a padding record a claim wrote and no commit took yet.
    cdef uint64_t write = r.write + r.pad
    cdef uint64_t need = rec
    cdef uint64_t rd
    if r.write_index + rec > r.capacity:
        need += r.capacity - r.write_index
    if r.capacity - (write - r.read_cache) >= need:
        return 1
    if r.groups:
        return _bytes_groups_room(r)
    # Acquire pairs with the receiver's release of read_cursor (B7).
    rd = cw_load_acquire_u64(&r.hdr.read_cursor)
    if r.write - rd > r.capacity:
        r.bad_cursor = rd
        r.bad_write = r.write
        return -1
    r.read_cache = rd
    return 1 if r.capacity - (write - rd) >= need else 0


cdef int64_t _bytes_groups_room(ring_t *r) noexcept nogil:
    """ring_bytes_room() of a channel with receiver groups, once the cached bound says no room:
    the bound is the slowest group's position (the senders' bound of receiver groups, in
    bytes; ring/groups.pxi), and a dead non-durable group holding the sender back goes (step
    R) as on a slot channel.  It works out the record's room again from the ring's fields."""
    cdef uint64_t rd, write, need, rec
    cdef int tries
    for tries in range(2):
        rd = ring_groups_floor(r)
        if r.bound_stale:
            return 0        # no bound known: a group creation is under way (see there)
        if r.write - rd > r.capacity or (rd & CW_VAR_ALIGN_MASK) != 0:
            r.bad_cursor = rd
            r.bad_write = r.write
            return -1
        r.read_cache = rd
        rec = cw_var_record_size(r.want_bytes)
        write = r.write + r.pad
        need = rec + (r.capacity - r.write_index if r.write_index + rec > r.capacity else 0)
        if r.capacity - (write - rd) >= need:
            return 1
        if tries or not ring_groups_release_dead_now(r):
            return 0
    return 0


cdef int64_t ring_bytes_claim_any(ring_t *r) noexcept nogil:
    """Byte channels, steps B1-B2 (the inline ring_bytes_claim() takes the common case first): make room for r.want_bytes payload bytes at the write index;
    where the record would cross the ring's end, write a padding record to the end first and
    move the write index to 0 (the padding is published with the record, never alone).
    Many senders: ring_bytes_many_claim()."""
    if r.many:
        return ring_bytes_many_claim(r)
    cdef uint64_t rec = cw_var_record_size(r.want_bytes)
    cdef uint64_t i = r.write_index
    cdef uint64_t pad = r.capacity - i if i + rec > r.capacity else 0
    cdef int64_t n = 1
    cdef cw_var_header *h
    # B1 from the cached read cursor (as ring_bytes_room() does first), then the shared look.
    if r.capacity - (r.write + r.pad - r.read_cache) < pad + rec:
        n = ring_bytes_room(r)
        if n <= 0:
            return n
    if pad:
        h = <cw_var_header *>cw_var_record(r.slots, i)
        h.length = <uint32_t>pad
        h.kind = CW_VAR_PADDING
        r.pad = pad
        r.write_index = 0
    return n


cdef int64_t ring_bytes_peek_any(ring_t *r) noexcept nogil:
    """Byte channels, step B6 (the inline ring_bytes_peek() takes the common case first): the length of the message first in line, stepping over a padding
    record before it; its payload is at ring_read_slot() and its record r.rec bytes long.  The
    header is read once and checked against the ring and the published bytes; -1 if it is
    impossible (its length in r.bad_length, its kind in r.bad_write, the bytes published from
    the read cursor in r.bad_cursor), -2 if no message follows (only padding was published)."""
    cdef uint64_t word, length, kind, rec
    cdef uint64_t avail
    if r.many:
        return ring_bytes_many_peek(r)
    while True:
        avail = r.write_cache - r.read
        if avail == 0:
            return -2
        # One load: length and kind as the sender left them (it wrote both before publishing).
        word = cw_load_relaxed_u64(<uint64_t *>cw_var_record(r.slots, r.read_index))
        length = word & 0xFFFFFFFFU
        kind = word >> 32
        if kind == CW_VAR_PADDING and length == r.capacity - r.read_index and length < avail:
            r.read += length
            r.read_index = 0
            continue
        rec = cw_var_record_size(length)
        if kind != CW_VAR_MESSAGE or length > r.message_length or rec > avail \
                or r.read_index + rec > r.capacity:
            r.bad_length = length
            r.bad_write = kind
            r.bad_cursor = avail
            return -1
        r.rec = rec
        return <int64_t>length


cdef Py_ssize_t ring_write_records_bytes(ring_t *r, const char *src, Py_ssize_t stride,
                                         Py_ssize_t count, uint32_t size, int64_t *claimed) noexcept nogil:
    """A byte channel: claim and commit up to count messages of size bytes (steps B1-B3 each);
    return how many.  claimed[0] as ring_write_records_many()'s."""
    cdef Py_ssize_t i
    r.want_bytes = size
    for i in range(count):
        claimed[0] = ring_bytes_claim(r)
        if claimed[0] <= 0:
            return i
        memcpy(ring_write_slot(r), src + i * stride, size)
        ring_commit(r, size)
    return count


cdef Py_ssize_t ring_read_records_bytes(ring_t *r, char *dst, Py_ssize_t stride,
                                               Py_ssize_t count, uint32_t size) noexcept nogil:
    """A byte channel: consume up to count of the published messages (some are) that are
    exactly size bytes into dst every stride bytes; stops before one of another length (or an
    impossible record: r.bad_*) or at the end of what is published; returns how many."""
    cdef Py_ssize_t i
    cdef int64_t n
    for i in range(count):
        if not ring_more(r):
            return i
        n = ring_bytes_peek(r)
        if n != size:
            if n >= 0:
                r.bad_length = <uint64_t>n
            return i
        memcpy(dst + i * stride, ring_read_slot(r), size)
        ring_consume(r)
    return count


cdef int64_t ring_bytes_group_span(ring_t *r, uint64_t n, uint64_t w, bint shared) noexcept nogil:
    """A group member of a byte channel, step C4 (under its group's claim lock, group_next is
    n, the sender published up to w): the bytes from n to the end of the records this claim
    takes.  Whole records only, a padding always with the message after it; at most r.want
    messages and, while other members share the group, at most a quarter of the ring; one
    message at least.  Each header is read once and checked as in B6 (the sender cannot
    rewrite them meanwhile: the group's position is at most n, which bounds it); a record
    that fails stops the claim before it, and if it is the first, -1 with r.corrupt_why."""
    cdef uint64_t pos = n, at, i, word, length, kind, rec, taken = 0
    cdef uint64_t limit = r.capacity // 4 if shared else r.capacity
    cdef uint64_t want = r.want if shared else <uint64_t>-1
    r.corrupt_why = 0
    if want == 0:
        return 0
    if (n | w) & CW_VAR_ALIGN_MASK:
        # Not records' starts: the member's end names its group's position and the write cursor.
        r.bad_cursor = n
        r.bad_write = w
        return -1
    while pos != w:
        at = pos                   # where this message's record starts, its padding first
        i = pos % r.capacity
        word = cw_load_relaxed_u64(<uint64_t *>cw_var_record(r.slots, i))
        length = word & 0xFFFFFFFFU
        kind = word >> 32
        if kind == CW_VAR_PADDING and length == r.capacity - i and length < w - pos:
            # Published with the record after it (B4): that one starts at index 0.
            pos += length
            i = 0
            word = cw_load_relaxed_u64(<uint64_t *>cw_var_record(r.slots, 0))
            length = word & 0xFFFFFFFFU
            kind = word >> 32
        rec = cw_var_record_size(length)
        if kind != CW_VAR_MESSAGE or length > r.message_length or rec > w - pos \
                or i + rec > r.capacity:
            if taken:
                return <int64_t>(at - n)
            return _corrupt(r, CORRUPT_RECORD, pos, kind, length)
        if taken and (taken == want or pos + rec - n > limit):
            return <int64_t>(at - n)
        pos += rec
        taken += 1
    return <int64_t>(pos - n)
