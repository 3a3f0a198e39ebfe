"""Errors that say what to do: each names the offending values, what was expected, and the action."""
import asyncio
import ctypes
import logging
import time

import pytest

import cywhip
import cywhip.asyncio as ca
from cywhip import ChannelMismatchError, Receiver, SendTimeout, Sender

np = pytest.importorskip("numpy")


class Tick(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_int64), ("price", ctypes.c_double), ("size", ctypes.c_int64)]


TICK = np.dtype([("seq", "<i8"), ("price", "<f8"), ("size", "<i8")])


# ------------------------------------------------------------------ opening

def test_an_untyped_receiver_of_the_wrong_length_is_told_the_record_size_and_the_ring_size(channel):
    with Sender(channel, message_type=Tick, max_queued_messages=65536):
        with pytest.raises(ChannelMismatchError) as err:
            Receiver(channel, message_length=16, max_queued_messages=4096)
    text = str(err.value)
    assert "of 24 bytes" in text and "message_length=16" in text, text
    assert "message_length=24" in text and "max_queued_messages=65536 (this end: 4096)" in text, text
    assert "untyped sender" not in text, text


def test_an_unknown_keyword_names_the_class_and_the_keyword_it_resembles(channel):
    with pytest.raises(TypeError, match=r"^Sender\(\) got an unexpected keyword argument 'max_queued'; "
                                        r"did you mean 'max_queued_bytes' or 'max_queued_messages'\?"):
        Sender(channel, message_length=8, max_queued=8)
    with pytest.raises(TypeError, match=r"^Receiver\(\) got an unexpected keyword argument 'on_mesage'; "
                                        r"did you mean 'on_message'\?"):
        Receiver(channel, message_length=8, on_mesage=print)
    with pytest.raises(TypeError, match=r"^Receiver\(\) got an unexpected keyword argument 'zzz'; "
                                        r"it takes name, message_deserializer, message_length"):
        Receiver(channel, message_length=8, zzz=1)
    with pytest.raises(TypeError, match=r"Sender\(\) got an unexpected keyword argument 'max_queued'"):
        ca.Sender(channel, message_length=8, max_queued=8)
    assert not cywhip.channels() or all(c.name != channel for c in cywhip.channels())


def test_a_number_in_the_callbacks_place_says_message_length_goes_by_keyword(channel):
    with pytest.raises(TypeError, match=r"Sender\(\)'s second positional argument is the message_serializer, "
                                        r"got 8: give message_length by keyword \(Sender\(name, message_length=8\)\)"):
        Sender(channel, 8)
    with pytest.raises(TypeError, match=r"Receiver\(\)'s second positional argument is the "
                                        r"message_deserializer, got 64: give message_length by keyword"):
        Receiver(channel, 64)
    with pytest.raises(TypeError, match=r"Receiver\(\): on_message must be callable, got 'x'"):
        Receiver(channel, message_length=8, on_message="x")


# ------------------------------------------------------------- typed sends

def _bytes_refused(tx):
    """The text of the TypeError a typed sender raises for 24 bytes (a record's size)."""
    with pytest.raises(TypeError) as err:
        tx.send(b"x" * 24)
    return str(err.value)


def test_bytes_sent_on_a_ctypes_channel_are_told_how_to_make_a_record(channel):
    with Sender(channel, message_type=Tick, max_queued_messages=8) as tx:
        text = _bytes_refused(tx)
    assert "carries Tick records (24 bytes), not bytes" in text and "Tick.from_buffer_copy(data)" in text, text
    assert "send_array" not in text, text


def test_bytes_sent_on_a_numpy_channel_are_told_how_to_make_a_record_and_arrays_go_to_send_array(channel):
    with Sender(channel, message_type=TICK, max_queued_messages=8) as tx:
        text = _bytes_refused(tx)
        assert "got bytes" in text and "numpy.frombuffer(data, dtype)[0]" in text, text
        assert "send_array" not in text, text
        with pytest.raises(TypeError, match=r"send\(\) takes one record: use send_array\(\) for an array"):
            tx.send(np.zeros(3, TICK))


# ---------------------------------------------------------------- timeouts

NEGATIVE = "timeout must be a non-negative number of seconds, or None to wait as long as it takes; got -1"


def _with_a_negative_timeout(tx, rx):
    """Every call of a typed sender and receiver that takes a timeout, given -1, by name."""
    return {
        "send": lambda: tx.send(np.zeros(1, TICK)[0], timeout=-1),
        "send_many": lambda: tx.send_many([np.zeros(1, TICK)[0]], timeout=-1),
        "send_array": lambda: tx.send_array(np.zeros(1, TICK), timeout=-1),
        "recv": lambda: rx.recv(timeout=-1),
        "recv_many": lambda: rx.recv_many(2, timeout=-1),
        "recv_into": lambda: rx.recv_into(np.zeros(2, TICK), timeout=-1),
        "recv_array": lambda: rx.recv_array(2, timeout=-1),
    }


