"""The rooms above the ring read no cursor, no slot and no header field: they call the ring.

docs/architecture.md: the ring owns every cursor, every slot header and the slot layout; the
region owns the file and its header.  The end, the channel, the codec, the Cython API and the
asyncio face reach them only through ring functions (ring_available(), ring_recv_peek(),
ring_read_position(), ring_waiting_word(), ...), so that a new kind of record or a new
protocol changes the ring alone.  This test reads those rooms' sources for what would mean
otherwise.
"""
import pathlib
import re

import pytest

import cywhip

PKG = pathlib.Path(cywhip.__file__).resolve().parent

# The rooms above the ring and the region, with their declarations.
ABOVE = ("_end.pyx", "_end.pxd", "_channel.pyx", "_channel.pxd", "_codec.pyx", "_codec.pxd",
         "_async.pyx", "capi.pyx", "capi.pxd", "asyncio.py")

# What only the ring (and the region, for the header) may read or compute.
BELOW = {
    "a shared cursor": r"\.(?:write_cursor|read_cursor)\b",
    "a header field": r"\bhdr\.",
    "a slot header": r"\bcw_(?:many_)?slot_header\b|\bCW_(?:MANY_)?SLOT_HEADER_SIZE\b",
    "a place or group entry's field": r"\.(?:intent|hold_start|hold_end|groups_gen)\b",
    "a place or group entry's address": r"\bcw_(?:place|group)_offset\b|\._place\(",
    "a waiting word": r"\b(?:sender|receiver)_waiting\b",
    # (region.slots_offset is the region's, which ring_attach() takes.)
    "slot addressing": r"\b(?:ring|r)\.(?:slots|slot_size|slot_header|slots_offset)\b|\bCW_SLOT_ALIGN\b",
    "a private cursor of the ring": (r"\.(?:write_index|read_index|write_cache|read_cache)\b"
                                     r"|\b(?:ring|r)\.(?:read|write)\b"),
}


def _code_lines(path):
    """(number, line) of each line of code, without comments (docstrings may name fields)."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("#", 1)[0]
        if code.strip():
            yield number, code


def reads_below(path):
    return [f"{path.name}:{number}: {what}: {code.strip()}"
            for number, code in _code_lines(path)
            for what, pattern in BELOW.items() if re.search(pattern, code)]


@pytest.mark.parametrize("name", ABOVE)
def test_rooms_above_the_ring_call_the_ring(name):
    assert not reads_below(PKG / name)


def test_the_check_sees_what_it_looks_for(tmp_path):
    # The forms the rooms above the ring once used, each caught.
    sample = tmp_path / "sample.pyx"
    sample.write_text(
        "length = cw_load_relaxed_u32(<uint32_t *>(r.slots + r.read_index * r.slot_size))\n"
        "w = cw_load_acquire_u64(&r.hdr.write_cursor)\n"
        "intent = &region._place(region.place).intent\n"
        "slot_size = r.ring.slot_size\n"
        "start = self.ring.read\n"
        "word = &ring.hdr.sender_waiting\n"
        "# r.hdr.write_cursor in a comment is no read\n")
    found = reads_below(sample)
    assert [f.split(":")[1] for f in found] == ["1", "1", "2", "2", "3", "3", "4", "5", "6", "6"]


# A slot's size or address computed by hand: (length + 7) // 8 * 8, i * slot_size, ...
BY_HAND = r"CW_SLOT_ALIGN\s*-\s*1|\+\s*7\)\s*//\s*8|\*\s*(?:r\.|ring\.)?slot_size\b|\bslot_size\s*\*"


def test_slot_size_and_address_come_from_the_record_descriptor():
    # layout.h's cw_fixed_* functions are the one place (docs/protocol.md, "Slot").
    sources = [p for p in PKG.rglob("*") if p.suffix in (".pyx", ".pxd", ".pxi", ".py", ".h")
               and p.name != "layout.h"]
    assert len(sources) > 20
    found = [f"{p.relative_to(PKG)}:{number}: {code.strip()}"
             for p in sources for number, code in _code_lines(p) if re.search(BY_HAND, code)]
    assert not found
