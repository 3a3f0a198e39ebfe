# cython: language_level=3
"""The protocols over a channel's slots: one sender or many, into one receiver or receiver groups.

This file holds the ring's state (ring_t) and its inline half: the slot access (through
layout.h's record descriptor), the send and receive steps and the calls composed of them;
_ring.pyx and its ring/*.pxi files hold the out-of-line half, one file per protocol.

Nothing here touches a Python object: every function is ``nogil`` and
``noexcept`` and reports through its return value.  With one sender
(``r.many`` false) the sender owns ``write_cursor``; the receiver owns
``read_cursor``; each keeps a private copy of the other's cursor and
refreshes it only when the copy says the ring is full (sender) or empty
(receiver).  With many senders, ``write_cursor`` is the claim cursor, moved
only by compare-and-swap; each slot carries the sequence number it was
published with and each sender's place the sequence it is filling, so the
receiver can tell a slot still being filled from one whose sender died.
With receiver groups (``r.groups``), each group's members claim runs of
messages from its claim cursor and senders wait for the slowest group.
A byte channel (``r.bytes``) is a ring of variable-size records: its
cursors count bytes, each record carries its length and kind, and a padding
record fills the ring's end where a record would cross it (steps B1-B7).
The ends call the same functions whatever the protocol.  See docs/protocol.md.
"""
from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.string cimport memcpy

from cywhip.includes.c_atomics cimport (
    cw_load_acquire_u64, cw_load_relaxed_u64, cw_store_release_u64, cw_store_relaxed_u64,
    cw_load_relaxed_u32, cw_exchange_u32, cw_fence_seq_cst, cw_compiler_fence, cw_prefetch_write, cw_cas_acq_rel_u64,
)
from cywhip.includes.c_futex cimport cw_futex_wake
from cywhip.includes.c_fdwake cimport CW_WAIT_FD, CW_WAIT_FUTEX
from cywhip.includes.c_layout cimport (
    cw_header, cw_slot_header, cw_many_slot_header, cw_place, cw_group, CW_VOID_LENGTH,
    cw_fixed_slot, cw_fixed_payload, cw_fixed_slot_offset,
    cw_var_header, cw_var_record, cw_var_record_size, CW_VAR_MESSAGE, CW_VAR_PADDING, CW_SLOT_ALIGN,
)

# How long the Python ends sleep at most before ring_wait() returns WAIT_AGAIN,
# so that a blocked call in the main thread runs signal handlers (Ctrl-C)
# within this time even when the signal was delivered to another thread.
cdef enum:
    SLEEP_SLICE_NS = 100_000_000

# Why a sleep of ring_wait() (or of the asyncio waker) is in slices: ring_wait_slice_ns().
cdef enum:
    SLICE_NONE = 0        # no reason chosen yet (never returned)
    SLICE_HOLE = 1        # many senders: the next message is claimed, not published (its claimer's death wakes nobody)
    SLICE_MEMBER = 2      # a group member: another member holds a claim or the claim lock (its death wakes nobody)
    SLICE_GROUP = 3       # a sender: the bound is a non-durable group's (its members' death wakes nobody)
    SLICE_CREATOR = 4     # a sender: no bound known, a group creation is stalled (its creator's death wakes nobody)
    SLICE_UNFENCED = 5    # the kernel refused this end's membarrier: a publish may have missed its sleep
    SLICE_IDLE = 6        # none of those: the other end's progress wakes it, unless that end dies between the two

# Results of ring_wait().
cdef enum:
    WAIT_READY = 1      # the condition holds: free slots (sender) or messages (receiver)
    WAIT_TIMEOUT = 0    # the deadline passed
    WAIT_CORRUPT = -1   # a cursor read from shared memory is impossible
    WAIT_AGAIN = -2     # slept a slice (or a wake-up found nothing): check signals, call again
    WAIT_STOPPED = -3   # ring.stop was set by close()
    WAIT_INTERRUPTED = -4   # a signal interrupted the sleep (futex wait returned EINTR): check signals, call again

