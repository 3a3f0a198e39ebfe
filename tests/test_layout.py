"""The layout the compiler produced matches docs/protocol.md."""
import pathlib
import re

from cywhip._region import file_size_for, slot_size_for, slots_offset_for
from cywhip._testing._model import layout, slot_header_size, slot_offset, slot_size

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def documented_fields():
    rows = re.findall(r"^\| (\d+) \| (\d+) \| `(\w+)` \|", DOC.read_text(), re.M)
    return {name: (int(offset), int(size)) for offset, size, name in rows}


def test_every_documented_header_field_is_where_the_compiler_put_it():
    fields = documented_fields()
    actual = layout()
    assert len(fields) == 39
    for name, (offset, _size) in fields.items():
        key = "header_size_field" if name == "header_size" else name
        assert actual[key] == offset, name


def test_fields_written_by_different_ends_sit_on_different_128_byte_lines():
    actual = layout()
    lines = {name: actual[name] // 128 for name in
             ("message_length", "write_cursor", "read_cursor", "sender_waiting", "receiver_waiting",
              "sender_place", "receiver_place")}
    assert len(set(lines.values())) == len(lines)
    assert actual["sizeof_header"] <= actual["header_size"] == 4096
    # Each place is a line of its own, after the header page.
    assert actual["sizeof_place"] == actual["place_bytes"] == 128
    assert actual["places"] == 4096 and actual["receiver_place"] - actual["sender_place"] == 128


def test_slot_and_file_sizes_follow_the_documented_formulas():
    assert slot_size_for(32) == 40
    assert slot_size_for(1) == 16
    assert slot_size_for(33) == 48
    # Many senders: length, reserved, then seq at 8; the payload at 16.
    assert layout()["many_slot_header_size"] == 16 and layout()["slot_seq"] == 8
    assert slot_size_for(32, 2) == 48 and slot_size_for(1, 4) == 24
    assert file_size_for(32, 200, 2, 1) == 8192 + 200 * 48 + (-(200 * 48) % 4096)
    assert slots_offset_for(1, 1) == layout()["slots"] == 8192
    assert slots_offset_for(16, 1) == 4096 + 4096
    assert slots_offset_for(31, 1) == 4096 + 4096 and slots_offset_for(32, 1) == 4096 + 8192
    # Receiver groups (max_receivers > 1): the group entries follow the places.
    assert slots_offset_for(1, 2) == 4096 + 4096
    assert slots_offset_for(16, 16) == 4096 + 8192     # 32 places and 16 groups: 6144 bytes
    assert slots_offset_for(1, 15) == 4096 + 4096 and slots_offset_for(1, 16) == 4096 + 8192
    assert file_size_for(32, 200) == 8192 + 8192
    assert file_size_for(8, 1) == 12288
    assert file_size_for(8, 1, 32, 1) == 4096 + 8192 + 4096


# ------------------------------------------------------------------ end places

import os  # noqa: E402

import pytest  # noqa: E402

import cywhip  # noqa: E402
from cywhip import ChannelBusyError, ChannelMismatchError, Sender  # noqa: E402
from cywhip._region import Region  # noqa: E402

SENDER, RECEIVER = 0, 1


@pytest.mark.parametrize("kwargs,message", [
    ({"max_senders": 3}, "max_senders=3, this end asked for max_senders=1"),
    ({"max_receivers": 2}, "max_receivers=2, this end asked for max_receivers=1"),
    ({"topology": 7}, r"topology 7 \(unknown\), this end asked for topology 1 \(one receiver\)"),
])
def test_a_channel_made_with_other_places_or_topology_is_refused_naming_both_values(channel, kwargs, message):
    held = Region.open(channel, 8, 4, RECEIVER, **kwargs)
    try:
        with pytest.raises(ChannelMismatchError, match=message):
            Sender(channel, message_length=8, max_queued_messages=4)
    finally:
        held.close()


def test_ends_claim_free_places_in_order_and_one_more_names_every_holder(channel):
    regions = [Region.open(channel, 8, 4, SENDER, max_senders=3) for _ in range(3)]
    try:
        assert [r.place for r in regions] == [0, 1, 2]
        with pytest.raises(ChannelBusyError, match=r"already has its 3 senders \(max_senders=3\): "
                                                    rf"process {os.getpid()} \(this process, 3 places\) holds them") as info:
            Region.open(channel, 8, 4, SENDER, max_senders=3)
        assert info.value.pids == [os.getpid()] * 3
        [listed] = [c for c in cywhip.channels() if c.name == channel]
        assert [p.alive for p in listed.senders] == [True, True, True]
        assert listed.receivers == (cywhip.PlaceInfo(0, False),)
        # A freed place is taken again by the next end.
        regions[1].close()
        again = Region.open(channel, 8, 4, SENDER, max_senders=3)
        assert again.place == 1
        regions[1] = again
        with pytest.raises(ChannelBusyError):
            cywhip.remove_stale(channel)
    finally:
        for r in regions:
            r.close()
    assert cywhip.remove_stale(channel) == [channel]


def test_channels_lists_one_place_per_end_of_a_one_to_one_channel(channel):
    with Sender(channel, message_length=8, max_queued_messages=4):
        [listed] = [c for c in cywhip.channels() if c.name == channel]
        assert listed.senders == (cywhip.PlaceInfo(os.getpid(), True),)
        assert listed.receivers == (cywhip.PlaceInfo(0, False),)
        assert listed.sender_alive and not listed.receiver_alive


def test_the_record_descriptor_is_the_one_the_region_and_tools_use():
    # layout.h's cw_fixed_* seen from Python: the region's sizes and the test tools' agree.
    for length in (1, 7, 8, 9, 32, 33, 4096, 0x7FFFFFF0):
        for senders in (1, 2, 64):
            size = slot_size(length, senders)
            head = slot_header_size(senders)
            assert size == slot_size_for(length, senders) == head + -(-length // 8) * 8
            assert size % layout()["slot_align"] == 0
    assert slot_header_size(1) == layout()["slot_header_size"]
    assert slot_header_size(2) == layout()["many_slot_header_size"]
    assert [slot_offset(40, i) for i in range(4)] == [0, 40, 80, 120]
