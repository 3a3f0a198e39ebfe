# cython: language_level=3
"""The admin room: what ``python -m cywhip channels`` shows and removes.

``channels()`` lists the channels in /dev/shm with their state, read through
the file descriptor (never a mapping); ``remove_stale()`` unlinks channels
whose ends are all dead (and temporaries of creations that died);
``remove_group()`` drops a receiver group that is not coming back.  The
region (``_region``) owns the file and the claims these read and undo; the
ring (``_ring``) owns the groups' positions and a group's removal.
"""
import os
import warnings
from collections import namedtuple

from libc.errno cimport errno, ENOENT
from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.stdlib cimport free as c_free
from libc.string cimport memset

cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void **memptr, size_t alignment, size_t size)
from posix.fcntl cimport open as c_open, O_RDWR
from posix.mman cimport mmap, munmap, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_FAILED
from posix.stat cimport struct_stat, fstat, S_ISREG
from posix.unistd cimport close as c_close, geteuid, pread

from cywhip.includes.c_atomics cimport cw_load_acquire_u32, cw_load_acquire_u64, cw_load_relaxed_u64
from cywhip.includes.c_layout cimport (
    cw_header, CW_HEADER_SIZE, CW_PAGE_SIZE, CW_MAGIC, CW_LAYOUT_VERSION, CW_LIFECYCLE_LOCK_BYTE,
    CW_PLACE_SIZE, CW_MAX_PLACES, cw_place, cw_slots_offset, cw_place_offset,
    CW_TOPOLOGY_GROUPS, CW_GROUP_IN_USE, CW_GROUP_DURABLE, cw_group, cw_group_offset, CW_RECORDS_BYTES, cw_claim_position,
    cw_var_record_size_with, cw_var_header_size,
)
from cywhip.includes.c_ofd_lock cimport cw_ofd_trylock, cw_ofd_is_locked
from cywhip._ring cimport groups_min, group_position, group_remove
from cywhip._region cimport _os_error, _names_file, _group_entry, _group_name, _lock_groups, groups_busy

from cywhip.errors import ChannelBusyError, ChannelCorruptError
from cywhip._region import SHM_DIR, FILE_PREFIX, channel_name, channel_path

cdef extern from "<fcntl.h>" nogil:
    enum:
        O_NOFOLLOW
        O_CLOEXEC

# Test seam: tests set this to a callable(point, path) to act at a precise moment:
# "inspect" (channels() has checked a file's header, about to read its places and
# cursors) and "remove" (remove_stale() holds a channel's lock bytes, about to unlink
# it).  The region has its own for the claims' moments.
_test_hook = None


ChannelInfo = namedtuple("ChannelInfo", [
    "name", "path", "message_length", "max_queued_messages", "depth",
    "sender_alive", "receiver_alive", "sender_pid", "receiver_pid", "file_size", "problem",
    "senders", "receivers", "groups", "max_queued_bytes",
], defaults=((), (), (), None))
ChannelInfo.__doc__ = """One channel in /dev/shm, as channels() found it.

``senders`` and ``receivers`` hold one PlaceInfo(pid, alive) per place of
that kind: ``alive`` says whether a live process holds the place (the kernel
drops the claim when the process dies), ``pid`` is the last pid recorded
there, 0 after a clean close.  ``sender_alive``/``receiver_alive`` say whether
any place of the kind is held, ``sender_pid``/``receiver_pid`` are the first
place's pid.  ``depth`` is the number of queued messages; on a byte channel
(``max_queued_bytes`` is its ring's size, and ``max_queued_messages`` None) the
bytes queued, records and padding.  ``problem`` is None
for a sound channel, else why the file could not be read as one (the geometry
fields are then None).
"""

GroupInfo = namedtuple("GroupInfo", ["name", "position", "depth", "durable", "members", "holding_back"])
GroupInfo.__doc__ = """One receiver group of a channel with groups (``ChannelInfo.groups``).

``position`` is the group's first message not taken (a cursor), ``depth`` how
many messages wait for it, ``members`` the pids of its live members, and
``holding_back`` whether the senders wait for it: it is the slowest group and
the ring is full for it.  On a byte channel ``position`` and ``depth`` count
bytes, and "full" means that a message of ``message_length`` bytes (with the
padding it would need at the ring's end) does not fit in what the group leaves
free: smaller messages may still go through.  A durable group with no member keeps its place, and
holds the senders back once the ring fills."""