cdef struct ring_t:
    cw_header *hdr
    char *slots
    uint64_t slots_offset
    uint64_t capacity
    uint64_t message_length
    uint64_t slot_size     # bytes per cursor step: a slot's size; 1 on a byte channel
    uint64_t slot_header   # bytes before each payload: 8, or 16 with many senders (seq)
    int64_t spin_ns
    # This process is registered for membarrier's global expedited barriers: its
    # publishes and releases skip the full fence (ring_publish_order()).
    bint light
    # Many senders (max_senders > 1): the claim/publish/skip protocol.
    bint many
    uint32_t max_senders
    char *places           # the sender places (receiver: to find a hole's claimer)
    uint64_t *intent       # this sender's place's intent word (many senders; else NULL)
    int fd                 # the channel file, to test a sender place's lock
    int wake_count         # waiting senders one release wakes: 1, or all of them
    # Sender-private.  With many senders, write is the sequence last claimed.
    uint64_t write         # next cursor to fill; == write_cursor after a publish
    uint64_t write_index   # write % capacity
    uint64_t read_cache    # last read_cursor seen
    # Receiver-private.
    uint64_t read          # next cursor to take; read_cursor lags it until a release
    uint64_t read_index    # read % capacity
    uint64_t write_cache   # end of the messages known to be published (>= read)
    bint hole              # many senders: the last look found read claimed but not published;
                           # a group member: another live member holds a claim or the claim lock
    uint64_t skipped       # many senders: holes stepped over (their claimer died before publishing)
    uint64_t voided        # many senders: void slots stepped over (their message could not be built)
    # Receiver groups (max_receivers > 1): senders wait for the slowest group;
    # a member claims runs of messages for itself under its group's claim lock
    # and records them in its place (hold_start, hold_end).  A member's
    # write_cache is the end of its claim.
    bint groups
    uint32_t max_receivers
    char *rplaces          # the receiver places
    char *gtable           # the group entries
    cw_group *group        # a member's group; NULL for a sender
    uint32_t group_index
    uint64_t group_tag     # epoch << 32 | group_index + 1, as its places carry it
    cw_place *place        # a member's place (it moves into a dead member's place to finish its claim)
    uint32_t place_index   # among the receiver places
    uint64_t want          # a member claims at most this many while others share its group
    int receiver_wake_count  # waiting receivers one publish wakes: 1, or all members
    int64_t detect_ns      # a member's last look for dead members' claims; a sender's last
                           # look for dead non-durable groups holding it back
    bint bound_stale       # a sender of a channel with groups: its last look could not compute
                           # the bound (a group creation under way, or stalled): no room known
    bint resolve_now       # a member at a hole tests its claimer's lock (ring_resolve_hole())
    # Byte channels (records of any size; cursors, capacity and indexes count bytes).
    bint bytes
    uint64_t want_bytes    # sender: the payload bytes its next claim makes room for
    uint64_t pad           # sender: a padding record written at the write cursor by a claim
                           # whose record is not committed yet (that record starts at index 0)
    uint64_t rec           # receiver: bytes of the record its last peek checked
    uint64_t align_mask    # 7 on a byte channel (its cursors are multiples of 8), 0 on a slot channel
    # Byte channels of many senders (r.bytes and r.many; ring/bytes_many.pxi, steps S0, M1-M6,
    # T0-T2, R1-R5): the claim word is write_cursor, claims are made under its claim bit.
    cw_place *splace       # sender: its own place (intent, intent_length, dead_claim, generation)
    uint64_t owner         # sender: its owner in the claim word (place and generation)
    bint holding           # sender: it took a dead owner's claim bit over at claim_at and has not
                           # committed a claim there yet (T2; no room: it frees the bit, T3)
    uint64_t claim_at
    uint64_t claim_end     # sender: the end of its committed claim (the record and any void after it)
    bint bit_busy          # sender: its last claim found the bit held by a live sender (busy_word)
    uint64_t busy_word
    bint zeroing           # receiver: zero the bytes it consumed before each release (R5)
    uint64_t released      # receiver: read_cursor as it last stored it
    uint64_t *release_to   # receiver of a byte ring of many senders: its place's intent word, the
                           # read cursor + 1 its release zeroes up to (R5; a new receiver finishes it)
    int corrupt_why        # why the last -1 of a many-senders byte ring (CORRUPT_*), 0 none;
                           # the values read are in bad_cursor, bad_write, bad_length
    bint hole_bad          # receiver: the last resolve found the hole impossible: the next scan says so
    # Set by close() from another thread to end a wait.
    uint32_t stop
    # Waiting on a file descriptor (ring/wait.pxi, docs/protocol.md "Waiting on a file
    # descriptor").  wake_prefix: the start of every wake name of this channel (its file's
    # inode, device and creation time), for the bytes this end sends to fd waiters; 0 long if
    # it could not be made.  The rest is this end's own descriptor, if it has one (fd_open).
    char wake_prefix[64]
    int wake_prefix_len
    int own_place          # a sender's place among the sender places (a receiver's: place_index)
    bint fd_open           # wake_ep, wake_sock (and wake_timer unless -1) are this end's
    int wake_ep            # what fileno() returns: an epoll descriptor watching the two below
    int wake_sock          # the datagram socket bound under this end's wake name
    int wake_timer         # a timerfd for sleeps in slices; -1 until one is needed
    bint fd_wait           # fileno() was asked: a look that finds nothing arms the descriptor
    bint fd_armed          # the word held fd_expect after this end's last arming
    bint fd_sliced         # the timer is set and its expiry not yet read (ring_fd_arm())
    uint32_t fd_expect
    int fd_why             # the SLICE_* reason of the last arming (for tests)
    int64_t fd_deadline    # when the timer fires, CLOCK_MONOTONIC ns
    # The impossible values behind the last WAIT_CORRUPT / -1, for error messages:
    # a cursor or a slot length as it was read (once) from shared memory, and
    # the sender's write (claim) cursor it was checked against.
    uint64_t bad_cursor
    uint64_t bad_write
    uint64_t bad_length

cdef int ring_attach(ring_t *r, cw_header *hdr, uint64_t slots_offset, uint64_t capacity,
                     uint64_t message_length, int64_t spin_ns, uint32_t max_senders,
                     int fd, int sender_place, uint32_t max_receivers=*, bint bytes=*) noexcept nogil
cdef int ring_wait(ring_t *r, bint sending, int64_t deadline_ns, int64_t slice_ns) noexcept nogil
cdef int64_t ring_scan(ring_t *r) noexcept nogil
cdef int ring_resolve_hole(ring_t *r) noexcept nogil
cdef int64_t ring_available_now(ring_t *r) noexcept nogil
cdef void ring_interrupt(ring_t *r, bint sending) noexcept nogil
cdef int64_t ring_depth(ring_t *r) noexcept nogil
cdef uint64_t ring_taken(ring_t *r) noexcept nogil
cdef int64_t monotonic_ns() noexcept nogil
cdef bint light_publish() noexcept nogil
cdef bint membarrier_refused() noexcept nogil
cdef bint ring_announce_sleep(uint32_t *word, bint shared, uint32_t *expect) noexcept nogil
cdef uint32_t *ring_waiting_word(ring_t *r, bint sending, bint *shared) noexcept nogil
cdef bint ring_announce(uint32_t *word, bint shared, uint32_t fd_bit, uint32_t *expect) noexcept nogil
cdef void ring_wake_fds(ring_t *r, bint senders) noexcept nogil
cdef void ring_wake_now(ring_t *r, uint32_t *word, int count, bint senders) noexcept nogil
cdef void ring_wake_senders_of(cw_header *hdr, int fd, uint32_t max_senders) noexcept nogil
cdef int ring_fd_open(ring_t *r, bint sending) noexcept nogil
cdef int64_t ring_fd_arm(ring_t *r, bint sending, bint drain) noexcept nogil
cdef void ring_fd_disarm(ring_t *r, bint sending) noexcept nogil
cdef void ring_fd_drain(ring_t *r) noexcept nogil
cdef void ring_fd_poke(ring_t *r) noexcept nogil
cdef void ring_fd_close(ring_t *r) noexcept nogil
cdef int64_t ring_wait_slice_ns(ring_t *r, bint sending, bint fenced, int *why) noexcept nogil
cdef int ring_attach_groups(ring_t *r, uint32_t max_receivers, bint member, uint32_t group_index,
                            uint64_t group_tag, uint32_t place_index) noexcept nogil
