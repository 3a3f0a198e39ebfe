# cython: language_level=3
"""One named shared-memory file: create-or-open, check, map, claim an end's place, unlink.

Knows the header's geometry fields and the liveness fields, nothing of
messages.  Every value read from an existing file is checked before use.
Listing channels and removing them is the admin room's (_admin).
"""
import os
import secrets
import time

from libc.errno cimport errno, EEXIST, ENOENT, EAGAIN, EACCES, ELOOP, ENOSPC
from libc.stdint cimport uint64_t
from libc.string cimport memcpy
from posix.fcntl cimport open as c_open, O_RDWR, O_CREAT, O_EXCL
from posix.mman cimport (
    mmap, munmap, madvise, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_FAILED,
)
from posix.unistd cimport sysconf, _SC_PAGESIZE
from posix.stat cimport struct_stat, fstat, fchmod, S_ISREG
from posix.unistd cimport close as c_close, unlink as c_unlink, link as c_link, geteuid, getpid

from cywhip.includes.c_atomics cimport (
    cw_store_relaxed_i64, cw_load_relaxed_i64, cw_fetch_add_relaxed_u64,
    cw_load_acquire_u64, cw_load_relaxed_u64, cw_store_release_u64, cw_store_relaxed_u64,
    cw_load_acquire_u32, cw_store_release_u32, cw_fence_seq_cst, cw_load_relaxed_u32,
)
from cywhip.includes.c_layout cimport (
    cw_header, CW_HEADER_SIZE, CW_PAGE_SIZE, CW_MAGIC, CW_LAYOUT_VERSION,
    cw_fixed_slot_size, CW_MAX_MESSAGE_LENGTH,
    CW_LIFECYCLE_LOCK_BYTE, CW_TYPE_DESCRIPTION_SIZE, CW_PLACE_SIZE, CW_MAX_PLACES,
    CW_TOPOLOGY_ONE_RECEIVER, cw_place, cw_slots_offset, cw_place_offset,
    CW_TOPOLOGY_GROUPS, CW_GROUP_NAME_SIZE, CW_GROUPS_LOCK_BYTE, CW_GROUP_IN_USE, CW_GROUP_DURABLE,
    cw_group, cw_group_offset, CW_RECORDS_FIXED, CW_RECORDS_BYTES, cw_var_capacity, cw_var_max_length,
    cw_var_record_size, cw_var_record_size_with, cw_var_max_length_with, cw_var_header_size,
)
from cywhip._ring cimport groups_min, group_remove, group_resolve_lock, ring_wake_senders_of
from cywhip.includes.c_ofd_lock cimport cw_ofd_trylock, cw_ofd_unlock, cw_ofd_is_locked

from cywhip.errors import ChannelBusyError, ChannelCorruptError, ChannelMismatchError
from cywhip._types import first_difference, form_mismatch

cdef extern from "<fcntl.h>" nogil:
    enum:
        O_NOFOLLOW
        O_CLOEXEC
    int posix_fallocate(int fd, long offset, long length)

cdef extern from "<sys/mman.h>" nogil:
    enum:
        MAP_POPULATE
        MAP_ANONYMOUS
        MADV_DONTFORK

# Mapping offsets must be multiples of the kernel's page size, which is not
# 4096 everywhere (aarch64 kernels use 16 KiB or 64 KiB pages).
cdef size_t _page_size = sysconf(_SC_PAGESIZE)

SHM_DIR = "/dev/shm"
FILE_PREFIX = "cywhip."
# NAME_MAX is 255; leave room for the prefix and the temporary suffix.
MAX_NAME_BYTES = 200
# Upper bound on max_queued_messages.
MAX_CAPACITY = 1 << 40
# The largest file size (off_t is signed 64-bit).  A smaller file that does not fit
# in /dev/shm is refused when it is created, with ENOSPC.
MAX_FILE_SIZE = (1 << 63) - 1
_GLOBAL_PREFIX = "Global\\"

END_NAMES = ("sender", "receiver")
TOPOLOGY_NAMES = {CW_TOPOLOGY_ONE_RECEIVER: "one receiver", CW_TOPOLOGY_GROUPS: "receiver groups"}
# How long a join, close or removal waits for another one to finish with the groups.
_GROUPS_LOCK_WAIT = 5.0

# Region._claim_end() results.
cdef enum:
    CLAIMED = 0
    CLAIM_REPLACED = 1    # the file lost its name before this end held its byte
    CLAIM_REMOVING = 2    # the byte is held while the channel is being removed
# How often an end opens again a channel that vanished or was replaced under it,
# and how long it waits for a removal under way to finish.  A removal holds the
# bytes across one unlink; the wait is long so that a loaded machine, not a stuck
# remover, does not make an end report a busy channel.
_MAX_OPEN_ATTEMPTS = 100
_REMOVAL_WAIT = 5.0

# Test seam: tests set this to a callable(point, path) to act at a precise moment:
# "create" (a creator has built the file under its temporary name, about to link it;
# the path is the temporary's), "claim" (an end has the file open and mapped, and is
# about to lock its byte), "leave" (a group member closing has cleared its place, about
# to take the groups lock), "member" (a joining member holds the groups lock and has
# found its group, about to lock a place) and "create_group" (a join creating a group
# holds the groups lock and has made groups_gen odd, about to read where the group
# starts).  The admin room (_admin) has its own for "inspect" and "remove".
_test_hook = None


def channel_name(name):
    """Validate a channel name and return it without any ``Global\\`` prefix."""
    if not isinstance(name, str):
        raise TypeError(f"channel name must be a str, not {type(name).__name__} ({name!r})")
    if name.startswith(_GLOBAL_PREFIX):
        name = name[len(_GLOBAL_PREFIX):]
    if not name:
        raise ValueError("channel name must not be empty")
    if "/" in name or "\0" in name:
        raise ValueError(f"channel name must not contain '/' or NUL: {name!r}")
    if name in (".", ".."):
        raise ValueError(f"channel name must not be {name!r}: choose a name with other characters too")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise ValueError(f"channel name is {len(name.encode('utf-8', 'surrogateescape'))} bytes, "
                         f"the limit is {MAX_NAME_BYTES}: {name[:40]!r}...")
    return name