PlaceInfo = namedtuple("PlaceInfo", ["pid", "alive", "claiming"], defaults=(None,))
PlaceInfo.__doc__ = """One end's place: the last pid recorded there, whether a live process holds it, and
(a sender of a many-senders channel) the sequence it is claiming or filling, else None.  A
dead place's ``claiming`` is the slot its sender died filling, until the receiver steps over it."""


cdef object _broken(str name, str path, file_size, str problem):
    return ChannelInfo(name, path, None, None, None, False, False, 0, 0, file_size, problem)


cdef int _read_header(int fd, cw_header *h) noexcept:
    """Copy the header page's fields once into h (pread: no mapping that could fault); -1 if
    the file has fewer bytes (it may have shrunk since it was looked at).  Raises nothing."""
    cdef ssize_t n = pread(fd, h, sizeof(cw_header), 0)
    if n != <ssize_t>sizeof(cw_header):
        return -1
    return 0


cdef bint _places_sound(cw_header *h, uint64_t st_size):
    """Whether a header copy's place geometry is one this version makes and the file holds."""
    return (h.magic == CW_MAGIC and h.version == CW_LAYOUT_VERSION
            and 1 <= h.max_senders <= CW_MAX_PLACES and 1 <= h.max_receivers <= CW_MAX_PLACES
            and h.place_size == CW_PLACE_SIZE
            and h.header_size == cw_slots_offset(h.max_senders, h.max_receivers)
            and st_size >= h.header_size)


cdef int _pread_all(int fd, void *dst, size_t n, uint64_t offset) noexcept:
    """Copy n bytes of the file from offset; -1 if it has fewer (it shrank)."""
    return 0 if pread(fd, dst, n, offset) == <ssize_t>n else -1


