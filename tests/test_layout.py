"""The layout the compiler produced matches docs/protocol.md."""
import pathlib
import re

from cywhip._region import file_size_for, slot_size_for
from cywhip._ring import layout

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def documented_fields():
    rows = re.findall(r"^\| (\d+) \| (\d+) \| `(\w+)` \|", DOC.read_text(), re.M)
    return {name: (int(offset), int(size)) for offset, size, name in rows}


def test_every_documented_header_field_is_where_the_compiler_put_it():
    fields = documented_fields()
    actual = layout()
    assert len(fields) == 20
    for name, (offset, _size) in fields.items():
        key = "header_size_field" if name == "header_size" else name
        assert actual[key] == offset, name


def test_fields_written_by_different_ends_sit_on_different_128_byte_lines():
    actual = layout()
    lines = {name: actual[name] // 128 for name in
             ("message_length", "write_cursor", "read_cursor", "sender_waiting", "receiver_waiting", "sender_pid")}
    assert len(set(lines.values())) == len(lines)
    assert actual["sizeof_header"] <= actual["header_size"] == 4096


def test_slot_and_file_sizes_follow_the_documented_formulas():
    assert slot_size_for(32) == 40
    assert slot_size_for(1) == 16
    assert slot_size_for(33) == 48
    assert file_size_for(32, 200) == 4096 + 8192
    assert file_size_for(8, 1) == 8192