def channel_path(name):
    """The shared-memory file that holds channel ``name``."""
    return os.path.join(SHM_DIR, FILE_PREFIX + channel_name(name))


def slot_size_for(message_length, max_senders=1, records=CW_RECORDS_FIXED):
    """Bytes per cursor step: a slot (the layout's record descriptor, layout.h's
    cw_fixed_slot_size); 1 for a byte channel, whose cursors count bytes."""
    if records == CW_RECORDS_BYTES:
        return 1
    return cw_fixed_slot_size(message_length, max_senders)


def record_size_for(length):
    """Bytes a message of length bytes takes in a byte channel's ring: the layout's record
    descriptor (layout.h's cw_var_record_size), its header and its payload padded to 8."""
    return cw_var_record_size(length)


def slots_offset_for(max_senders=1, max_receivers=1):
    """Where the slots start: after the header page and the pages of the end places."""
    return cw_slots_offset(max_senders, max_receivers)


def file_size_for(message_length, capacity, max_senders=1, max_receivers=1, records=CW_RECORDS_FIXED):
    """Bytes of a channel's file: header, places and slots (or the byte ring), rounded up to a page."""
    size = (slots_offset_for(max_senders, max_receivers)
            + int(capacity) * slot_size_for(message_length, max_senders, records))
    return (size + CW_PAGE_SIZE - 1) // CW_PAGE_SIZE * CW_PAGE_SIZE


def _checked_file_size(message_length, capacity, max_senders=1, max_receivers=1, records=CW_RECORDS_FIXED):
    """file_size_for(), refused with a ValueError when no file can be that large."""
    size = file_size_for(message_length, capacity, max_senders, max_receivers, records)
    if size > MAX_FILE_SIZE:
        raise ValueError(
            f"{_geometry_text(message_length, capacity, records)} needs a "
            f"{size}-byte channel file, more than the largest file a process can have "
            f"({MAX_FILE_SIZE} bytes); {SHM_DIR} has {_shm_free_bytes()} bytes free")
    return size


def _geometry_text(message_length, capacity, records):
    """The sizes a channel is made of, as its ends name them."""
    if records == CW_RECORDS_BYTES:
        return f"max_queued_bytes={capacity} (message_length={message_length})"
    return f"message_length={message_length} with max_queued_messages={capacity}"


def check_byte_geometry(message_length, max_queued_bytes, max_senders=1):
    """Validate a byte channel's sizes; return (message_length or 0 for "the channel's", the
    ring's bytes).  max_queued_bytes is rounded up to a multiple of 8 (at least 64).  With
    max_senders > 1 each record's header is 16 bytes, not 8."""
    if isinstance(max_queued_bytes, bool) or not isinstance(max_queued_bytes, int):
        raise TypeError(f"max_queued_bytes must be an int, not {type(max_queued_bytes).__name__} "
                        f"({max_queued_bytes!r})")
    if not 1 <= max_queued_bytes <= MAX_CAPACITY:
        raise ValueError(f"max_queued_bytes must be between 1 and {MAX_CAPACITY}, got {max_queued_bytes}")
    capacity = cw_var_capacity(max_queued_bytes)
    header = cw_var_header_size(max_senders)
    top = cw_var_max_length_with(capacity, header)
    if message_length is None:
        message_length = 0
    else:
        if isinstance(message_length, bool) or not isinstance(message_length, int):
            raise TypeError(f"message_length must be an int, not {type(message_length).__name__} "
                            f"({message_length!r})")
        if not 1 <= message_length <= top:
            raise ValueError(
                f"message_length={message_length} does not fit a byte channel of "
                f"max_queued_bytes={max_queued_bytes}: a message may take at most half the ring "
                f"less its {header}-byte header, {top} bytes here; raise max_queued_bytes to at least "
                f"{2 * cw_var_record_size_with(message_length, header)} or leave message_length out")
    _checked_file_size(message_length, capacity, records=CW_RECORDS_BYTES)
    return int(message_length), int(capacity)