def test_a_negative_timeout_is_refused_at_once_by_every_call_even_with_room_or_messages(channel):
    with Sender(channel, message_type=TICK, max_queued_messages=64) as tx, \
            Receiver(channel, message_type=TICK, max_queued_messages=64) as rx:
        tx.send_array(np.zeros(8, TICK))           # messages waiting, and room left
        calls = dict(_with_a_negative_timeout(tx, rx), borrow=lambda: rx.borrow(2, timeout=-1))
        for name, call in calls.items():
            with pytest.raises(ValueError, match=NEGATIVE):
                call()
            assert (tx.published, rx.taken) == (8, 0), name   # nothing sent, nothing taken


def test_a_negative_timeout_is_refused_at_once_by_every_asyncio_call(channel):
    async def main():
        async with ca.Sender(channel, message_type=TICK, max_queued_messages=64) as tx, \
                ca.Receiver(channel, message_type=TICK, max_queued_messages=64) as rx:
            await tx.send_array(np.zeros(8, TICK))
            calls = _with_a_negative_timeout(tx, rx)
            for name, call in calls.items():
                with pytest.raises(ValueError, match=NEGATIVE):
                    await call()
                assert (tx.published, rx.taken) == (8, 0), name
    asyncio.run(main())


# ---------------------------------------------------------------- groups

def test_a_send_timeout_names_the_durable_group_without_members_that_holds_the_ring_full(channel):
    with Sender(channel, message_length=8, max_queued_messages=4, max_receivers=2) as tx:
        Receiver(channel, message_length=8, max_queued_messages=4, max_receivers=2, group="risk").close()
        for i in range(4):
            tx.send(b"%8d" % i)
        with pytest.raises(SendTimeout) as err:
            tx.send(b"x", timeout=0.01)
        with pytest.raises(SendTimeout) as err_many:
            tx.send_many([b"x"], timeout=0.01)
    for e in (err, err_many):
        text = str(e.value)
        assert "group 'risk' holds it full: a durable group with no live member (4 messages wait for it)" in text, text
        assert f"cywhip.remove_group({channel!r}, 'risk')" in text, text
        assert f"python -m cywhip remove-group {channel} risk" in text, text


def test_a_send_timeout_names_the_group_whose_live_members_do_not_take(channel):
    import os
    with Receiver(channel, message_length=8, max_queued_messages=4, max_receivers=2, group="slow"):
        with Sender(channel, message_length=8, max_queued_messages=4, max_receivers=2) as tx:
            for i in range(4):
                tx.send(b"%8d" % i)
            with pytest.raises(SendTimeout) as err:
                tx.send(b"x", timeout=0.01)

        async def main():
            async with ca.Sender(channel, message_length=8, max_queued_messages=4, max_receivers=2) as atx:
                await atx.send(b"x", timeout=0.01)
        with pytest.raises(SendTimeout) as aerr:
            asyncio.run(main())
    for e in (err, aerr):
        text = str(e.value)
        assert f"group 'slow' holds it full (4 messages wait for it; its members, pid {os.getpid()}, " \
               f"have not taken them yet)" in text, text


def test_a_send_timeout_on_a_plain_channel_names_no_group(channel):
    with Sender(channel, message_length=8, max_queued_messages=2) as tx:
        tx.send(b"a")
        tx.send(b"b")
        with pytest.raises(SendTimeout) as err:
            tx.send(b"c", timeout=0.01)
    assert str(err.value) == f"channel {channel!r} stayed full (2 messages queued) for 0.01 s"


# ------------------------------------------------------- a failing callback

@pytest.mark.parametrize("kind", ["on_message", "on_batch"])
def test_a_failing_callback_is_logged_at_once_with_its_traceback_and_raised_by_close(channel, caplog, kind):
    def fail(msg):
        raise ValueError("bad price 17")

    caplog.set_level(logging.ERROR, logger="cywhip")
    with Sender(channel, message_length=8) as tx:
        rx = Receiver(channel, message_length=8, **{kind: fail})
        try:
            tx.send(b"17")
            deadline = time.monotonic() + 10
            while rx.running:               # the thread stops on the error
                assert time.monotonic() < deadline, "the receive thread did not stop"
                time.sleep(0.001)
            records = [r for r in caplog.records if r.name == "cywhip"]
            assert len(records) == 1, records
            text = records[0].getMessage()
            assert text.startswith(f"Receiver {channel!r} stopped delivering to {kind}: ValueError: bad price 17"), text
            assert "close() raises this error" in text and "on_error=callable" in text, text
            assert records[0].exc_info[1] is rx.exception
            assert "bad price 17" in caplog.text and "Traceback" in caplog.text
        finally:
            with pytest.raises(ValueError, match="bad price 17"):
                rx.close()
