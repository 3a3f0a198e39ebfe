# cython: language_level=3
from libc.stdint cimport uint32_t, uint64_t, int64_t
from posix.stat cimport struct_stat
from cywhip.includes.c_layout cimport cw_header, cw_place, cw_group, cw_group_offset

cdef enum:
    END_SENDER = 0
    END_RECEIVER = 1

cdef class Region:
    cdef readonly int fd
    cdef cw_header *hdr
    cdef size_t size
    cdef readonly str name
    cdef readonly str path
    # Which side this end is on: END_SENDER or END_RECEIVER.
    cdef readonly int side
    cdef readonly long pid
    cdef int mode
    cdef bytes description
    cdef uint64_t type_size
    # Geometry of the places, as this end asked for it (and found it in the header).
    cdef readonly uint32_t max_senders
    cdef readonly uint32_t max_receivers
    cdef readonly uint32_t topology
    cdef readonly uint64_t slots_offset
    # What the ring holds (CW_RECORDS_*), and the channel's message_length (a byte channel's
    # end may leave it out: any_length, and the channel's own is this end's once open).
    cdef readonly uint32_t records
    cdef readonly uint64_t message_length
    cdef bint any_length
    # This end's place among those of its kind; -1 until claimed.
    cdef public int place
    # Receiver groups (topology 2): a member's group, its entry's index, durability.
    cdef readonly str group
    cdef readonly bint durable
    cdef readonly int group_index
    # The tag a member joined with (epoch << 32 | group_index + 1): its place carries it.
    cdef readonly uint64_t group_tag

    cdef void unmap(self) noexcept
    cdef bint _open_existing(self, uint64_t message_length, uint64_t capacity,
                             uint64_t type_fingerprint, uint64_t type_size, uint64_t size) except -1
    cdef bint _group_may_share(self, struct_stat st)
    cdef int _map(self, size_t size) except -1
    cdef int _check_header(self, uint64_t message_length, uint64_t capacity,
                           uint64_t type_fingerprint, uint64_t type_size,
                           uint64_t size, uint64_t st_size) except -1
    cdef int _check_types(self, cw_header *h, uint64_t message_length, uint64_t type_fingerprint,
                          str what) except -1
    cdef bint _create(self, uint64_t message_length, uint64_t capacity,
                      uint64_t type_fingerprint, uint64_t type_size, uint64_t size, int mode) except -1
    cdef int _claim_end(self, bint last_try) except -1
    cdef int _claim_member(self, bint last_try) except -1
    cdef int _find_group(self) except -1
    cdef int _take_member_place(self, int gi, bint last_try) except -1
    cdef void _leave_group(self) noexcept
    cdef bint _still_named(self) except -1
    cdef bint receiver_open(self) except -1
    cdef cw_place *_place(self, uint64_t index) noexcept
    cdef const char *lend_pages(self, uint64_t offset, size_t length, void **mapping, size_t *mapping_size) except NULL


cdef int unlend_pages(void *mapping, size_t mapping_size) noexcept


# Shared with the admin room (_admin.pyx), which reads and removes what the claims made.
cdef object _os_error(int err, str what, str path)
cdef bint _names_file(str path, int fd) except -1
cdef str _group_name(cw_group *e)
cdef bint _lock_groups(int fd, str name) except -1
cdef object groups_busy(str name)


cdef inline cw_group *_group_entry(cw_header *h, uint32_t max_senders, uint32_t max_receivers, uint32_t g) noexcept:
    return <cw_group *>((<char *>h) + cw_group_offset(max_senders, max_receivers, g))