cdef int64_t ring_groups_bound(ring_t *r) noexcept nogil
cdef uint64_t ring_groups_floor(ring_t *r) noexcept nogil
cdef int64_t ring_group_claim(ring_t *r) noexcept nogil
cdef int ring_group_detect(ring_t *r) noexcept nogil
cdef int ring_groups_release_dead(ring_t *r) noexcept nogil
cdef int ring_groups_release_dead_now(ring_t *r) noexcept nogil
cdef uint64_t groups_min(cw_header *hdr, char *rplaces, char *gtable, uint32_t max_receivers,
                         bint *any) noexcept nogil
cdef uint64_t group_position(char *rplaces, uint32_t max_receivers, cw_group *g, uint64_t tag) noexcept nogil
cdef int group_remove(cw_header *hdr, int fd, uint32_t max_senders, uint32_t max_receivers,
                      uint32_t gi, uint64_t tag, int own_place, int64_t *live_pid) noexcept nogil
cdef int group_resolve_lock(cw_group *g, uint64_t tag, cw_place *q, uint32_t q_index) noexcept nogil
cdef int64_t ring_bytes_room(ring_t *r) noexcept nogil
cdef int64_t ring_bytes_group_span(ring_t *r, uint64_t n, uint64_t w, bint shared) noexcept nogil
cdef int64_t ring_bytes_many_claim(ring_t *r) noexcept nogil
cdef int64_t ring_bytes_take_bit(ring_t *r, int upto) noexcept nogil
cdef int64_t ring_bytes_claim_held(ring_t *r, uint64_t rec, bint commit) noexcept nogil
cdef void ring_bytes_claim_step(ring_t *r, int step) noexcept nogil
cdef void ring_bytes_commit_step(ring_t *r, uint32_t length, int step) noexcept nogil
cdef int64_t ring_bytes_many_look(ring_t *r) noexcept nogil
cdef bint ring_bytes_owner_gone(ring_t *r) noexcept nogil
cdef void ring_bytes_many_commit(ring_t *r, uint32_t length) noexcept nogil
cdef int64_t ring_bytes_many_scan(ring_t *r) noexcept nogil
cdef int ring_bytes_many_resolve(ring_t *r) noexcept nogil
cdef void ring_bytes_zero(ring_t *r) noexcept nogil
cdef int ring_bytes_adopt(ring_t *r) noexcept nogil
cdef void ring_bytes_adopted(ring_t *r) noexcept nogil
cdef uint64_t ring_bytes_many_published(ring_t *r) noexcept nogil
cdef int64_t ring_bytes_claim_any(ring_t *r) noexcept nogil
cdef int64_t ring_bytes_peek_any(ring_t *r) noexcept nogil
cdef Py_ssize_t ring_write_records_bytes(ring_t *r, const char *src, Py_ssize_t stride, Py_ssize_t count, uint32_t size, int64_t *claimed) noexcept nogil
cdef Py_ssize_t ring_read_records_bytes(ring_t *r, char *dst, Py_ssize_t stride, Py_ssize_t count, uint32_t size) noexcept nogil


# Why a many-senders byte ring's step returned -1 (ring_t.corrupt_why).
cdef enum:
    CORRUPT_RECORD = 1    # a record header: at bad_cursor, length bad_length, kind word bad_write
    CORRUPT_CLAIM = 2     # the claim word bad_write gives cursor bad_cursor, over a ring past read
    CORRUPT_OWNER = 3     # the claim word bad_write names an owner (bad_length) no sender can be
    CORRUPT_HOLE = 4      # the hole at bad_cursor (claim cursor bad_write) is in no claim
    CORRUPT_TWO = 5       # two claims cover the hole at bad_cursor, ending at bad_write and bad_length
    CORRUPT_DEAD = 6      # the dead claim at bad_cursor ends at bad_write, past the claim cursor bad_length
    CORRUPT_INTENT = 7    # this sender's place held an impossible intent: bad_cursor + 1, bad_length bytes
    CORRUPT_DEAD_PLACE = 8  # this sender's place held an impossible dead claim: bad_cursor + 1, bad_length
                          # bytes, not whole before the place's intent at bad_write
    CORRUPT_PAIR = 10     # sender place bad_length's claim at bad_cursor covering the read cursor has
                          # bad_write bytes: unaligned, shorter than a header or longer than the ring
    CORRUPT_READ = 11     # the read cursor bad_cursor: unaligned, or past (or a ring behind) the claim
                          # cursor bad_write
    CORRUPT_RELEASE = 9   # the receiver place records a release to bad_cursor, past the claim cursor
                          # bad_write or unaligned
    CORRUPT_CLAIM_END = 12  # a group's position bad_cursor is the ring's last 8 bytes and the claim
                          # cursor bad_write 8 bytes on: no claim ends there


# ---------------------------------------------------------------- slots

cdef inline char *ring_slot(ring_t *r, uint64_t index) noexcept nogil:
    """Slot index (its header), by the layout's record descriptor (layout.h)."""
    return cw_fixed_slot(r.slots, r.slot_size, index)

