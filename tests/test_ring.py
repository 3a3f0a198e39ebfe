"""The ring's cursor and index arithmetic, driven in one process through RingModel."""
import collections

import pytest
from hypothesis import given, settings, strategies as st

from cywhip._testing._model import RingModel


def test_a_fresh_ring_is_empty_with_every_slot_free():
    ring = RingModel(5, 16)
    assert ring.free() == 5
    assert ring.available() == 0
    assert ring.recv_batch(10) == []


def test_indices_wrap_around_at_capacity():
    ring = RingModel(3, 8)
    for round_ in range(4):
        assert ring.send_batch([b"a", b"b"]) == 2
        assert ring.recv_batch(5) == [b"a", b"b"]
    assert ring.write_cursor == ring.read_cursor == 8
    assert ring.write_index == ring.read_index == 8 % 3


def test_a_full_ring_accepts_nothing_until_a_release():
    ring = RingModel(4, 8)
    assert ring.send_batch([b"%d" % i for i in range(6)]) == 4
    assert ring.free() == 0
    assert ring.recv_batch(1) == [b"0"]
    assert ring.free() == 1
    assert ring.send_batch([b"x", b"y"]) == 1


def test_impossible_cursors_are_reported_not_used():
    ring = RingModel(4, 8)
    ring.corrupt_cursors(10, 2)          # write - read > capacity
    with pytest.raises(ValueError, match="impossible"):
        ring.reattach()
    ring.corrupt_cursors(2, 10)          # read ahead of write
    with pytest.raises(ValueError, match="impossible"):
        ring.reattach()


def test_a_corrupt_write_cursor_seen_by_the_receiver_reads_as_an_error():
    ring = RingModel(4, 8)
    ring.send_batch([b"a"])
    ring.recv_batch(1)
    ring.corrupt_cursors(1 + 1000, 1)
    assert ring.available() == -1


ops = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.lists(st.binary(min_size=0, max_size=12), max_size=9)),
        st.tuples(st.just("recv"), st.integers(min_value=1, max_value=9)),
        st.tuples(st.just("reattach"), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(min_value=1, max_value=7),
       message_length=st.integers(min_value=1, max_value=12),
       start=st.integers(min_value=0, max_value=2**62),
       script=ops)
def test_ring_behaves_like_a_bounded_fifo(capacity, message_length, start, script):
    """Any interleaving of batches, from any starting cursor, matches a bounded deque."""
    ring = RingModel(capacity, message_length, start)
    model = collections.deque()
    for op, arg in script:
        if op == "send":
            msgs = [m[:message_length] for m in arg]
            sent = ring.send_batch(msgs)
            assert sent == min(len(msgs), capacity - len(model))
            model.extend(msgs[:sent])
        elif op == "recv":
            got = ring.recv_batch(arg)
            want = [model.popleft() for _ in range(min(arg, len(model)))]
            assert got == want
        else:
            ring.reattach()
        assert ring.write_cursor - ring.read_cursor == len(model)
        # Each end counts from its cached copy of the other's cursor: it may
        # undercount, never overcount, and says 0 only after a fresh look.
        free, available = ring.free(), ring.available()
        assert (0 < free <= capacity - len(model)) if len(model) < capacity else free == 0
        assert (0 < available <= len(model)) if model else available == 0
        assert ring.write_index == ring.write_cursor % capacity
        assert ring.read_index == ring.read_cursor % capacity