cdef object _inspect(str name, str path):
    """One channel's state, read through the file descriptor (pread), never through a
    mapping: anyone who may write the file may also shrink it, and a mapped page past the
    end raises SIGBUS in whoever touches it, here in every process that lists channels."""
    cdef bytes bpath = os.fsencode(path)
    cdef int fd = c_open(bpath, O_RDWR | O_NOFOLLOW | O_CLOEXEC)
    cdef struct_stat st
    cdef cw_header snapshot
    cdef cw_header *h = &snapshot
    cdef cw_header *copy
    cdef cw_place *place
    cdef char *buf = NULL
    cdef uint64_t i, size, places_end, read_1, write, read_2, w_after
    if fd < 0:
        return None if errno == ENOENT else _broken(name, path, None, os.strerror(errno))
    try:
        if fstat(fd, &st) != 0:
            return _broken(name, path, None, os.strerror(errno))
        if not S_ISREG(st.st_mode):
            return _broken(name, path, None, "not a regular file")
        if st.st_uid != geteuid() and not _shared_with_our_group(st):
            return _broken(name, path, st.st_size, f"owned by uid {st.st_uid}, not shared with a group of ours")
        if <uint64_t>st.st_size < CW_HEADER_SIZE:
            return _broken(name, path, st.st_size, "too small for a header")
        # fstat() found a header's worth; a short read now means the file shrank since.
        if _read_header(fd, h) != 0:
            return _broken(name, path, None, "shrank while it was read")
        # The geometry is read once, in this copy, and checked before it sizes anything.
        if not _places_sound(h, st.st_size):
            return _broken(name, path, st.st_size, "not a cywhip channel of this layout version")
        if _test_hook is not None:
            _test_hook("inspect", path)
        size = h.header_size
        has_groups = h.topology == CW_TOPOLOGY_GROUPS and h.max_receivers > 1
        places_end = cw_group_offset(h.max_senders, h.max_receivers, 0) if has_groups else \
            cw_place_offset(h.max_senders + h.max_receivers)
        # Page-aligned, as the mapping it stands for: cw_header's fields are aligned to lines.
        if posix_memalign(<void **>&buf, CW_PAGE_SIZE, size) != 0:
            buf = NULL
            raise MemoryError()
        memset(buf, 0, size)
        copy = <cw_header *>buf
        capacity = h.capacity
        # Each cursor is read by a pread of its own, in the order the loads of a live
        # reader would take (see below); the places and group entries as private copies.
        if has_groups:
            # As ring_depth() and group_position() load them: the write cursor, then every
            # group entry, then the places (a claim handed out after the entries were read
            # starts at or past what they say), the floor, and the write cursor again.
            if (_pread_all(fd, &copy.write_cursor, 8, <char *>&copy.write_cursor - buf)
                    or _pread_all(fd, buf + places_end, h.max_receivers * sizeof(cw_group), places_end)
                    or _pread_all(fd, buf + cw_place_offset(0), places_end - cw_place_offset(0), cw_place_offset(0))
                    or _pread_all(fd, &copy.read_cursor, 8, <char *>&copy.read_cursor - buf)
                    or _pread_all(fd, &w_after, 8, <char *>&copy.write_cursor - buf)):
                return _broken(name, path, None, "shrank while it was read")
        elif _pread_all(fd, buf + cw_place_offset(0), places_end - cw_place_offset(0), cw_place_offset(0)):
            return _broken(name, path, None, "shrank while it was read")
        places = []
        for i in range(h.max_senders + h.max_receivers):
            place = <cw_place *>(buf + cw_place_offset(i))
            intent = place.intent if h.max_senders > 1 and i < h.max_senders else 0
            places.append(PlaceInfo(place.pid, cw_ofd_is_locked(fd, cw_place_offset(i)) == 1,
                                    intent - 1 if intent else None))
        senders, receivers = tuple(places[:h.max_senders]), tuple(places[h.max_senders:])
        if has_groups:
            byte_ring = h.records == CW_RECORDS_BYTES
            groups, depth = _inspect_groups(copy, h.max_senders, h.max_receivers, capacity, receivers, w_after,
                                            h.message_length if byte_ring else 0)
            senders = _unfinished_claims(senders, min([grp.position for grp in groups], default=copy.read_cursor))
            return ChannelInfo(name, path, h.message_length, None if byte_ring else capacity, depth,
                               any(pl.alive for pl in senders), any(pl.alive for pl in receivers),
                               senders[0].pid, receivers[0].pid, st.st_size,
                               None if depth is not None else "impossible cursors",
                               senders, receivers, groups, capacity if byte_ring else None)
        # The ends move the cursors while we look: read the read cursor, then the
        # write cursor, then the read cursor again, in this order (one pread each;
        # ring_depth()'s three loads, which it takes through a mapping).
        # Both cursors only grow and a sound channel keeps read <= write <= read +
        # capacity at every moment, so then read_1 <= write <= read_2 + capacity,
        # whatever the ends did in between.
        if (_pread_all(fd, &read_1, 8, <char *>&copy.read_cursor - buf)
                or _pread_all(fd, &write, 8, <char *>&copy.write_cursor - buf)
                or _pread_all(fd, &read_2, 8, <char *>&copy.read_cursor - buf)):
            return _broken(name, path, None, "shrank while it was read")
        byte_ring = h.records == CW_RECORDS_BYTES
        if byte_ring and h.max_senders > 1:
            # The claim word (position / 8 and its owner): the claim cursor is at least read_1.
            write = cw_claim_position(write, read_1 & ~7)
        sound = read_1 <= write <= read_2 + capacity and read_1 <= read_2
        senders = _unfinished_claims(senders, read_2)
        return ChannelInfo(name, path, h.message_length, None if byte_ring else capacity,
                           (write - read_2 if write > read_2 else 0) if sound else None,
                           any(pl.alive for pl in senders), any(pl.alive for pl in receivers),
                           senders[0].pid, receivers[0].pid,
                           st.st_size, None if sound else "impossible cursors", senders, receivers, (),
                           capacity if byte_ring else None)
    finally:
        c_free(buf)
        c_close(fd)


def _unfinished_claims(senders, floor):
    """The sender places with ``claiming`` kept only where the receivers have not passed it:
    a dead sender's claim that every receiver (every group) has stepped over is finished
    business.  A removed group's position no longer counts, so ``floor`` is read after
    the groups were."""
    return tuple(p if p.claiming is None or p.claiming >= floor else p._replace(claiming=None)
                 for p in senders)


cdef bint _shared_with_our_group(struct_stat st):
    """Another user's channel file that this process may use: shared with a group of ours
    (mode 0o660: group read and write, nothing for others), as ends with mode=0o660 make."""
    return (st.st_mode & 0o077 == 0o060
            and (st.st_gid == os.getegid() or st.st_gid in os.getgroups()))