cdef inline char *ring_payload(ring_t *r, uint64_t index) noexcept nogil:
    """The payload of slot index."""
    return cw_fixed_payload(r.slots, r.slot_size, r.slot_header, index)


# ---------------------------------------------------------------- sender side

cdef inline void ring_wake_word(ring_t *r, uint32_t *word, int count, bint senders) noexcept nogil:
    """After the publish order: if word says someone waits, clear it and wake them: FUTEX_WAKE
    (count sleepers) for a sleeper's value, wake bytes to the senders' (senders) or the
    receivers' descriptors for CW_WAIT_FD (docs/protocol.md, send step 4).  No sleeper: one
    load of a line nobody writes; the wake itself is out of line (ring_wake_now()), so that the
    calls that inline this keep few registers."""
    if cw_load_relaxed_u32(word):
        ring_wake_now(r, word, count, senders)


cdef inline void ring_publish_order(ring_t *r) noexcept nogil:
    """Between storing a cursor and loading the other end's waiting word (the wake-up
    handshake, docs/protocol.md): a full fence; or, in a process registered for
    membarrier's global expedited barriers, a compiler barrier only: an end about to
    sleep has the kernel run a full barrier on every CPU of a registered process before
    it looks again (ring_announce_sleep()), which orders our store and load as the fence
    would."""
    if r.light:
        cw_compiler_fence()
    else:
        cw_fence_seq_cst()


cdef inline uint64_t ring_read_floor(ring_t *r) noexcept nogil:
    """Many senders: the first message not yet taken by every receiver (acquire: they have
    finished with the slots before it).  With groups, the slowest group's."""
    if r.groups:
        return ring_groups_floor(r)
    return cw_load_acquire_u64(&r.hdr.read_cursor)

cdef inline int64_t ring_unclaimed(ring_t *r) noexcept nogil:
    """Many senders: the slots no sender has claimed, from a consistent look at both cursors;
    -1 if they are impossible."""
    cdef uint64_t c = cw_load_acquire_u64(&r.hdr.write_cursor)
    cdef uint64_t rd, again
    cdef int tries
    for tries in range(64):
        # Acquire keeps the three loads in order.  The claim cursor unchanged
        # around the load of read_cursor: that was the claim cursor when read
        # was loaded, so read <= claim <= read + capacity in a sound channel.
        rd = ring_read_floor(r)
        if r.groups and r.bound_stale:
            # The bound could not be read (a group creation is under way): no room known,
            # and rd is an older bound that the claim cursor may have passed since.
            return 0
        again = cw_load_acquire_u64(&r.hdr.write_cursor)
        if again == c:
            if c - rd > r.capacity:
                r.bad_cursor = rd
                r.bad_write = c
                return -1
            r.read_cache = rd
            return <int64_t>(r.capacity - (c - rd))
        c = again
    # Other senders keep claiming: there was room a moment ago; ring_claim_many() decides.
    return 1

cdef inline int64_t ring_refresh_free(ring_t *r) noexcept nogil:
    """Reload read_cursor; return the free slots, or -1 if the cursors are impossible.  A byte
    channel: 1 if its next record fits (ring_bytes_room()), else 0."""
    if r.bytes:
        if r.many:
            return ring_bytes_many_look(r)
        return ring_bytes_room(r)
    if r.many:
        return ring_unclaimed(r)
    cdef int64_t free
    if r.groups:
        free = ring_groups_bound(r)
        # A dead non-durable group holding the sender back goes (step R), at most once a
        # millisecond per sender, whatever call found the ring full.
        if free == 0 and not r.bound_stale and ring_groups_release_dead_now(r):
            free = ring_groups_bound(r)
        return free
    # Acquire pairs with the receiver's release of read_cursor: once we see
    # it, the receiver has finished reading every slot before it.
    cdef uint64_t rd = cw_load_acquire_u64(&r.hdr.read_cursor)
    # Unsigned: also catches rd > write.
    if r.write - rd > r.capacity:
        r.bad_cursor = rd
        r.bad_write = r.write
        return -1
    r.read_cache = rd
    return <int64_t>(r.capacity - (r.write - rd))

cdef inline bint ring_room_cached(ring_t *r) noexcept nogil:
    """One sender: whether the cached read cursor says a slot is free (no shared load)."""
    return r.write - r.read_cache < r.capacity

cdef inline int64_t ring_free(ring_t *r) noexcept nogil:
    """Free slots, from the cached read cursor while it says there are some (one sender)."""
    cdef uint64_t used = r.write - r.read_cache
    if used < r.capacity:
        return <int64_t>(r.capacity - used)
    return ring_refresh_free(r)

cdef inline uint64_t ring_claim_look(ring_t *r) noexcept nogil:
    """Many senders, step S1: the claim cursor, to claim from."""
    # Relaxed: the compare-and-swap of S3 checks it.
    return cw_load_relaxed_u64(&r.hdr.write_cursor)

cdef inline void ring_claim_intent(ring_t *r, uint64_t c) noexcept nogil:
    """Many senders, step S2: say in this sender's place that it is claiming sequence c."""
    # Relaxed: the compare-and-swap of S3 (acq_rel) orders it before the claim.
    cw_store_relaxed_u64(r.intent, c + 1)

cdef inline bint ring_claim_cas(ring_t *r, uint64_t *c) noexcept nogil:
    """Many senders, step S3: move the claim cursor from c[0] to c[0] + 1.  On success this
    sender owns sequence c[0] (r.write, r.write_index); on failure c[0] is the cursor now."""
    cdef uint64_t mine = c[0]
    cdef uint64_t ahead
    # Acq_rel: the release orders S2's intent before the claim for a receiver
    # that acquires the claim cursor (R4).
    if not cw_cas_acq_rel_u64(&r.hdr.write_cursor, c, mine + 1):
        return False
    # The index of mine, from the last claim's without a division while it is near.
    ahead = mine - r.write
    if ahead < r.capacity:
        ahead += r.write_index
        r.write_index = ahead - r.capacity if ahead >= r.capacity else ahead
    else:
        r.write_index = mine % r.capacity
    r.write = mine
    return True