def check_geometry(message_length, max_queued_messages):
    """Validate the two sizes a channel is made of; return them as ints."""
    for what, value, top in (("message_length", message_length, CW_MAX_MESSAGE_LENGTH),
                             ("max_queued_messages", max_queued_messages, MAX_CAPACITY)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{what} must be an int, not {type(value).__name__} ({value!r})")
        if value < 1:
            raise ValueError(f"{what} must be at least 1, got {value}")
        if value > top:
            raise ValueError(f"{what} must be at most {top}, got {value}")
    _checked_file_size(message_length, max_queued_messages)
    return int(message_length), int(max_queued_messages)


def unlink(name, *, missing_ok=False):
    """Remove channel ``name``'s shared memory.

    Ends that have it open keep their mapping; a later end creates a new,
    empty channel under the name.
    """
    path = channel_path(name)
    try:
        os.unlink(path)
    except FileNotFoundError:
        if not missing_ok:
            raise FileNotFoundError(f"no channel named {name!r} ({path} does not exist)") from None


def _kind_text(records, message_length, capacity):
    """What kind of channel a header describes, as an end would ask for it."""
    if records == CW_RECORDS_BYTES:
        return f"a byte channel (max_queued_bytes={capacity}, message_length={message_length})"
    if records == CW_RECORDS_FIXED:
        return f"a slot channel (max_queued_messages={capacity}, message_length={message_length})"
    return f"an unknown kind of channel (records={records})"


cdef object _os_error(int err, str what, str path):
    return OSError(err, f"{what}: {os.strerror(err)}", path)


cdef class Region:
    """A mapped channel file with one end's lock held."""

    def __cinit__(self):
        self.fd = -1
        self.hdr = NULL
        self.size = 0

    def __dealloc__(self):
        self.unmap()

    cdef void unmap(self) noexcept:
        """Drop the mapping and the descriptor (and with it this end's lock)."""
        if self.hdr != NULL:
            munmap(<void *>self.hdr, self.size)
            self.hdr = NULL
        if self.fd >= 0:
            c_close(self.fd)
            self.fd = -1

    @staticmethod
    def open(name, uint64_t message_length, uint64_t capacity, int side, rtype=None, int mode=0o600,
             uint32_t max_senders=1, uint32_t max_receivers=1, uint32_t topology=CW_TOPOLOGY_ONE_RECEIVER,
             str group="", bint durable=True, uint32_t records=CW_RECORDS_FIXED):
        """Create or open channel ``name`` and claim a place on its ``side`` (END_SENDER or
        END_RECEIVER); return the Region.

        ``rtype`` is the RecordType of a typed end (the ObjectForm of an end of Python
        objects), None for an untyped one.
        ``max_senders``/``max_receivers`` are the numbers of places of each kind
        and ``topology`` the kind of channel: part of the geometry, which every
        end must agree on.  ``records`` is what the ring holds (CW_RECORDS_FIXED: slots;
        CW_RECORDS_BYTES: a byte ring of ``capacity`` bytes, whose ``message_length`` 0 means the
        channel's own, or the largest its ring accepts when this end creates it).  The
        channel's message_length is ``Region.message_length`` once open.
        """
        cdef Region self = Region.__new__(Region)
        for what, value in (("max_senders", max_senders), ("max_receivers", max_receivers)):
            if not 1 <= value <= CW_MAX_PLACES:
                raise ValueError(f"{what} must be between 1 and {CW_MAX_PLACES}, got {value}")
        self.max_senders = max_senders
        self.max_receivers = max_receivers
        self.topology = topology
        self.records = records
        if records == CW_RECORDS_BYTES and message_length == 0:
            # What this end creates the channel with; an existing channel's own wins.
            message_length = cw_var_max_length_with(capacity, cw_var_header_size(max_senders))
            self.any_length = True
        else:
            self.any_length = False
        self.message_length = message_length
        self.group = group
        self.durable = durable
        self.group_index = -1
        self.slots_offset = cw_slots_offset(max_senders, max_receivers)
        self.place = -1
        self.mode = mode
        self.name = channel_name(name)
        self.path = channel_path(name)
        self.side = side
        self.pid = getpid()
        cdef uint64_t type_fingerprint = 0, type_size = 0
        if rtype is not None:
            type_fingerprint = rtype.fingerprint
            type_size = rtype.size
            self.description = rtype.description.encode()[:CW_TYPE_DESCRIPTION_SIZE - 1]
        else:
            self.description = b""
        self.type_size = type_size
        cdef uint64_t size = _checked_file_size(message_length, capacity, max_senders, max_receivers, records)
        cdef int claimed
        deadline = None
        replaced = 0
        while True:
            for _ in range(8):
                if self._open_existing(message_length, capacity, type_fingerprint, type_size, size):
                    break
                if self._create(message_length, capacity, type_fingerprint, type_size, size, mode):
                    break
            else:
                raise ChannelCorruptError(f"channel {self.name!r}: {self.path} keeps appearing and vanishing")
            if _test_hook is not None:
                _test_hook("claim", self.path)
            if self.topology == CW_TOPOLOGY_GROUPS and side == END_RECEIVER:
                claimed = self._claim_member(deadline is not None and time.monotonic() >= deadline)
            else:
                claimed = self._claim_end(deadline is not None and time.monotonic() >= deadline)
            if claimed == CLAIMED:
                return self
            # The file was removed before we held our byte, or is being removed
            # now: open again, and find the channel that has the name.  A removal
            # under way is waited for until the deadline (then _claim_*() reports the
            # channel busy); only replacements count towards _MAX_OPEN_ATTEMPTS.
            if claimed == CLAIM_REMOVING:
                if deadline is None:
                    deadline = time.monotonic() + _REMOVAL_WAIT
                time.sleep(0.001)
                continue
            replaced += 1
            if replaced >= _MAX_OPEN_ATTEMPTS:
                raise ChannelCorruptError(f"channel {self.name!r}: {self.path} keeps being replaced "
                                          f"while this end opens it")

    cdef bint _open_existing(self, uint64_t message_length, uint64_t capacity,
                             uint64_t type_fingerprint, uint64_t type_size, uint64_t size) except -1:
        cdef bytes path = os.fsencode(self.path)
        cdef int fd = c_open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC)
        cdef struct_stat st
        if fd < 0:
            if errno == ENOENT:
                return False
            if errno == ELOOP:
                raise PermissionError(f"channel {self.name!r}: {self.path} is a symbolic link; refusing to open it")
            raise _os_error(errno, f"cannot open channel {self.name!r}", self.path)
        self.fd = fd
        if fstat(fd, &st) != 0:
            raise _os_error(errno, f"cannot stat channel {self.name!r}", self.path)
        if not S_ISREG(st.st_mode):
            raise PermissionError(f"channel {self.name!r}: {self.path} is not a regular file; refusing to open it")
        if st.st_uid != geteuid() and not self._group_may_share(st):
            raise PermissionError(f"channel {self.name!r}: {self.path} is owned by uid {st.st_uid}, "
                                  f"not by this process's uid {geteuid()}; refusing to open it "
                                  f"(a channel shared with a group needs mode=0o660 on both ends)")
        if <uint64_t>st.st_size < CW_HEADER_SIZE:
            raise ChannelCorruptError(f"channel {self.name!r}: {self.path} is {st.st_size} bytes, "
                                      f"too small for the {CW_HEADER_SIZE}-byte header")
        # A file shorter than this end expects is either a mismatch (the
        # header says so) or truncated: map only what exists and let the
        # header check tell which.
        self._map(min(<uint64_t>st.st_size, size))
        self._check_header(message_length, capacity, type_fingerprint, type_size, size, st.st_size)
        return True

    cdef bint _group_may_share(self, struct_stat st):
        """Another user's file is trusted only when this end asked for group sharing and the file
        is shared with a group of ours and nobody else."""
        return (self.mode & 0o060 == 0o060 and st.st_mode & 0o777 == self.mode
                and (st.st_gid == os.getegid() or st.st_gid in os.getgroups()))

    cdef int _map(self, size_t size) except -1:
        cdef void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, self.fd, 0)
        if p == MAP_FAILED:
            raise _os_error(errno, f"cannot map channel {self.name!r}", self.path)
        if self.hdr != NULL:
            munmap(<void *>self.hdr, self.size)
        self.hdr = <cw_header *>p
        self.size = size
        return 0

    cdef int _check_header(self, uint64_t message_length, uint64_t capacity,
                           uint64_t type_fingerprint, uint64_t type_size,
                           uint64_t size, uint64_t st_size) except -1:
        # Read once: another process may rewrite the header while we check it,
        # so the checks (and the messages) use this private copy, and nothing
        # later reads the geometry from shared memory again (the ends use the
        # values they asked for, which this check found in the copy).
        cdef cw_header snapshot
        memcpy(&snapshot, self.hdr, sizeof(cw_header))
        cdef cw_header *h = &snapshot
        what = f"channel {self.name!r} ({self.path})"
        if h.magic != CW_MAGIC:
            raise ChannelCorruptError(f"{what} is not a cywhip channel (magic {h.magic:#018x}, "
                                      f"expected {CW_MAGIC:#018x})")
        if h.version != CW_LAYOUT_VERSION:
            raise ChannelMismatchError(f"{what} has layout version {h.version}, "
                                       f"this cywhip uses {CW_LAYOUT_VERSION}")
        if h.type_fingerprint != type_fingerprint or h.type_size != type_size:
            forms = form_mismatch((h.type_fingerprint, _read_description(h), h.type_size),
                                  (type_fingerprint, self.description.decode(), type_size))
            if forms is not None:
                raise ChannelMismatchError(f"{what} {forms}")
            if type_fingerprint == 0 and self.side == END_RECEIVER and h.type_size != message_length:
                # An untyped receiver reads the records as bytes only at their size: say which.
                record_size, their_capacity = h.type_size, h.capacity
                queued = (f" and max_queued_messages={their_capacity} (this end: {capacity})"
                          if their_capacity != capacity else "")
                raise ChannelMismatchError(
                    f"{what} holds typed records {_read_description(h)} of {record_size} bytes; "
                    f"this untyped receiver asked for message_length={message_length}: open it "
                    f"with the same message_type, or read the records as bytes with "
                    f"message_length={record_size}{queued}")
            self._check_types(h, message_length, type_fingerprint, what)
        if h.records != self.records:
            raise ChannelMismatchError(
                f"{what} exists as {_kind_text(h.records, h.message_length, h.capacity)}; this end "
                f"asked for {_kind_text(self.records, message_length, capacity)}: open it with the "
                f"channel's sizes, or unlink it to make it anew")
        # The numbers of places first: on a byte channel they size the record header, and so the
        # default message_length compared below.
        if h.max_senders != self.max_senders:
            raise ChannelMismatchError(f"{what} exists with max_senders={h.max_senders}, "
                                       f"this end asked for max_senders={self.max_senders}: give "
                                       f"every end of the channel the same max_senders")
        if h.max_receivers != self.max_receivers:
            raise ChannelMismatchError(f"{what} exists with max_receivers={h.max_receivers}, "
                                       f"this end asked for max_receivers={self.max_receivers}: give "
                                       f"every end of the channel the same max_receivers")
        if self.records == CW_RECORDS_BYTES:
            if self.any_length and 1 <= h.message_length <= cw_var_max_length_with(
                    capacity, cw_var_header_size(self.max_senders)):
                # This end left message_length out: the channel's own is this end's.
                message_length = h.message_length
                self.message_length = message_length
            if h.capacity != capacity:
                raise ChannelMismatchError(f"{what} exists with max_queued_bytes={h.capacity}, "
                                           f"this end asked for max_queued_bytes={capacity}")
        if h.message_length != message_length:
            raise ChannelMismatchError(f"{what} exists with message_length={h.message_length}, "
                                       f"this end asked for message_length={message_length}")
        if h.capacity != capacity:
            raise ChannelMismatchError(f"{what} exists with max_queued_messages={h.capacity}, "
                                       f"this end asked for max_queued_messages={capacity}")
        if h.topology != self.topology:
            raise ChannelMismatchError(f"{what} exists with topology {h.topology} "
                                       f"({TOPOLOGY_NAMES.get(h.topology, 'unknown')}), this end asked "
                                       f"for topology {self.topology} "
                                       f"({TOPOLOGY_NAMES.get(self.topology, 'unknown')})")
        slot_size = slot_size_for(message_length, self.max_senders, self.records)
        if (h.header_size != self.slots_offset or h.slot_size != slot_size
                or h.file_size != size or h.place_size != CW_PLACE_SIZE):
            raise ChannelCorruptError(
                f"{what} has an inconsistent header: header_size={h.header_size}, "
                f"slot_size={h.slot_size}, file_size={h.file_size}, place_size={h.place_size}; "
                f"expected {self.slots_offset}, {slot_size}, {size}, {CW_PLACE_SIZE}")
        if st_size < size:
            raise ChannelCorruptError(f"{what} is {st_size} bytes, its header needs {size}")
        return 0

    cdef int _check_types(self, cw_header *h, uint64_t message_length, uint64_t type_fingerprint,
                          str what) except -1:
        """The channel's record type differs from this end's: allowed only for an untyped receiver."""
        theirs = _read_description(h)
        ours = self.description.decode()
        if type_fingerprint == 0:
            if self.side == END_RECEIVER and h.type_size == message_length:
                return 0   # an untyped receiver takes each record as bytes: always safe
            raise ChannelMismatchError(
                f"{what} holds typed records {theirs} of {h.type_size} bytes; this end is untyped "
                f"(bytes), and an untyped sender could write records of another layout: open it "
                f"with the same message_type")
        if h.type_fingerprint == 0:
            raise ChannelMismatchError(
                f"{what} was created untyped (bytes); this end's message_type is {ours}. "
                f"A typed end needs a typed channel: start a typed end first, or unlink the channel")
        raise ChannelMismatchError(
            f"{what} holds records {theirs} ({h.type_size} bytes); this end's message_type is "
            f"{ours} ({self.type_size} bytes); they differ at {first_difference(theirs, ours)}")

    cdef bint _create(self, uint64_t message_length, uint64_t capacity,
                      uint64_t type_fingerprint, uint64_t type_size, uint64_t size, int mode) except -1:
        """Build the file under a private name, then link it into place.

        link() fails if the name exists, so the file appears under its name
        only fully initialised, and of two ends starting at once exactly one
        creates it; the other opens what that one made.
        """
        free = _shm_free_bytes()
        if size > free:
            raise OSError(ENOSPC, f"channel {self.name!r} needs {size} bytes of shared memory "
                                  f"(message_length={message_length}, max_queued_messages={capacity}); "
                                  f"{SHM_DIR} has {free} bytes free", self.path)
        tmp = os.path.join(SHM_DIR, f".{FILE_PREFIX}{os.getpid()}.{secrets.token_hex(6)}.tmp")
        cdef bytes btmp = os.fsencode(tmp)
        cdef bytes bpath = os.fsencode(self.path)
        cdef int fd = c_open(btmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        cdef int rc
        cdef cw_header *h
        if fd < 0:
            raise _os_error(errno, f"cannot create channel {self.name!r}", tmp)
        self.fd = fd
        try:
            # Hold the lifecycle byte while the file has only its private name:
            # remove_stale() removes a temporary only if it can take this lock,
            # which the kernel drops if this process dies.  (The pid in the name
            # says nothing in another PID namespace sharing /dev/shm.)  If the
            # lock is taken already, a remove_stale() found the file in the
            # instant before we locked it and is unlinking it: start again.
            if cw_ofd_trylock(fd, CW_LIFECYCLE_LOCK_BYTE) != 0:
                self.unmap()
                return False
            # The umask may have narrowed the mode; the caller's choice wins.
            if fchmod(fd, mode) != 0:
                raise _os_error(errno, f"cannot set the mode of channel {self.name!r}", tmp)
            # Reserve every page now, so that a full /dev/shm is an error
            # here rather than a SIGBUS on some later write.
            rc = posix_fallocate(fd, 0, size)
            if rc != 0:
                raise _os_error(rc, f"cannot allocate {size} bytes for channel {self.name!r}", tmp)
            self._map(size)
            h = self.hdr
            h.magic = CW_MAGIC
            h.version = CW_LAYOUT_VERSION
            h.header_size = <uint32_t>self.slots_offset
            h.topology = self.topology
            h.max_senders = self.max_senders
            h.max_receivers = self.max_receivers
            h.place_size = CW_PLACE_SIZE
            h.message_length = message_length
            h.capacity = capacity
            h.slot_size = slot_size_for(message_length, self.max_senders, self.records)
            h.records = self.records
            h.file_size = size
            h.type_fingerprint = type_fingerprint
            h.type_size = type_size
            memcpy(h.type_description, <const char *>self.description, len(self.description))
            h.creator_pid = getpid()
            h.created_ns = time.time_ns()
            if _test_hook is not None:
                _test_hook("create", tmp)
            if c_link(btmp, bpath) != 0:
                # EEXIST: another end created the channel first; open it.  ENOENT:
                # the temporary was removed under us before we held its lock.
                if errno == EEXIST or errno == ENOENT:
                    self.unmap()
                    return False
                raise _os_error(errno, f"cannot name channel {self.name!r}", self.path)
            # Named now: the byte means "being removed" from here on.
            cw_ofd_unlock(fd, CW_LIFECYCLE_LOCK_BYTE)
            return True
        except BaseException:
            self.unmap()
            raise
        finally:
            c_unlink(btmp)

    cdef int _claim_end(self, bint last_try) except -1:
        """Lock the byte of a free place of this end's kind, after checking the file still
        has the channel's name.

        Returns CLAIMED (self.place is the place's index among its kind); or, with
        the mapping dropped, CLAIM_REPLACED when the file was unlinked or replaced
        before the lock was ours, and CLAIM_REMOVING when every place is held and
        remove_stale() is removing the channel (or an end holding one has not yet
        written its pid) and ``last_try`` is false.  Raises ChannelBusyError when
        every place is held by a live end.
        """
        cdef uint32_t count = self.max_senders if self.side == END_SENDER else self.max_receivers
        cdef uint64_t first = 0 if self.side == END_SENDER else self.max_senders
        cdef uint32_t i
        cdef int rc
        cdef cw_place *place
        holders = []
        for i in range(count):
            place = self._place(first + i)
            rc = cw_ofd_trylock(self.fd, cw_place_offset(first + i))
            if rc == 0:
                # remove_stale() unlinks a channel only while it holds every place's
                # byte, so from now on the name stays ours; but it may have gone just before.
                if not self._still_named():
                    self.unmap()
                    return CLAIM_REPLACED
                self.place = i
                cw_store_relaxed_i64(&place.pid, getpid())
                cw_fetch_add_relaxed_u64(&place.starts, 1)
                return CLAIMED
            if rc != EAGAIN and rc != EACCES:
                self.unmap()
                raise _os_error(rc, f"cannot lock channel {self.name!r}", self.path)
            holders.append(cw_load_relaxed_i64(&place.pid))
        if not self._still_named():
            self.unmap()
            return CLAIM_REPLACED
        if not last_try and (0 in holders or cw_ofd_is_locked(self.fd, CW_LIFECYCLE_LOCK_BYTE) == 1):
            self.unmap()
            return CLAIM_REMOVING
        self.unmap()
        kind = END_NAMES[self.side]
        if count == 1:
            message = f"channel {self.name!r} already has a {kind}: {_holders_text(holders)}"
        else:
            message = (f"channel {self.name!r} already has its {count} {kind}s (max_{kind}s={count}): "
                       f"{_holders_text(holders)}")
        if getpid() in holders:
            message += f"; close the {kind} this process has first, or open this one in another process"
        raise ChannelBusyError(message, pid=holders[0], pids=holders)

    cdef int _claim_member(self, bint last_try) except -1:
        """Join a receiver group (steps J1-J3, under the groups lock): find the group, or
        create it; take a member place, preferring a dead member's of this group with a claim
        to finish.  Returns as _claim_end()."""
        if not _lock_groups(self.fd, self.name):
            # Held that long by a live process (no removal of the channel takes it).
            self.unmap()
            raise groups_busy(self.name)
        cdef uint64_t gen = cw_load_relaxed_u64(&self.hdr.groups_gen)
        if gen & 1:
            # A creator died between its two steps of the sequence lock.
            cw_store_release_u64(&self.hdr.groups_gen, gen + 1)
            _wake_senders(self.hdr, self.fd, self.max_senders)
        try:
            if not self._still_named():
                self.unmap()
                return CLAIM_REPLACED
            gi = self._find_group()
            return self._take_member_place(gi, last_try)
        finally:
            if self.fd >= 0:
                cw_ofd_unlock(self.fd, CW_GROUPS_LOCK_BYTE)

    cdef int _find_group(self) except -1:
        """J1: the index of this end's group, created if it is not in use."""
        cdef cw_header *h = self.hdr
        cdef uint32_t g, mr = self.max_receivers
        cdef cw_group *e
        cdef int free_entry = -1
        cdef bint any
        cdef uint64_t start, gen
        cdef uint32_t flags
        cdef bytes want = self.group.encode()
        existing = []
        for g in range(mr):
            e = _group_entry(h, self.max_senders, mr, g)
            flags = cw_load_acquire_u32(&e.flags)
            if not (flags & CW_GROUP_IN_USE):
                if free_entry < 0:
                    free_entry = g
                continue
            name = _group_name(e)
            existing.append(name)
            if name == self.group:
                durable = bool(flags & CW_GROUP_DURABLE)
                if durable != self.durable:
                    self.unmap()
                    raise ChannelMismatchError(
                        f"channel {self.name!r}: group {self.group!r} exists with durable={durable}, "
                        f"this receiver asked for durable={bool(self.durable)}")
                self.group_index = g
                return g
        if free_entry < 0:
            self.unmap()
            raise ChannelBusyError(
                f"channel {self.name!r} has its {mr} groups (max_receivers={mr}): "
                f"{', '.join(map(repr, existing))}; cannot add group {self.group!r} "
                f"(cywhip.remove_group() drops one that is not coming back)", pid=0, pids=[])
        e = _group_entry(h, self.max_senders, mr, free_entry)
        # A sequence lock against senders computing how far they may write: the
        # new group starts at the oldest message some group still holds.
        gen = cw_load_relaxed_u64(&h.groups_gen)
        cw_store_relaxed_u64(&h.groups_gen, gen + 1)
        cw_fence_seq_cst()
        if _test_hook is not None:
            _test_hook("create_group", self.path)
        start = groups_min(h, (<char *>h) + cw_place_offset(self.max_senders),
                           (<char *>h) + cw_group_offset(self.max_senders, mr, 0), mr, &any)
        if not any:
            start = cw_load_acquire_u64(&h.read_cursor)
        cw_store_relaxed_u64(&e.next, start)
        cw_store_relaxed_u64(&e.lock, 0)
        cw_store_relaxed_u64(&e.members, 0)
        cw_store_relaxed_u64(&e.epoch, cw_load_relaxed_u64(&e.epoch) + 1)
        memcpy(e.name, <const char *>want, len(want))
        e.name_len = len(want)
        cw_store_release_u32(&e.flags, CW_GROUP_IN_USE | (CW_GROUP_DURABLE if self.durable else 0))
        cw_fence_seq_cst()
        cw_store_release_u64(&h.groups_gen, gen + 2)
        _wake_senders(h, self.fd, self.max_senders)
        self.group_index = free_entry
        return free_entry

    cdef int _take_member_place(self, int gi, bint last_try) except -1:
        """J2-J3: lock a member place for group gi.  A dead member's place of this group
        with a claim comes first (this member finishes that claim); then any place that holds
        no claim, whatever group it was last in; then a place whose claim belongs to a group
        that is gone.  Never a place that holds another group's claim."""
        cdef cw_header *h = self.hdr
        cdef uint32_t mr = self.max_receivers, q
        cdef cw_group *e = _group_entry(h, self.max_senders, mr, gi)
        cdef cw_group *other
        cdef uint64_t tag = (cw_load_relaxed_u64(&e.epoch) << 32) | <uint64_t>(gi + 1)
        cdef cw_place *place
        cdef uint64_t ptag, hold
        cdef int rc
        finish, free = [], []
        for q in range(mr):
            place = self._place(self.max_senders + q)
            ptag = cw_load_relaxed_u64(&place.group)
            hold = cw_load_acquire_u64(&place.hold_start)
            if ptag == tag:
                (finish if hold else free).append(q)
            elif hold == 0 or ptag == 0 or not _tag_in_use(h, self.max_senders, mr, ptag):
                free.append(q)
        holders = []
        if _test_hook is not None:
            _test_hook("member", self.path)
        for q in finish + free:
            place = self._place(self.max_senders + q)
            rc = cw_ofd_trylock(self.fd, cw_place_offset(self.max_senders + q))
            if rc == EAGAIN or rc == EACCES:
                holders.append(cw_load_relaxed_i64(&place.pid))
                continue
            if rc != 0:
                self.unmap()
                raise _os_error(rc, f"cannot lock channel {self.name!r}", self.path)
            # remove_stale() unlinks a channel only while it holds every place's byte, so
            # from now on the name stays ours; but it may have gone just before (as in
            # _claim_end()).
            if not self._still_named():
                self.unmap()
                return CLAIM_REPLACED
            # Ours: nobody else writes it now.  Read once what its last member left.
            ptag = cw_load_relaxed_u64(&place.group)
            hold = cw_load_acquire_u64(&place.hold_start)
            if ptag != tag and ptag != 0 and _tag_in_use(h, self.max_senders, mr, ptag):
                if hold != 0:
                    # Another group's claim after all: it waits for that group's members.
                    cw_ofd_unlock(self.fd, cw_place_offset(self.max_senders + q))
                    continue
                # Its member of another group died between taking that group's claim
                # lock and recording a claim (C3-C5): nothing was handed out; free the lock
                # before this place can take the same number for a claim of its own.
                other = _group_entry(h, self.max_senders, mr, <uint32_t>ptag - 1)
                group_resolve_lock(other, ptag, place, q)
            # A claim lock this place's dead member held is settled first (L).
            group_resolve_lock(e, tag, place, q)
            if cw_load_relaxed_u64(&place.group) != tag:
                cw_store_release_u64(&place.hold_start, 0)
                cw_store_release_u64(&place.group, tag)
            self.place = q
            self.group_tag = tag
            cw_store_relaxed_i64(&place.pid, getpid())
            cw_fetch_add_relaxed_u64(&place.starts, 1)
            cw_fetch_add_relaxed_u64(&e.members, 1)
            return CLAIMED
        if not self._still_named():
            self.unmap()
            return CLAIM_REPLACED
        if not last_try and cw_ofd_is_locked(self.fd, CW_LIFECYCLE_LOCK_BYTE) == 1:
            # remove_stale() holds the places while it removes the channel (and the lifecycle
            # byte all along): wait for it, as _claim_end() does.  Not on a pid of 0 read from
            # a place, as _claim_end() also does: members join under the groups lock, which
            # this join holds, so none is between its place's lock and its pid now, and a pid
            # is a value anyone may write.
            self.unmap()
            return CLAIM_REMOVING
        pids = [cw_load_relaxed_i64(&self._place(self.max_senders + q).pid) for q in range(mr)]
        self.unmap()
        raise ChannelBusyError(
            f"channel {self.name!r} already has its {mr} receivers (max_receivers={mr}): "
            f"{_holders_text(pids)}, or keep the messages a dead member of another group had claimed, "
            f"until a member of that group opens or the group is removed", pid=pids[0], pids=pids)

    cdef void _leave_group(self) noexcept:
        """Step X: a member closing.  Its claim, if it did not take all of it, stays in its
        place for another member to finish; a non-durable group whose last member this was
        is removed (R)."""
        cdef cw_header *h = self.hdr
        cdef uint32_t mr = self.max_receivers, q
        cdef cw_place *place = self._place(self.max_senders + self.place)
        cdef cw_group *e
        cdef uint64_t tag = self.group_tag
        cdef int64_t pid
        cdef bint alive = False
        if self.group_index < 0:
            return
        e = _group_entry(h, self.max_senders, mr, self.group_index)
        if cw_load_relaxed_u64(&place.group) != tag:
            return
        if cw_load_acquire_u64(&place.hold_start) == 0:
            cw_store_release_u64(&place.group, 0)
        cw_store_relaxed_i64(&place.pid, 0)
        if _test_hook is not None:
            try:
                _test_hook("leave", self.path)
            except BaseException:
                pass
        try:
            locked = _lock_groups(self.fd, self.name)
        except BaseException:
            return
        if not locked:
            return
        # X2: until this lock was ours, the group may have been removed (remove_group(),
        # another member's last close, a sender releasing it) and its entry taken by a
        # new group: count out and remove only the group this member joined.
        if not _tag_in_use(h, self.max_senders, mr, tag):
            cw_ofd_unlock(self.fd, CW_GROUPS_LOCK_BYTE)
            return
        if cw_load_relaxed_u64(&e.members) > 0:
            cw_fetch_add_relaxed_u64(&e.members, <uint64_t>-1)
        if not (cw_load_acquire_u32(&e.flags) & CW_GROUP_DURABLE):
            for q in range(mr):
                if <int>q != self.place and cw_load_relaxed_u64(&self._place(self.max_senders + q).group) == tag \
                        and cw_ofd_is_locked(self.fd, cw_place_offset(self.max_senders + q)) != 0:
                    alive = True
            if not alive:
                group_remove(h, self.fd, self.max_senders, mr, self.group_index, tag, self.place, &pid)
        cw_ofd_unlock(self.fd, CW_GROUPS_LOCK_BYTE)

    cdef cw_place *_place(self, uint64_t index) noexcept:
        """Place index of the table (senders first, then receivers), in the mapping."""
        return <cw_place *>((<char *>self.hdr) + cw_place_offset(index))

    cdef bint receiver_open(self) except -1:
        """Whether a receiver place's lock is held now (by an open receiver, or one claiming it)."""
        cdef uint32_t q
        for q in range(self.max_receivers):
            if cw_ofd_is_locked(self.fd, cw_place_offset(self.max_senders + q)) != 0:
                return True
        return False

    cdef bint _still_named(self) except -1:
        """True if the channel's path names the file this Region has open."""
        try:
            return _names_file(self.path, self.fd)
        except BaseException:
            self.unmap()
            raise

    cdef const char *lend_pages(self, uint64_t offset, size_t length, void **mapping,
                                size_t *mapping_size) except NULL:
        """A private read-only mapping of length bytes of the file from offset (borrow()).

        The mapping covers whole pages of the kernel's page size; the return
        value points at offset inside it.  A child forked while it exists does
        not inherit it: the mapping holds the file open, and with it this
        end's lock.
        """
        cdef uint64_t skip = offset % _page_size
        cdef size_t size = (skip + length + _page_size - 1) // _page_size * _page_size
        cdef void *m = mmap(NULL, size, PROT_READ, MAP_SHARED, self.fd, offset - skip)
        if m == MAP_FAILED:
            raise _os_error(errno, f"cannot map borrowed messages of channel {self.name!r}", self.path)
        if madvise(m, size, MADV_DONTFORK) != 0:
            err = errno
            munmap(m, size)
            raise _os_error(err, f"cannot keep borrowed messages of channel {self.name!r} from forks", self.path)
        mapping[0] = m
        mapping_size[0] = size
        return <const char *>m + skip

    def close(self):
        """Clear this end's pid in its place and drop the mapping and the lock."""
        if self.hdr != NULL and self.pid == getpid() and self.place >= 0 and self.group_index >= 0:
            self._leave_group()
        elif self.hdr != NULL and self.pid == getpid() and self.place >= 0:
            cw_store_relaxed_i64(&self._place(self.place + (0 if self.side == END_SENDER else self.max_senders)).pid, 0)
        self.unmap()


cdef int unlend_pages(void *mapping, size_t mapping_size) noexcept:
    """Replace a lend_pages() mapping with zero pages in one step, so that anything still
    viewing it reads zeros from now on, never what the sender writes next.  Should that
    fail, drop the mapping (the sender's writes can then never be seen) and return -1;
    otherwise the zero pages stay mapped until munmap()."""
    cdef void *m = mmap(mapping, mapping_size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
    if m == MAP_FAILED:
        munmap(mapping, mapping_size)
        return -1
    return 0


def _holders_text(pids):
    """Who holds a channel's places, each pid once: "process 12 (this process) holds it",
    "processes 12 (3 places), 40 hold them"."""
    counts = {}
    for pid in pids:
        counts[pid] = counts.get(pid, 0) + 1
    me = getpid()
    parts = []
    for pid, n in counts.items():
        notes = (["this process"] if pid == me else []) + ([f"{n} places"] if n > 1 else [])
        parts.append(f"{pid} ({', '.join(notes)})" if notes else str(pid))
    if len(pids) == 1:
        return f"process {parts[0]} holds it"
    if len(counts) == 1:
        return f"process {parts[0]} holds them"
    return f"processes {', '.join(parts)} hold them"


cdef inline void _wake_senders(cw_header *h, int fd, uint32_t max_senders) noexcept:
    """Wake senders asleep while groups_gen was odd: a sender that found a live creator at work
    took the ring as full, and nothing else may wake it (the handshake of receive step 5);
    senders waiting on a descriptor too (ring_wake_senders_of())."""
    ring_wake_senders_of(h, fd, max_senders)


cdef str _group_name(cw_group *e):
    """A group entry's name, read once and bounded."""
    cdef uint32_t n = e.name_len
    if n > CW_GROUP_NAME_SIZE:
        n = CW_GROUP_NAME_SIZE
    return (<bytes>e.name[:n]).decode("utf-8", "replace")


cdef bint _tag_in_use(cw_header *h, uint32_t max_senders, uint32_t max_receivers, uint64_t tag) noexcept:
    """Whether a place's group tag names a group in use now (not one removed since)."""
    cdef uint32_t gi = <uint32_t>tag
    cdef cw_group *e
    if gi == 0 or gi > max_receivers:
        return False
    e = _group_entry(h, max_senders, max_receivers, gi - 1)
    return bool(cw_load_acquire_u32(&e.flags) & CW_GROUP_IN_USE) and \
        ((cw_load_relaxed_u64(&e.epoch) << 32) | gi) == tag


cdef bint _lock_groups(int fd, str name) except -1:
    """Take the groups lock (joins, closes and removals of receiver groups take turns);
    False if another process held it for _GROUPS_LOCK_WAIT seconds."""
    cdef int rc
    deadline = time.monotonic() + _GROUPS_LOCK_WAIT
    while True:
        rc = cw_ofd_trylock(fd, CW_GROUPS_LOCK_BYTE)
        if rc == 0:
            return True
        if rc != EAGAIN and rc != EACCES:
            raise OSError(rc, f"cannot lock the groups of channel {name!r}: {os.strerror(rc)}")
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.0005)


cdef object groups_busy(str name):
    """The error of a join or removal that found the groups locked for _GROUPS_LOCK_WAIT."""
    return ChannelBusyError(f"channel {name!r}: another process kept its groups locked "
                            f"for {_GROUPS_LOCK_WAIT} s", pid=0, pids=[])


def check_group(group, durable, max_receivers):
    """Validate a receiver's group arguments; return the group name."""
    if not isinstance(group, str):
        raise TypeError(f"group must be a str, not {type(group).__name__} ({group!r})")
    if not isinstance(durable, bool):
        raise TypeError(f"durable must be a bool, not {type(durable).__name__} ({durable!r})")
    try:
        raw = group.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"group name {group!r} cannot be encoded in UTF-8: {exc.reason}") from None
    if len(raw) > CW_GROUP_NAME_SIZE:
        raise ValueError(f"group name {group!r} is {len(raw)} bytes in UTF-8; at most {CW_GROUP_NAME_SIZE}")
    if "\0" in group:
        raise ValueError(f"group name {group!r} contains a NUL character")
    if max_receivers == 1 and (group != "" or not durable):
        what = f"group={group!r}" if group != "" else "durable=False"
        raise ValueError(f"{what} needs a channel with receiver groups: max_receivers=1 is one "
                         f"receiver; give every end max_receivers=N > 1")
    return group


cdef str _read_description(cw_header *h):
    """The channel's type description, read within its field whatever the file holds."""
    cdef bytes raw = h.type_description[:CW_TYPE_DESCRIPTION_SIZE]
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace") or "(none)"


def _shm_free_bytes():
    st = os.statvfs(SHM_DIR)
    return st.f_bavail * st.f_frsize


cdef bint _names_file(str path, int fd) except -1:
    """True if ``path`` (not followed if a link) names the file open as ``fd``."""
    cdef struct_stat st
    if fstat(fd, &st) != 0:
        raise _os_error(errno, "cannot stat", path)
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return named.st_dev == st.st_dev and named.st_ino == st.st_ino