cdef tuple _inspect_groups(cw_header *live, uint32_t ms, uint32_t mr, uint64_t capacity, tuple receivers,
                           uint64_t w_after, uint64_t byte_length):
    """The groups of a channel with groups, and the depth for its senders (None if impossible),
    from a private copy of its header, places and group entries (see _inspect()); w_after is
    the write cursor read after them.  byte_length: a byte channel's message_length (0: a slot
    channel).  On a byte channel positions and depths count bytes, a position is a record's
    start (a multiple of 8: else impossible), and the slowest group holds the senders back when
    the record of a message of message_length, with the padding it would need at the write
    cursor, does not fit in what that group leaves free."""
    cdef bint byte_ring = byte_length != 0
    cdef uint64_t need = 0
    cdef char *rplaces = (<char *>live) + cw_place_offset(ms)
    cdef char *gtable = (<char *>live) + cw_group_offset(ms, mr, 0)
    cdef cw_group *e
    cdef uint32_t g, q
    cdef uint64_t tag, pos, w
    cdef bint any
    w = live.write_cursor
    rows = []
    for g in range(mr):
        e = <cw_group *>(gtable + g * sizeof(cw_group))
        flags = cw_load_acquire_u32(&e.flags)
        if not flags & CW_GROUP_IN_USE:
            continue
        tag = (cw_load_relaxed_u64(&e.epoch) << 32) | (g + 1)
        pos = group_position(rplaces, mr, e, tag)
        members = []
        for q in range(mr):
            if receivers[q].alive and cw_load_relaxed_u64(&(<cw_place *>(rplaces + q * CW_PLACE_SIZE)).group) == tag:
                members.append(receivers[q].pid)
        members = tuple(members)
        rows.append([_group_name(e), pos, bool(flags & CW_GROUP_DURABLE), members])
    # The senders' bound, as ring_depth() takes it for a sender: the oldest message some
    # group has not taken (the least of the positions above), else the floor.
    cdef uint64_t bound = groups_min(live, rplaces, gtable, mr, &any)
    if not any:
        bound = cw_load_acquire_u64(&live.read_cursor)
    if byte_ring and ms > 1:
        # The claim word of a byte ring of many senders, decoded from the bound: positions read
        # before the second load of the word (the first one may be older than they are).
        w_after = cw_claim_position(w_after, bound & ~(<uint64_t>7))
        w = w_after
    # The groups move while we look: a group ahead of the write cursor loaded
    # before it just took what came meanwhile.
    w = max(w, w_after)
    if w < bound or w - bound > capacity:
        return (), None
    if byte_ring:
        if (w | bound) & 7 or [row for row in rows if row[1] & 7]:
            return (), None
        need = cw_var_record_size_with(byte_length, cw_var_header_size(ms))
        if w % capacity + need > capacity:
            need += capacity - w % capacity
    else:
        need = 1
    groups = tuple(GroupInfo(name, pos, max(0, w - pos), durable, members,
                             pos == bound and w >= pos and capacity - (w - pos) < need)
                   for name, pos, durable, members in rows)
    return groups, w - bound


def channels():
    """List the channels in /dev/shm with their state (a list of ChannelInfo, sorted by name)."""
    out = []
    for entry in sorted(os.listdir(SHM_DIR)):
        if not entry.startswith(FILE_PREFIX):
            continue
        info = _inspect(entry[len(FILE_PREFIX):], os.path.join(SHM_DIR, entry))
        if info is not None:
            out.append(info)
    return out


def _channel_info(name):
    """The ChannelInfo of channel ``name`` alone, None if it does not exist (what a SendTimeout
    on a channel with groups reads to name the group holding the ring full)."""
    name = channel_name(name)
    return _inspect(name, os.path.join(SHM_DIR, FILE_PREFIX + name))


def held_back_text(name):
    """For a SendTimeout's message on channel ``name`` with receiver groups: which group holds
    the ring full, and what to do about it ("" if none does now, or if it cannot be read)."""
    try:
        info = _channel_info(name)
    except Exception:
        return ""
    if info is None or not info.groups:
        return ""
    parts = []
    unit = "bytes" if info.max_queued_bytes is not None else "messages"
    for g in info.groups:
        if not g.holding_back:
            continue
        if g.members:
            pids = ", ".join(map(str, g.members))
            parts.append(f"group {g.name!r} holds it full ({g.depth} {unit} wait for it; "
                         f"its members, pid {pids}, have not taken them yet)")
        else:
            parts.append(f"group {g.name!r} holds it full: a durable group with no live member "
                         f"({g.depth} {unit} wait for it); start a member of it, or remove it "
                         f"with cywhip.remove_group({name!r}, {g.name!r}) "
                         f"(python -m cywhip remove-group {name} {g.name})")
    return "; " + "; ".join(parts) if parts else ""