cdef inline int64_t ring_claim_many(ring_t *r) noexcept nogil:
    """Many senders, steps S1-S3: claim the next sequence for this sender.

    1 when claimed (its slot is r.write_index); 0 when the ring is full, with
    this sender's intent withdrawn (so it may wait); -1 if the cursors are
    impossible.
    """
    cdef uint64_t c = ring_claim_look(r)
    cdef uint64_t rd
    while True:
        if c - r.read_cache >= r.capacity:
            # Acquire pairs with the receiver's release of read_cursor.
            rd = ring_read_floor(r)
            if r.groups and r.bound_stale:
                # No bound known (a group creation is under way); rd is an older one,
                # which the claim cursor may have passed since: full for now.
                cw_store_release_u64(r.intent, 0)
                return 0
            if rd > c:
                # c is old: others claimed, published and were read since.  A
                # claim cursor loaded now is at least rd, or the cursors are impossible.
                c = cw_load_acquire_u64(&r.hdr.write_cursor)
                if rd > c:
                    cw_store_release_u64(r.intent, 0)
                    r.bad_cursor = rd
                    r.bad_write = c
                    return -1
                continue
            # c was loaded before rd: c <= rd + capacity in a sound channel.
            if c - rd > r.capacity:
                cw_store_release_u64(r.intent, 0)
                r.bad_cursor = rd
                r.bad_write = c
                return -1
            r.read_cache = rd
            if c - rd == r.capacity:
                # A dead non-durable group holding the senders back goes (step R), at
                # most once a millisecond per sender, whatever call found the ring full.
                if r.groups and ring_groups_release_dead_now(r):
                    c = cw_load_relaxed_u64(&r.hdr.write_cursor)
                    continue
                # Full.  A stale intent left while waiting for room would make the
                # receiver wait for this sender while this sender waits for it.
                cw_store_release_u64(r.intent, 0)
                return 0
        ring_claim_intent(r, c)                # S2
        if ring_claim_cas(r, &c):              # S3
            return 1
        # Another sender claimed c first; c is the cursor now: try there.

cdef inline int64_t ring_fixed_claim(ring_t *r) noexcept nogil:
    """ring_claim() of a slot channel, for callers that chose the record kind once."""
    if r.many:
        return ring_claim_many(r)
    return ring_free(r)

cdef inline int64_t ring_claim(ring_t *r) noexcept nogil:
    """Slots the caller may fill from the write cursor on before asking again: the free slots
    (one sender), or 1 after claiming one (many senders; a byte channel: room for the record of
    r.want_bytes); 0 when full, -1 if impossible."""
    if r.bytes:
        return ring_bytes_claim(r)
    return ring_fixed_claim(r)

cdef inline uint64_t ring_published(ring_t *r) noexcept nogil:
    """One sender: messages it ever published (its write cursor).  Many senders: sequences
    ever claimed by any of them (the claim cursor), a few perhaps still being filled."""
    if r.many:
        if r.bytes:
            return ring_bytes_many_published(r)
        return cw_load_relaxed_u64(&r.hdr.write_cursor)
    return r.write

cdef inline char *ring_write_slot(ring_t *r) noexcept nogil:
    """Payload of the slot at the write cursor (caller checked ring_claim() > 0)."""
    return ring_payload(r, r.write_index)

cdef inline void ring_commit_length(ring_t *r, uint32_t length) noexcept nogil:
    """Write the length of the message in the slot at the write cursor (step S4's end)."""
    (<cw_slot_header *>ring_slot(r, r.write_index)).length = length

cdef inline void ring_commit_seq(ring_t *r) noexcept nogil:
    """Many senders, step S5: publish the claimed slot."""
    # Release publishes the payload and length written before it; pairs with
    # the receiver's acquire load of seq (R1, R5).
    cw_store_release_u64(&(<cw_many_slot_header *>ring_slot(r, r.write_index)).seq,
                         r.write + 1)

cdef inline void ring_commit_clear(ring_t *r) noexcept nogil:
    """Many senders, step S6: withdraw the intent of the published claim."""
    # Release: whoever sees the intent gone sees the message published (S5).
    cw_store_release_u64(r.intent, 0)

cdef inline int64_t ring_bytes_claim(ring_t *r) noexcept nogil:
    """Byte channels, steps B1-B2 (ring_bytes_claim_any()), with the common case inline: one
    sender, the record fits before the ring's end and the cached read cursor says it has room."""
    cdef uint64_t rec
    if not r.many:
        rec = cw_var_record_size(r.want_bytes)
        if r.write_index + rec <= r.capacity and r.capacity - (r.write + r.pad - r.read_cache) >= rec:
            return 1
    return ring_bytes_claim_any(r)

cdef inline int64_t ring_bytes_peek(ring_t *r) noexcept nogil:
    """Byte channels, step B6 (ring_bytes_peek_any()), with the common case inline: one sender,
    a message record first in line.  Its header is read once; if that value is not a message
    record that fits what is published, ring_bytes_peek_any() reads and judges it alone."""
    cdef uint64_t avail = r.write_cache - r.read
    cdef uint64_t word, length, rec
    if not r.many and avail != 0:
        word = cw_load_relaxed_u64(<uint64_t *>cw_var_record(r.slots, r.read_index))
        length = word & 0xFFFFFFFFU
        if word >> 32 == CW_VAR_MESSAGE and length <= r.message_length:
            rec = cw_var_record_size(length)
            if rec <= avail and r.read_index + rec <= r.capacity:
                r.rec = rec
                return <int64_t>length
    return ring_bytes_peek_any(r)

