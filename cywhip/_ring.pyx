# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The protocols over a channel's slots, the out-of-line half (the inline half is in _ring.pxd).

One compiled module, one file per protocol (included textually, as uvloop does):

- ring/attach.pxi: attaching an end (ring_attach), depth and taken, which any thread may ask;
- ring/wait.pxi: waiting and waking: membarrier and the publish mode, waiting words and
  tokens, sleep slices, ring_wait(), ring_interrupt();
- ring/many.pxi: many senders, the receiver's side: the scan, holes and void slots;
- ring/groups.pxi: receiver groups: claim, detect, adopt, remove, the floor and the senders' bound;
- ring/bytes.pxi: byte channels: room and claim (padding at the ring's end), the record check;
- ring/bytes_many.pxi: byte channels of many senders: claims under the claim bit, the scan,
  dead claims, zeroing before a release.

The layout of the slots (slot size, slot address) is layout.h's (c_layout.pxd).
See docs/protocol.md for the numbered steps.
"""
from libc.errno cimport EINTR, EINVAL
from posix.stat cimport struct_stat, fstat
from posix.unistd cimport close
from libc.stdint cimport uint32_t, uint64_t, int64_t
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from posix.unistd cimport getpid
from cywhip.includes.c_atomics cimport (
    cw_load_relaxed_u64, cw_load_acquire_u64, cw_store_relaxed_u32, cw_store_release_u64,
    cw_store_relaxed_u64, cw_cas_acq_rel_u64, cw_fetch_add_relaxed_u64, cw_load_relaxed_u32,
    cw_load_acquire_u32, cw_store_release_u32, cw_exchange_u32, cw_store_relaxed_i64, cw_load_relaxed_i64,
    cw_fence_seq_cst, cw_cpu_relax, cw_cas_u32,
)
from cywhip.includes.c_futex cimport cw_futex_wait, cw_futex_wake
from cywhip.includes.c_fdwake cimport (
    sockaddr_un, socklen_t, CW_WAKE_PREFIX_MAX, cw_fdwake_prefix, cw_fdwake_addr, cw_fdwake_send,
    cw_fdwake_bind, cw_fdwake_epoll, cw_fdwake_swap, cw_fdwake_drain, cw_fdwake_timer_set,
    cw_fdwake_timer_clear,
)
from posix.types cimport pid_t

cdef extern from "<sys/socket.h>" nogil:
    struct sockaddr:
        pass
    int getsockname(int fd, sockaddr *addr, socklen_t *len)
from cywhip.includes.c_membarrier cimport cw_membarrier_register, cw_membarrier_global
from libc.stdlib cimport getenv
from cywhip.includes.c_layout cimport (
    cw_many_slot_header, cw_fixed_slot_size, CW_HEADER_SIZE, CW_PLACE_SIZE, cw_place,
    cw_place_offset, cw_slot_header_size, cw_group, cw_group_offset,
    CW_GROUP_IN_USE, CW_GROUP_DURABLE, CW_GROUPS_LOCK_BYTE, CW_VAR_HEADER_SIZE, CW_SLOT_ALIGN, CW_VAR_ALIGN_MASK,
    cw_var_header, cw_var_record, cw_var_record_size, CW_VAR_MESSAGE, CW_VAR_PADDING,
    cw_var_many_header, cw_var_header_size, cw_var_record_size_with, CW_VAR_MANY_HEADER_SIZE, CW_VAR_VOID,
    CW_VAR_KIND_MASK, CW_VAR_SLACK_SHIFT, cw_claim_word, cw_claim_owner, cw_claim_owner_of,
    cw_claim_owner_place, cw_claim_position,
)
from libc.string cimport memcpy, memset
from cywhip.includes.c_ofd_lock cimport cw_ofd_is_locked, cw_ofd_trylock, cw_ofd_unlock

cdef extern from "<sched.h>" nogil:
    int sched_yield()

# How long a sleep may last before the end must look again, for what no wake-up
# announces (ring_wait_slice_ns()).  A receiver waiting at a hole (a slot
# claimed by a live sender, not yet published), or a group member while
# another member holds a claim or the claim lock, sleeps at most
# HOLE_SLICE_NS: that sender's publish (that member's take) wakes it at once,
# its death cannot.  Any other sleep lasts at most IDLE_SLICE_NS.  (The caller may
# cut every sleep shorter: SLEEP_SLICE_NS in _ring.pxd for the Python ends; the
# Cython API and the asyncio face keep these.)
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
    # Any other sleep lasts at most this long: the other end's publish (take) wakes this one,
    # but an end killed between its cursor store and its wake-up leaves that wake-up unsent, and
    # only a new end on its place would send it (W3).
    IDLE_SLICE_NS = 1_000_000_000
    # A waiting end spins with a CPU pause between looks for this long; for the rest of its
    # spin_time it yields its core between looks instead.  A peer that runs at all is usually
    # seen within the pauses; when more ends run than the machine has cores (a sender and two
    # receiver groups on two cores), the yield hands the core to the peer this end waits for,
    # where a pause would hold it.  On an idle core the yield returns at once.
    SPIN_PAUSE_NS = 2_000


include "ring/attach.pxi"
include "ring/wait.pxi"
include "ring/many.pxi"
include "ring/groups.pxi"
include "ring/bytes.pxi"
include "ring/bytes_many.pxi"