def remove_group(name, group):
    """Remove receiver group ``group`` of channel ``name``: a group that is not coming back.

    Senders stop waiting for it at once; the messages only it had not taken
    are dropped for it (other groups keep theirs).  Its members must all be
    gone: one alive raises ChannelBusyError naming its pid.  A group not in the
    channel raises KeyError; a channel without groups, ValueError.
    """
    if not isinstance(group, str):
        raise TypeError(f"group must be a str, not {type(group).__name__} ({group!r})")
    path = channel_path(name)
    cdef int fd = c_open(os.fsencode(path), O_RDWR | O_NOFOLLOW | O_CLOEXEC)
    cdef struct_stat st
    cdef cw_header snapshot
    cdef cw_header *h = &snapshot
    cdef void *p = MAP_FAILED
    cdef size_t size = 0
    cdef uint32_t g
    cdef cw_group *e
    cdef int64_t pid = 0
    cdef uint64_t tag
    cdef int rc
    if fd < 0:
        raise _os_error(errno, f"cannot open channel {name!r}", path)
    try:
        if fstat(fd, &st) != 0:
            raise _os_error(errno, f"cannot stat channel {name!r}", path)
        if not S_ISREG(st.st_mode) or _read_header(fd, h) != 0 or not _places_sound(h, st.st_size):
            raise ChannelCorruptError(f"channel {name!r} ({path}) is not a cywhip channel of this layout version")
        if h.topology != CW_TOPOLOGY_GROUPS or h.max_receivers < 2:
            raise ValueError(f"channel {name!r} has no receiver groups (max_receivers={h.max_receivers})")
        size = h.header_size
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        if p == MAP_FAILED:
            raise _os_error(errno, f"cannot map channel {name!r}", path)
        if not _lock_groups(fd, channel_name(name)):
            raise groups_busy(name)
        names = []
        for g in range(h.max_receivers):
            e = _group_entry(<cw_header *>p, h.max_senders, h.max_receivers, g)
            if not cw_load_acquire_u32(&e.flags) & CW_GROUP_IN_USE:
                continue
            names.append(_group_name(e))
            if names[-1] != group:
                continue
            tag = (cw_load_relaxed_u64(&e.epoch) << 32) | (g + 1)
            rc = group_remove(<cw_header *>p, fd, h.max_senders, h.max_receivers, g, tag, -1, &pid)
            if rc != 0:
                raise ChannelBusyError(f"channel {name!r}: group {group!r} has a live member, "
                                       f"process {pid}: close its members first, then remove it (a non-durable "
                                       f"group goes with its last member)", pid=pid, pids=[pid])
            return None
        raise KeyError(f"channel {name!r} has no group {group!r} (its groups: "
                       f"{', '.join(map(repr, names)) or 'none'})")
    finally:
        if p != MAP_FAILED:
            munmap(p, size)
        c_close(fd)


def remove_stale(names=None):
    """Remove channels whose ends are all dead; return the names removed.

    With ``names`` (a name or a list of names), only those are considered and
    one with a live end raises ChannelBusyError; without, every stale channel
    in /dev/shm goes.  Queued messages in a removed channel are lost.  The
    channel's lifecycle byte and both end bytes are locked while the file is
    unlinked, so an end cannot claim the channel in between; an end that starts
    meanwhile waits for the removal and then opens or creates the channel anew.
    Without ``names``, the temporary files of creations that did not finish go
    too, and a file this process may not unlink (another user's channel shared
    with our group, in the sticky /dev/shm) is skipped with a RuntimeWarning that
    names it; with ``names``, that error is raised.
    """
    explicit = names is not None
    if isinstance(names, str):
        names = [names]
    if names is None:
        names = [info.name for info in channels()]
        _remove_orphaned_temporaries()
    removed = []
    for name in names:
        if _remove_if_stale(name, explicit):
            removed.append(channel_name(name))
    return removed