cdef inline void ring_bytes_commit(ring_t *r, uint32_t length) noexcept nogil:
    """Byte channels, step B3's end: the record at the write index (its length written) is a
    message; step past it and the padding before it, if any (published by ring_publish())."""
    cdef uint64_t rec = cw_var_record_size(length)
    (<cw_var_header *>cw_var_record(r.slots, r.write_index)).kind = CW_VAR_MESSAGE
    r.write += r.pad + rec
    r.pad = 0
    r.write_index += rec
    if r.write_index == r.capacity:
        r.write_index = 0

cdef inline void ring_fixed_commit(ring_t *r, uint32_t length) noexcept nogil:
    """ring_commit() of a slot channel, for callers that chose the record kind once."""
    ring_commit_length(r, length)
    if r.many:
        ring_commit_seq(r)
        ring_commit_clear(r)
        return
    r.write += 1
    r.write_index += 1
    if r.write_index == r.capacity:
        r.write_index = 0

cdef inline void ring_commit(ring_t *r, uint32_t length) noexcept nogil:
    """Finish the slot (a byte channel: the record) at the write cursor.

    One sender: invisible to the receiver until ring_publish().  Many senders:
    visible at once (S5), then the intent is cleared (S6); ring_publish() only
    wakes the receiver.
    """
    if r.bytes:
        if r.many:
            ring_bytes_many_commit(r, length)
            return
        ring_commit_length(r, length)
        ring_bytes_commit(r, length)
        return
    ring_fixed_commit(r, length)

cdef inline void ring_commit_void(ring_t *r) noexcept nogil:
    """Many senders: publish the claimed slot as holding no message (its message could not
    be built); the receiver steps over it."""
    ring_commit(r, CW_VOID_LENGTH)

cdef inline void ring_publish(ring_t *r) noexcept nogil:
    """Make every committed slot visible with one store (one sender); wake a sleeping receiver."""
    # Release publishes the slot payloads and lengths written before it;
    # pairs with the receiver's acquire load of write_cursor.
    if not r.many:
        cw_store_release_u64(&r.hdr.write_cursor, r.write)
    # Orders that store (many senders: the seq stores) before the load of
    # receiver_waiting below; pairs with the receiver's barrier between setting
    # receiver_waiting and looking again, so one of the two sees the other.
    ring_publish_order(r)
    # The members of receiver groups share the word: wake them all.
    ring_wake_word(r, &r.hdr.receiver_waiting, r.receiver_wake_count, False)


# -------------------------------------------------------------- receiver side

cdef inline uint64_t ring_read_position(ring_t *r) noexcept nogil:
    """The receiver's next cursor to take: where ring_rewind() goes back to, and what its
    errors name."""
    return r.read

cdef inline int64_t ring_available(ring_t *r) noexcept nogil:
    """Messages waiting, reloading write_cursor only when the cached copy is used up; -1 if impossible.

    Many senders: the published messages in a row from the read cursor
    (ring_scan()); 0 at a hole too (r.hole), which ring_wait() and
    ring_available_now() resolve.  Call it only with every consumed message
    released (or rewound): a scan may step over void slots and release them.
    """
    cdef uint64_t w = r.write_cache
    if w != r.read:
        return <int64_t>(w - r.read)
    if r.groups:
        return ring_group_claim(r)
    if r.many:
        if r.bytes:
            return ring_bytes_many_scan(r)
        return ring_scan(r)
    return ring_published_since(r)

cdef inline int64_t ring_available_one(ring_t *r) noexcept nogil:
    """ring_available() of a ring of one sender and no groups (the Cython API's short way):
    no call in it, so that its callers keep few registers."""
    cdef uint64_t w = r.write_cache
    if w != r.read:
        return <int64_t>(w - r.read)
    return ring_published_since(r)

cdef inline int64_t ring_published_since(ring_t *r) noexcept nogil:
    """One sender, no groups: reload the write cursor; the messages published from the read
    cursor on, or -1 if impossible."""
    # Acquire pairs with the sender's release in ring_publish(): the slots
    # before w are fully written once we see w.
    cdef uint64_t w = cw_load_acquire_u64(&r.hdr.write_cursor)
    # A byte channel's cursors are multiples of 8 (B5): checked before the cache takes it
    # (align_mask is 7 on a byte channel, 0 on a slot channel).
    if w - r.read > r.capacity or (w & r.align_mask) != 0:
        r.bad_cursor = w
        return -1
    r.write_cache = w
    return <int64_t>(w - r.read)

cdef inline bint ring_more(ring_t *r) noexcept nogil:
    """Whether bytes (a byte channel) or messages known to be published lie past the read
    cursor: a batch of a byte channel takes records while this holds."""
    return r.read != r.write_cache

cdef inline int64_t ring_read_length(ring_t *r) noexcept nogil:
    """Length of the message at the read cursor, read once and checked; -1 if impossible."""
    cdef uint32_t n = cw_load_relaxed_u32(
        &(<cw_slot_header *>ring_slot(r, r.read_index)).length)
    if n > r.message_length:
        r.bad_length = n
        return -1
    return n

cdef inline char *ring_read_slot(ring_t *r) noexcept nogil:
    return ring_payload(r, r.read_index)

cdef inline void ring_fixed_consume(ring_t *r) noexcept nogil:
    """ring_consume() of a slot channel, for callers that chose the record kind once."""
    r.read += 1
    r.read_index += 1
    if r.read_index == r.capacity:
        r.read_index = 0

cdef inline void ring_consume(ring_t *r) noexcept nogil:
    """Step past the message at the read cursor; the sender may reuse it after ring_release()."""
    if r.bytes:
        # B7: the record ring_bytes_peek() checked.
        r.read += r.rec
        r.read_index += r.rec
        if r.read_index == r.capacity:
            r.read_index = 0
        return
    ring_fixed_consume(r)

cdef inline void ring_rewind(ring_t *r, uint64_t read) noexcept nogil:
    """Un-consume back to cursor read (taken before, not yet released): those messages stay first in line."""
    r.read = read
    r.read_index = read % r.capacity

cdef inline Py_ssize_t ring_lend_run(ring_t *r, Py_ssize_t k, uint32_t record_size,
                                     uint32_t *lengths) noexcept nogil:
    """Check the next k available messages (k >= 1) for a borrow, stopping at the ring's end.

    Each slot length is read once into lengths[i] and checked (at most
    message_length; exactly record_size if that is not 0).  Returns how many
    form the run; 0 if the first is impossible (its length in r.bad_length).
    """
    cdef Py_ssize_t i
    cdef uint32_t n
    if <uint64_t>k > r.capacity - r.read_index:
        k = <Py_ssize_t>(r.capacity - r.read_index)
    for i in range(k):
        n = cw_load_relaxed_u32(&(<cw_slot_header *>ring_slot(r, r.read_index + i)).length)
        if n > r.message_length or (record_size != 0 and n != record_size):
            r.bad_length = n
            return i
        lengths[i] = n
    return k

cdef inline uint64_t ring_lend_stride(ring_t *r) noexcept nogil:
    """Bytes from one lent payload to the next (the layout's slot size)."""
    return r.slot_size

cdef inline uint64_t ring_lend_span(ring_t *r, uint64_t k) noexcept nogil:
    """Bytes from the first of k lent payloads (k >= 1) to the end of the last one's room."""
    return cw_fixed_slot_offset(r.slot_size, k - 1) + r.message_length

cdef inline uint64_t ring_header_bytes(ring_t *r) noexcept nogil:
    """Bytes of a record's header before its payload (a byte channel: 8, or 16 with many
    senders)."""
    return r.slot_header

cdef inline uint64_t ring_read_offset(ring_t *r) noexcept nogil:
    """Where in the channel file the payload at the read cursor starts."""
    return r.slots_offset + cw_fixed_slot_offset(r.slot_size, r.read_index) + r.slot_header

cdef inline void ring_consume_run(ring_t *r, uint64_t k) noexcept nogil:
    """Step past k messages lent by ring_lend_run(); the sender may reuse them after ring_release()."""
    r.read += k
    r.read_index += k
    if r.read_index == r.capacity:
        r.read_index = 0

cdef inline void ring_release(ring_t *r) noexcept nogil:
    """Hand every consumed slot back to the sender with one store; wake a sleeping sender."""
    # Release: our reads of the consumed slots happen before the sender
    # can see them free; pairs with the sender's acquire of read_cursor
    # (groups: of hold_start, in ring_groups_bound()).
    if r.groups:
        # Step T: the claim's first message not taken, + 1; 0 once all are taken.
        cw_store_release_u64(&r.place.hold_start, r.read + 1 if r.read != r.write_cache else 0)
    else:
        if r.zeroing:
            # A byte ring of many senders, R5: the bytes consumed are zeroed first, the release
            # recorded before (a receiver that dies zeroing leaves no bytes the next one could
            # neither read nor step over: it finishes the release, ring_attach()).
            if r.read != r.released:
                cw_store_release_u64(r.release_to, r.read + 1)
            ring_bytes_zero(r)
        cw_store_release_u64(&r.hdr.read_cursor, r.read)
    # Same handshake as ring_publish(), mirrored.
    ring_publish_order(r)
    # Many senders share the word: wake them all.
    ring_wake_word(r, &r.hdr.sender_waiting, r.wake_count, True)


# ----------------------------------------------------------- typed record runs

cdef enum:
    PREFETCH_SLOTS = 8

cdef inline void _copy_record(char *dst, const char *src, size_t size) noexcept nogil:
    # Constant sizes let the compiler emit a few moves instead of a call.
    if size == 8:
        memcpy(dst, src, 8)
    elif size == 16:
        memcpy(dst, src, 16)
    elif size == 32:
        memcpy(dst, src, 32)
    elif size == 64:
        memcpy(dst, src, 64)
    else:
        memcpy(dst, src, size)

cdef inline void ring_write_records(ring_t *r, const char *src, Py_ssize_t stride,
                                    Py_ssize_t count, uint32_t size) noexcept nogil:
    """Commit count records of size bytes taken every stride bytes from src (caller checked room)."""
    cdef Py_ssize_t i
    cdef char *slot
    cdef uint64_t ahead
    for i in range(count):
        slot = ring_slot(r, r.write_index)
        # The slots were last read by the receiver's core: fetch lines a few
        # slots ahead for writing, so those transfers overlap the copies.
        ahead = r.write_index + PREFETCH_SLOTS
        if ahead >= r.capacity:
            ahead %= r.capacity
        cw_prefetch_write(ring_slot(r, ahead))
        (<cw_slot_header *>slot).length = size
        _copy_record(slot + r.slot_header, src + i * stride, size)
        r.write += 1
        r.write_index += 1
        if r.write_index == r.capacity:
            r.write_index = 0

cdef inline Py_ssize_t ring_read_records(ring_t *r, char *dst, Py_ssize_t stride,
                                         Py_ssize_t count, uint32_t size) noexcept nogil:
    """Consume up to count records of exactly size bytes into dst every stride bytes (caller
    saw count available).  Stops before a slot whose length is not size; returns how many."""
    cdef Py_ssize_t i
    cdef const char *slot
    cdef uint32_t n
    for i in range(count):
        slot = ring_slot(r, r.read_index)
        n = cw_load_relaxed_u32(&(<cw_slot_header *>slot).length)
        if n != size:
            r.bad_length = n
            return i
        _copy_record(dst + i * stride, slot + r.slot_header, size)
        r.read += 1
        r.read_index += 1
        if r.read_index == r.capacity:
            r.read_index = 0
    return count