cdef bint _remove_if_stale(name, bint explicit) except -1:
    """Unlink channel ``name`` if no end is alive; True if it was removed."""
    path = channel_path(name)
    cdef int fd
    for attempt in range(3):
        fd = c_open(os.fsencode(path), O_RDWR | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0:
            if explicit:
                raise _os_error(errno, f"cannot open channel {name!r}", path)
            return False
        try:
            # The lifecycle byte first: an end that finds its own byte taken while
            # this one is held knows the channel is going, and waits for it to go.
            if cw_ofd_trylock(fd, CW_LIFECYCLE_LOCK_BYTE):
                if explicit:
                    raise ChannelBusyError(f"channel {name!r} is being created or removed by another "
                                           f"process; not removing it")
                return False
            held = _lock_every_place(fd)
            if held >= 0:
                if explicit:
                    pid = _place_pid(fd, held)
                    who = f"process {pid} holds {_place_name(fd, held)}" if pid > 0 else "a live end holds a place"
                    raise ChannelBusyError(f"channel {name!r} has a live end ({who}); not removing it",
                                           pid=pid, pids=[pid])
                return False
            # The file we locked may have lost its name since we opened it, and the
            # name may now be a new channel whose end we hold no lock against.
            if not _names_file(path, fd):
                continue
            if _test_hook is not None:
                _test_hook("remove", path)
            try:
                os.unlink(path)
            except FileNotFoundError:
                return False
            except OSError as exc:
                # Another user's channel shared with our group, in the sticky /dev/shm.
                if explicit:
                    raise
                warnings.warn(f"cywhip.remove_stale(): cannot remove stale channel {channel_name(name)!r} "
                              f"({path}): {exc.strerror}; skipped it", RuntimeWarning)
                return False
            return True
        finally:
            c_close(fd)
    return False


cdef int64_t _lock_every_place(int fd) except -2:
    """Lock the byte of every end place the file has; -1 if all are ours now, else the
    offset of the first one held.

    The places are found from one copy of the header.  A file whose header is
    not of this layout version gets the bytes its first places would have,
    and those where layout versions 1 and 2 kept their two ends (offsets 640
    and 648), so that no end of an older cywhip is removed from under it.
    """
    cdef cw_header snapshot
    cdef struct_stat st
    cdef uint64_t i
    if fstat(fd, &st) != 0:
        raise OSError(errno, os.strerror(errno))
    if _read_header(fd, &snapshot) == 0 and _places_sound(&snapshot, st.st_size):
        offsets = [cw_place_offset(i) for i in range(snapshot.max_senders + snapshot.max_receivers)]
    else:
        offsets = [cw_place_offset(0), cw_place_offset(1), 640, 648]
    for offset in offsets:
        if cw_ofd_trylock(fd, offset) != 0:
            return offset
    return -1


cdef int64_t _place_pid(int fd, uint64_t offset):
    """The pid recorded in the place at offset (read once, through the descriptor); 0 if none."""
    cdef int64_t pid = 0
    if pread(fd, &pid, sizeof(pid), offset) != <ssize_t>sizeof(pid) or pid < 0:
        return 0
    return pid


cdef str _place_name(int fd, uint64_t offset):
    """'its sender place 0', 'its receiver place 1', from one copy of the header."""
    cdef cw_header snapshot
    cdef struct_stat st
    if fstat(fd, &st) != 0 or _read_header(fd, &snapshot) != 0 or not _places_sound(&snapshot, st.st_size) \
            or offset < cw_place_offset(0):
        return "a place"
    i = (offset - cw_place_offset(0)) // CW_PLACE_SIZE
    if i < snapshot.max_senders:
        return f"its sender place {i}"
    return f"its receiver place {i - snapshot.max_senders}"


def _remove_orphaned_temporaries():
    """Unlink the private files of channel creations whose process died before naming them.

    A creator holds the lifecycle byte of its temporary file until the file has
    the channel's name, so a temporary whose lock can be taken is an orphan.
    One this process may not open is not judged; one it may not unlink is
    skipped with a RuntimeWarning.
    """
    cdef int fd
    cdef struct_stat st
    for entry in os.listdir(SHM_DIR):
        # .cywhip.<pid>.<random>.tmp
        if not (entry.startswith("." + FILE_PREFIX) and entry.endswith(".tmp") and len(entry.split(".")) == 5):
            continue
        path = os.path.join(SHM_DIR, entry)
        fd = c_open(os.fsencode(path), O_RDWR | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0:
            continue
        try:
            if fstat(fd, &st) != 0 or not S_ISREG(st.st_mode):
                continue
            if cw_ofd_trylock(fd, CW_LIFECYCLE_LOCK_BYTE) != 0:
                continue      # its creator is alive and still building it
            if not _names_file(path, fd):
                continue
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                warnings.warn(f"cywhip.remove_stale(): cannot remove {path}, left by a channel creation "
                              f"that did not finish: {exc.strerror}; skipped it", RuntimeWarning)
        finally:
            c_close(fd)