cdef inline Py_ssize_t ring_write_records_many(ring_t *r, const char *src, Py_ssize_t stride,
                                         Py_ssize_t count, uint32_t size, int64_t *claimed) noexcept nogil:
    """Many senders: claim and commit up to count records, one claim each; return how many.
    claimed[0] is the last claim's result: 1, or 0 (full) / -1 (impossible) when it stopped early."""
    cdef Py_ssize_t i
    for i in range(count):
        claimed[0] = ring_claim_many(r)
        if claimed[0] <= 0:
            return i
        _copy_record(ring_write_slot(r), src + i * stride, size)
        ring_commit(r, size)
    return count


# --------------------------------------------------------------------- calls
# The steps of every send and receive call, composed once: the Python ends
# (_channel) and the Cython API (api) both call these, so a change to how a
# message is claimed, waited for, checked or taken reaches both.  Each returns
# a WAIT_* result: WAIT_READY, or why it stopped: WAIT_TIMEOUT, WAIT_CORRUPT
# (the values read are in r.bad_*), WAIT_STOPPED (close() from another
# thread), WAIT_AGAIN (a slice of sleep ended) or WAIT_INTERRUPTED (a signal
# interrupted the sleep); after the last two the caller checks signals as it
# can and calls again.  slice_ns is ring_wait()'s: SLEEP_SLICE_NS for the
# Python ends, 0 (sleep until woken or the deadline) for the Cython API.

cdef inline int ring_send_wait(ring_t *r, int64_t deadline_ns, int64_t slice_ns, int64_t *free) noexcept nogil:
    """Until this sender may fill the slot at its write cursor: WAIT_READY with free[0] the
    slots ring_claim() gave (many senders: 1, claimed; fill and commit it), or why not."""
    cdef int64_t n
    cdef int st
    while True:
        n = ring_claim(r)
        if n > 0:
            free[0] = n
            return WAIT_READY
        if n < 0:
            return WAIT_CORRUPT
        st = ring_wait(r, True, deadline_ns, slice_ns)
        if st != WAIT_READY:
            return st


cdef inline int ring_send_records(ring_t *r, const char *src, Py_ssize_t stride, Py_ssize_t count,
                                  uint32_t size, Py_ssize_t chunk, int64_t deadline_ns,
                                  int64_t slice_ns, Py_ssize_t *done) noexcept nogil:
    """Send records done[0] .. count - 1, each size bytes taken every stride bytes from src;
    publish (and wake the receiver) at least every chunk records.  done[0] counts the records
    sent.  WAIT_READY once all are, else why it stopped (WAIT_STOPPED also when close() came
    while it never had to wait)."""
    cdef Py_ssize_t i = done[0], k
    cdef int64_t free, claimed = 1
    cdef int st = WAIT_READY
    while i < count:
        if r.stop:
            st = WAIT_STOPPED
            break
        if r.many or r.bytes:
            # One claim per record; a wake-up per chunk.
            if r.bytes:
                k = ring_write_records_bytes(r, src + i * stride, stride, min(count - i, chunk), size, &claimed)
            else:
                k = ring_write_records_many(r, src + i * stride, stride, min(count - i, chunk), size, &claimed)
            i += k
            if k:
                ring_publish(r)
            if claimed < 0:
                st = WAIT_CORRUPT
                break
            if claimed == 0:
                st = ring_wait(r, True, deadline_ns, slice_ns)
                if st != WAIT_READY:
                    break
            continue
        free = ring_claim(r)
        if free < 0:
            st = WAIT_CORRUPT
            break
        if free == 0:
            st = ring_wait(r, True, deadline_ns, slice_ns)
            if st != WAIT_READY:
                break
            continue
        k = count - i
        if k > free:
            k = free
        if k > chunk:
            k = chunk
        ring_write_records(r, src + i * stride, stride, k, size)
        ring_publish(r)
        i += k
    done[0] = i
    return st


cdef inline int ring_recv_wait(ring_t *r, int64_t deadline_ns, int64_t slice_ns, int64_t *avail) noexcept nogil:
    """Until a message is first in line: WAIT_READY with avail[0] messages waiting, or why not."""
    cdef int64_t n
    cdef int st
    while True:
        n = ring_available(r)
        if n > 0:
            avail[0] = n
            return WAIT_READY
        if n < 0:
            return WAIT_CORRUPT
        st = ring_wait(r, False, deadline_ns, slice_ns)
        if st != WAIT_READY:
            return st


cdef inline int64_t ring_fixed_peek(ring_t *r, uint32_t record_size) noexcept nogil:
    """ring_recv_peek() of a slot channel, for callers that chose the record kind once."""
    cdef int64_t n = ring_read_length(r)
    if n >= 0 and record_size != 0 and n != record_size:
        r.bad_length = <uint64_t>n
        return -1
    return n
cdef inline int64_t ring_recv_peek(ring_t *r, uint32_t record_size) noexcept nogil:
    """The length of the message first in line (the caller saw one available), read once and
    checked: at most message_length, and exactly record_size unless that is 0.  -1 if it is
    impossible (the length read is in r.bad_length).  Its payload is at ring_read_slot().
    A byte channel: ring_bytes_peek()."""
    if r.bytes:
        return ring_bytes_peek(r)
    return ring_fixed_peek(r, record_size)



cdef inline void ring_recv_done(ring_t *r) noexcept nogil:
    """Take the message first in line: step past it and hand its slot back to the sender."""
    ring_consume(r)
    ring_release(r)


cdef inline Py_ssize_t ring_recv_records(ring_t *r, char *dst, Py_ssize_t stride, Py_ssize_t count,
                                         uint32_t size) noexcept nogil:
    """Take up to count waiting records (the caller saw count available) of exactly size bytes
    into dst every stride bytes, and hand their slots back at once.  Stops before a slot of
    another length; returns how many were taken (0: the first is not size bytes long, its
    length in r.bad_length)."""
    cdef Py_ssize_t got
    if r.bytes:
        got = ring_read_records_bytes(r, dst, stride, count, size)
    else:
        got = ring_read_records(r, dst, stride, count, size)
    if got:
        ring_release(r)
    return got
