"""cywhip's channels awaited from asyncio: ``cywhip.asyncio.Sender`` and ``Receiver``.

They take the same arguments as :class:`cywhip.Sender` and :class:`cywhip.Receiver`
(unknown keyword arguments are passed on unchanged) and raise the same errors;
only the waiting changes::

    import cywhip.asyncio

    async def consume():
        async with cywhip.asyncio.Receiver("prices", message_length=64) as rx:
            async for msg in rx:
                ...

How it waits.  A call does nothing until it is awaited.  ``recv``,
``recv_many``, ``send`` and ``async for`` return a small compiled awaitable
(cywhip._async), the other calls are coroutines.  The first step of either
tries the plain, non-blocking path on the loop thread: when messages (or free
slots) are there, it takes (or sends) them at once, without a system call and
without going through the event loop; the awaitable then returns without
suspending and without making a coroutine.  When nothing can be done, the end
first looks again after each round of the loop, for ``spin_time`` (the plain
ends' argument, 50 µs by default); each round first yields the CPU to any
thread waiting for it (most likely the other end, about to answer), and the
loop runs its other tasks between looks.  An end whose previous wait slept
for over 1 ms sleeps at once, as does one with ``spin_time=0``.  Only then does
the end announce that it sleeps, on the same waiting word of the channel a
blocking end uses, and await a future.  The loop watches the end's own wake
descriptor (``fileno()``, docs/protocol.md "Waiting on a file descriptor"):
the other end's publish clears the word and makes the descriptor readable,
which wakes the loop's poll directly, and the message is then taken on the
loop thread.  (With ``CYWHIP_ASYNCIO_WAKER=thread``, for peers in another
network namespace, and for an end whose descriptor cannot be made, one thread
per event loop, per 127 waiting ends, sleeps in ``futex_waitv`` on the words
of all of that loop's sleeping ends and tells the loop through an eventfd.)
Waiting and taking are separate steps, so:

- a call never awaited, or closed or cancelled before its first step, has
  taken (or sent) nothing; one freed without being awaited warns
  (``RuntimeWarning``), as a coroutine does;
- a cancelled ``recv``/``recv_many``/``recv_into`` has taken nothing: the
  message stays first in line;
- a cancelled ``send`` has sent its message or not (it raises
  ``CancelledError`` only if it did not); a cancelled ``send_many`` or
  ``send_array`` raises ``CancelledError`` with ``sent`` set to how many
  messages (records) went out, and for a ``send_many`` of a one-shot iterator,
  ``unsent`` holding the messages drawn from it that did not;
- on ``timeout``, ``SendTimeout`` (a ``queue.Full``) carries ``sent`` as the
  plain one does; ``ReceiveTimeout`` is a ``queue.Empty``.

So that the loop is never held, one call copies at most about 1 MiB (or, for
messages longer than that, one message) between yields to the loop:
``send_many`` and ``send_array`` go out in such steps, yielding to the loop
between them when the loop has not run for 2 ms; ``recv_many`` and
``recv_into`` take at most one step's worth per call (they return what they
took, like their plain forms, which already stop at the ring's capacity).  A
stream that never lets the end wait still yields to the loop every 2 ms (for
messages of up to 4 KiB the fast calls look at the clock once every 16 calls,
so up to 15 more short messages may go first).

An end is used by one task at a time (as a plain end is used by one thread at
a time); ``close()`` may be called from any task or thread and ends a wait
with ``ChannelClosedError`` (an ``async for`` stops).
"""
import asyncio
import atexit
import itertools
import os
import threading
import types
import weakref
from os import sched_yield as _sched_yield
from time import monotonic_ns as _monotonic_ns

from cywhip import _channel
from cywhip._async import YIELD_NS, Waker, _Core, _ReceiverCore, _SenderCore, futex_waitv_supported, _SLICE_NAMES
from cywhip._end import check_count
from cywhip.errors import ChannelClosedError, ReceiveTimeout, SendTimeout

__all__ = ["Sender", "Receiver"]

# Bytes one step copies at most (a few hundred microseconds of copying).
STEP_BYTES = 1 << 20
# An end looks again for spin_time before it sleeps unless its previous wait went to sleep for
# longer than this (ns): one that waits for rare messages sleeps at once.
SPIN_AFTER_NS = 1_000_000

_SUPPORTED = None

# How a sleeping end is woken: "fd", by its own wake descriptor watched by the loop
# (loop.add_reader: the other end's wake-up reaches the loop's poll directly), or "thread", by a
# waker thread sleeping in futex_waitv on the waiting words (CYWHIP_ASYNCIO_WAKER=thread, for
# ends whose peers live in another network namespace, whose wake bytes cannot reach them; an
# end whose descriptor cannot be made falls back to it).
_WAKER = "thread" if os.environ.get("CYWHIP_ASYNCIO_WAKER") == "thread" else "fd"


def _check_kernel():
    global _SUPPORTED
    if _SUPPORTED is None:
        _SUPPORTED = futex_waitv_supported()
    if not _SUPPORTED:
        raise OSError("cywhip.asyncio's waker thread (CYWHIP_ASYNCIO_WAKER=thread, or an end whose "
                      "wake descriptor could not be made) needs futex_waitv, which Linux has from "
                      f"version 5.16; this kernel is {os.uname().release}. Without that variable, "
                      f"ends wait on their descriptors")


# ------------------------------------------------------------------ wakers


class _WakerThread:
    """One Waker, its thread and its eventfd, registered with one loop."""

    def __init__(self, hub):
        self.hub = hub
        self.efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.waker = Waker(self.efd)
        # slot -> (gen, future) of the wait in progress
        self.waits = {}
        # slot -> the plain end bound there: an end is never collected (and unmapped) while bound
        self.ends = {}
        # The eventfd is closed by whichever lets go of it last: the thread, which writes it
        # until it ends, or the loop side, once it no longer reads it.  A stop() whose join
        # gave up on a thread still running leaves it open for the thread to close, so the
        # thread never writes into a descriptor number reused by another file.
        self._efd_lock = threading.Lock()
        self._thread_done = False
        self._efd_dropped = False
        self.thread = threading.Thread(target=self._run, name="cywhip-asyncio-waker", daemon=True)
        self.thread.start()
        hub.loop.add_reader(self.efd, self._on_fired)

    def _run(self):
        try:
            self.waker.run()
        finally:
            with self._efd_lock:
                self._thread_done = True
                close = self._efd_dropped
            if close:
                os.close(self.efd)

    def _drop_efd(self):
        """The loop side no longer reads the eventfd: close it, or leave that to the thread."""
        with self._efd_lock:
            if self._efd_dropped:
                return
            self._efd_dropped = True
            close = self._thread_done
        if close:
            os.close(self.efd)

    def _on_fired(self):
        try:
            os.read(self.efd, 8)
        except BlockingIOError:
            pass
        waits = self.waits
        for slot, gen in self.waker.collect():
            entry = waits.get(slot)
            if entry is not None and entry[0] == gen and not entry[1].done():
                entry[1].set_result(True)

    def stop(self, on_loop_thread):
        """End the thread and unregister the eventfd (on the loop thread, or scheduled there).

        The thread writes the eventfd, and reads the ends' waiting words, only while it holds
        the waker's lock and within the same hold of it in which it saw ``stopping`` clear
        (``Waker._run``); ``Waker.stop()`` sets ``stopping`` under that lock, so once it has
        returned the thread touches neither again, only leaves (``_stop_all_at_exit`` relies
        on the same).  Even so the eventfd is closed by whichever of the thread and the loop
        side lets go of it last (``_drop_efd``), so a join that timed out (the thread
        descheduled that long) never leaves its number to be reused under it.
        """
        self.waker.stop()
        self.thread.join(_STOP_JOIN_S)
        loop = self.hub.loop
        if on_loop_thread or loop.is_closed():
            _drop_reader(loop, self)
        else:
            try:
                loop.call_soon_threadsafe(_drop_reader, loop, self)
            except RuntimeError:      # closed meanwhile
                _drop_reader(loop, self)


# How long stop() waits for a waker thread to end (it ends within one wake-up).
_STOP_JOIN_S = 5


def _drop_reader(loop, wt):
    if not loop.is_closed():
        try:
            loop.remove_reader(wt.efd)
        except Exception:
            pass
    wt._drop_efd()


class _Hub:
    """The waker threads of one event loop: one per WAKER_SLOTS ends that use the loop."""

    def __init__(self, loop):
        self.loop = loop
        self.lock = threading.Lock()
        self.threads = []
        self.pid = os.getpid()

    def bind(self, end):
        """A slot for a plain end: (waker thread, slot, gen).  On the loop thread."""
        with self.lock:
            for wt in self.threads:
                got = wt.waker.bind()
                if got is not None:
                    break
            else:
                wt = _WakerThread(self)
                self.threads.append(wt)
                got = wt.waker.bind()
            wt.ends[got[0]] = end
            return wt, got[0], got[1]

    def unbind(self, wt, slot, gen, on_loop_thread):
        """Give a slot up, from any thread; stop its thread when it serves no end."""
        with self.lock:
            wt.waker.close_slot(slot, gen)
            entry = wt.waits.get(slot)
            if entry is not None and entry[0] == gen:
                del wt.waits[slot]
            wt.ends.pop(slot, None)
            stop = wt.waker.bound == 0 and wt in self.threads
            if stop:
                self.threads.remove(wt)
        if stop:
            wt.stop(on_loop_thread)


_hubs = weakref.WeakKeyDictionary()
_hubs_lock = threading.Lock()


def _hub(loop):
    with _hubs_lock:
        hub = _hubs.get(loop)
        if hub is None:
            hub = _hubs[loop] = _Hub(loop)
        return hub


def _forget_after_fork():
    # The threads did not survive the fork; the ends are the parent's (a child opens its own).
    global _hubs, _hubs_lock
    _hubs = weakref.WeakKeyDictionary()
    _hubs_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


@atexit.register
def _stop_all_at_exit():
    # Runs before cywhip._end's own exit handler closes (and unmaps) every plain end,
    # so no waker thread still reads a waiting word then.
    for hub in list(_hubs.values()):
        if hub.pid != os.getpid():
            continue
        for wt in list(hub.threads):
            wt.waker.stop()
            wt.thread.join(5)


# --------------------------------------------------------------------- ends


@types.coroutine
def _one_round():
    """Let the loop run one round (the task is scheduled again at once), and first any thread
    of this machine that waits for the CPU: most likely the other end, about to answer."""
    _sched_yield()
    yield


class _AsyncEnd(_Core):
    """What the asyncio Sender and Receiver share: the plain end, the slot, waiting, closing.

    The fields the fast calls read from C (``_end``, ``_busy``, ``_closed``, ``_ran``,
    ``_step``) are declared by ``cywhip._async._Core``, and so are the methods they call:
    ``_begin`` and ``_deadline`` (there), and the waiting coroutines the subclasses supply
    (``_recv_waiting``, ``_recv_many_waiting``, ``_anext_waiting``, ``_send_waiting``).
    """

    _plain = None

    def __init__(self, *args, **kwargs):
        if _WAKER == "thread":
            _check_kernel()
        self._hub = None
        # Waking by the end's own descriptor: the loop whose reader watches it, and how often
        # that reader found it readable (for tests).
        self._fd = None if _WAKER == "fd" else False
        self._reader_loop = None
        self._wakeups = 0
        # Whether a wait of this end ever went past its spin, to arm (for tests).
        self._has_slept = False
        self._pid = os.getpid()
        self._wt = None
        self._slot = -1
        self._gen = 0
        self._fut = None
        self._closed = False
        self._close_lock = threading.Lock()
        self._busy = False
        # When this end last let the loop run (suspended or yielded), CLOCK_MONOTONIC ns.
        self._ran = _monotonic_ns()
        # How long its last wait that went to sleep lasted, or 0 if the last wait ended in its
        # spin (ns): whether the next one spins first.
        self._slept = 0
        self._attach(self._plain(*args, **kwargs))
        self._spin = self._spin_ns
        length = max(1, self._end.message_length)
        self._step = max(1, min(self._end.max_queued_messages, STEP_BYTES // length))

    # --------------------------------------------------------- the plain end's state

    name = property(lambda self: self._end.name)
    message_length = property(lambda self: self._end.message_length)
    max_queued_messages = property(lambda self: self._end.max_queued_messages)
    max_queued_bytes = property(lambda self: self._end.max_queued_bytes)
    message_type = property(lambda self: self._end.message_type)
    depth = property(lambda self: self._end.depth)

    @property
    def closed(self):
        return self._closed or self._end.closed

    def fileno(self):
        """The plain end's wake descriptor (:meth:`cywhip.Receiver.fileno`): readable when this
        end may have something to do, for another loop or a selector; ``try_recv()`` /
        ``try_send()`` look again and arm it.  (Once asked for, every look of the end that finds
        nothing arms it, the awaited calls' looks too: a system call each.)"""
        return self._end.fileno()

    def __repr__(self):
        return f"<cywhip.asyncio.{type(self).__name__} of {self._end!r}>"

    # ------------------------------------------------------------------ one task

    async def _let_loop_run(self):
        """Yield to the loop if this end has kept it for YIELD_NS (before a step, never after one)."""
        if _monotonic_ns() - self._ran > YIELD_NS:
            # Counted before yielding: a call cancelled during the yield leaves the next
            # one free to go straight on, so tiny timeouts cannot starve the end.
            self._ran = _monotonic_ns()
            await asyncio.sleep(0)

    # ------------------------------------------------------------------- waiting

    def _bind(self, loop):
        """Hold a slot of this loop's wakers (moving from another loop's if need be)."""
        with self._close_lock:
            if self._closed:
                self._end.close()
                return
            if self._wt is not None:
                old, slot, gen = self._wt, self._slot, self._gen
                self._wt = None
                old.hub.unbind(old, slot, gen, False)
            self._hub = _hub(loop)
            self._wt, self._slot, self._gen = self._hub.bind(self._end)

    def _raise_closed(self):
        raise ChannelClosedError(f"{type(self).__name__} {self.name!r} is closed")

    async def _sleep(self, deadline):
        """Wait until the other end may have made progress: True; False once deadline passes.

        Raises ChannelClosedError once closed.  Takes nothing: the caller
        takes afterwards, so a cancellation here loses nothing.
        """
        start = _monotonic_ns()
        if deadline is not None and start >= deadline:
            return False
        if self._spin and self._slept < SPIN_AFTER_NS:
            # Look again after each round of the loop, for spin_time: an answer that comes
            # that soon costs no wake-up of the waker thread or of the loop.
            until = start + self._spin
            if deadline is not None and deadline < until:
                until = deadline
            while True:
                await _one_round()
                now = self._ran = _monotonic_ns()
                if self._closed:
                    self._raise_closed()
                if self._ready_now():
                    self._slept = 0
                    return True
                if now >= until:
                    break
            if deadline is not None and now >= deadline:
                return False
        try:
            return await self._sleep_armed(deadline)
        finally:
            self._slept = _monotonic_ns() - start

    async def _sleep_armed(self, deadline):
        """_sleep() past its spin: arm the end's descriptor (or the waker) and await a future
        its reader (the waker's) resolves."""
        loop = asyncio.get_running_loop()
        self._has_slept = True
        if self._fd is None:
            try:
                self._fd = self._end._wake_fd()
            except OSError:
                # No descriptor (the kernel refused a socket, or its name is taken): the
                # waker thread serves this end.
                _check_kernel()
                self._fd = False
        if self._fd is not False:
            return await self._sleep_on_fd(loop, deadline)
        if self._wt is None or self._hub.loop is not loop:
            self._bind(loop)
        wt, slot, gen = self._wt, self._slot, self._gen
        if wt is None:
            self._raise_closed()
        st = wt.waker.arm(slot, gen, self._end)
        if st == 0:
            return True
        if st < 0:
            # The slot was given up: close() ran in another thread.
            self._raise_closed()
        fut = loop.create_future()
        wt.waits[slot] = (gen, fut)

        def done(woke):
            entry = wt.waits.get(slot)
            if entry is not None and entry[1] is fut:
                del wt.waits[slot]
            wt.waker.disarm(slot, gen)
        return await self._await_wake(loop, fut, deadline, done)

    async def _await_wake(self, loop, fut, deadline, done):
        """Await fut, which a wake-up resolves (True), until deadline passes (False); then
        ``done(woke)`` undoes what arming did.  Raises ChannelClosedError once closed."""
        self._fut = fut
        timer = None
        if deadline is not None:
            timer = loop.call_later(max(0.0, (deadline - _monotonic_ns()) / 1e9), _expire, fut)
        woke = False
        try:
            woke = await fut
        finally:
            self._fut = None
            if timer is not None:
                timer.cancel()
            done(woke)
            self._ran = _monotonic_ns()
        if self._closed:
            self._raise_closed()
        return woke

    def _watch(self, loop):
        """Have loop watch this end's descriptor (and the loop it watched before stop)."""
        with self._close_lock:
            if self._closed:
                self._raise_closed()
            old = self._reader_loop
            self._reader_loop = None
            if old is not None:
                _unwatch(old, self._fd, self._end, False)
            loop.add_reader(self._fd, self._on_readable, loop)
            self._reader_loop = loop

    def _on_readable(self, loop):
        """The loop's reader of the end's descriptor: read it empty, wake the wait in progress.
        A loop the end has left (its removal of the reader still pending) leaves it alone."""
        if loop is not self._reader_loop:
            return
        self._wakeups += 1
        self._end._drain_fd()
        fut = self._fut
        if fut is not None and not fut.done():
            fut.set_result(True)

    async def _sleep_on_fd(self, loop, deadline):
        """_sleep_armed() by the end's descriptor: announce with the descriptor's bit, look
        again, and await the loop's reader (docs/protocol.md, "Waiting from asyncio")."""
        if self._reader_loop is not loop:
            self._watch(loop)
        if self._end._arm_fd():
            return True
        end = self._end

        def done(woke):
            if not woke:
                # Timed out, cancelled or closed: the other end owes this end no wake-up.
                end._disarm_fd()
        return await self._await_wake(loop, loop.create_future(), deadline, done)

    def _armed_slice(self):
        """Why the sleeping end's wake-up comes in slices ("hole", "member", "group",
        "creator", "unfenced", "idle": ring_wait_slice_ns()) and the ns left to its next look (None:
        no slice); None if it is not armed.  For tests."""
        if self._fd is False:
            return None if self._wt is None else self._wt.waker.armed_slice(self._slot, self._gen)
        got = self._end._fd_slice()
        if got is None:
            return None
        return _SLICE_NAMES.get(got[0], str(got[0])), got[1]

    async def _retry(self, attempt, timed_out, timeout, tried):
        """The waiting loop of the calls that take (or send) at once or not at all: call
        ``attempt()``, one non-blocking try of the plain end, until it returns anything but
        ``_NOTHING``, sleeping between tries; raise ``timed_out(timeout)`` (the plain end's
        timeout error) once ``timeout`` s passed.  ``tried``: the call's first step has just
        tried, so unless the loop is owed a turn it sleeps before it tries again.
        """
        self._begin()
        try:
            if not tried or _monotonic_ns() - self._ran > YIELD_NS:
                await self._let_loop_run()
                got = attempt()
                if got is not _NOTHING:
                    return got
            deadline = self._deadline(timeout)
            while True:
                if not await self._sleep(deadline):
                    raise timed_out(timeout)
                got = attempt()
                if got is not _NOTHING:
                    return got
        finally:
            self._busy = False

    # ------------------------------------------------------------------- closing

    def close(self):
        """Close this end, from any task or thread; a wait in progress raises ChannelClosedError."""
        with self._close_lock:
            first = not self._closed
            self._closed = True
            wt, slot, gen, fut = self._wt, self._slot, self._gen, self._fut
            self._wt = None
            reader_loop, self._reader_loop = self._reader_loop, None
        if first and reader_loop is not None and self._pid == os.getpid():
            on_loop = _running_loop() is reader_loop
            _unwatch(reader_loop, self._fd, self._end, on_loop)
            _wake_on(reader_loop, fut, on_loop)
        if first and wt is not None and wt.hub.pid == os.getpid():
            loop = wt.hub.loop
            on_loop = _running_loop() is loop
            # Before the plain end unmaps: the waker thread lets go of the word.
            wt.hub.unbind(wt, slot, gen, on_loop)
            _wake_on(loop, fut, on_loop)
        self._end.close()

    def __del__(self):
        try:
            if not self._closed and (getattr(self, "_wt", None) is not None
                                     or getattr(self, "_reader_loop", None) is not None):
                self.close()
        except Exception:
            pass

    async def __aenter__(self):
        if self.closed:
            self._raise_closed()
        return self

    async def __aexit__(self, *exc):
        self.close()


# What one try of _retry() returns when it could do nothing now.
_NOTHING = object()


def _taking(take, *args):
    """One try of a plain receiver's call, ``take(*args, 0)``: what it took, or _NOTHING."""
    def attempt():
        try:
            return take(*args, 0)
        except ReceiveTimeout:
            return _NOTHING
    return attempt


def _unwatch(loop, fd, end, on_loop_thread):
    """Stop loop watching an end's descriptor, on the loop's thread.  The descriptor stays open
    while the plain end lives (closed, it is freed only when nothing holds it): the callback
    scheduled here holds it, so its number is not reused before the loop lets go of it."""
    def remove():
        if not loop.is_closed():
            try:
                loop.remove_reader(fd)
            except Exception:
                pass
        end  # noqa: B018 - kept alive until the loop let go of its descriptor
    if on_loop_thread or loop.is_closed():
        remove()
        return
    try:
        loop.call_soon_threadsafe(remove)
    except RuntimeError:      # closed meanwhile
        remove()


def _wake_on(loop, fut, on_loop_thread):
    """End the wait in progress (fut, if any) on loop's thread: a closed end's wait."""
    if fut is None:
        return
    if on_loop_thread:
        _wake(fut)
    elif not loop.is_closed():
        try:
            loop.call_soon_threadsafe(_wake, fut)
        except RuntimeError:
            pass


def _expire(fut):
    if not fut.done():
        fut.set_result(False)


def _wake(fut):
    if not fut.done():
        fut.set_result(True)


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Sender(_AsyncEnd, _SenderCore):
    """The sending end of channel ``name``, awaited: same arguments as :class:`cywhip.Sender`.

    ``send`` (of ``_SenderCore``) sends at once when there is room; otherwise it waits here.
    """

    _plain = _channel.Sender

    @property
    def published(self):
        return self._end.published

    def try_send(self, msg):
        """Send one message if there is room right now; return whether it was sent (no waiting)."""
        return self._end.try_send(msg)

    def reserve(self, size, timeout=None):
        """Write a message in place: ``async with sender.reserve(n) as buf: ...``, as
        :meth:`cywhip.Sender.reserve` (``truncate(m)`` on the object returned sends less),
        waiting for room without blocking the loop."""
        return _Reservation(self, size, timeout)

    def _send_waiting(self, msg, timeout):
        """send() once its first step found the ring full (or owed the loop a turn)."""
        end = self._end
        return self._retry(lambda: None if end.try_send(msg) else _NOTHING, end._full_error, timeout,
                           True)

    async def send_many(self, messages, timeout=None):
        """Send every message of an iterable; return how many were sent.

        On timeout raises SendTimeout whose ``sent`` says how many went out;
        if cancelled, the CancelledError carries ``sent`` too (and ``unsent``:
        messages drawn from a one-shot iterator that did not go out).
        """
        self._deadline(timeout)    # a timeout it cannot take is refused at once, waiting or not
        self._begin()
        end = self._end
        step = self._step
        sent = 0
        deadline = None
        chunk = []
        is_seq = isinstance(messages, (list, tuple))
        it = None if is_seq else iter(messages)
        pos = 0
        try:
            while True:
                if not chunk:
                    if is_seq:
                        chunk = messages[pos:pos + step]
                        pos += len(chunk)
                    else:
                        chunk = list(itertools.islice(it, step))
                    if not chunk:
                        return sent
                await self._let_loop_run()
                try:
                    k = end.send_many(chunk, 0)
                except SendTimeout as exc:
                    k = exc.sent
                sent += k
                chunk = chunk[k:] if k < len(chunk) else []
                if chunk:
                    if deadline is None:
                        deadline = self._deadline(timeout)
                    if not await self._sleep(deadline):
                        raise end._full_error(timeout, sent)
        except asyncio.CancelledError as exc:
            exc.sent = sent
            exc.unsent = [] if is_seq else list(chunk)
            raise
        finally:
            self._busy = False

    async def send_array(self, arr, timeout=None):
        """Send every record of a 1-D NumPy array of the channel's record type; return how many.

        Copies in steps of about 1 MiB on the loop thread, yielding between
        them.  On timeout raises SendTimeout, on cancellation CancelledError,
        either with ``sent``: how many records went out.
        """
        self._deadline(timeout)    # a timeout it cannot take is refused at once, waiting or not
        self._begin()
        end = self._end
        sent = 0
        try:
            try:
                n = len(arr)
            except TypeError:
                n = None
            if n is None or n == 0:
                # Not an array (the plain call says what is wrong), or nothing to send.
                return end.send_array(arr, 0)
            size = max(1, end.message_length)
            step = max(1, STEP_BYTES // size)
            deadline = None
            while sent < n:
                await self._let_loop_run()
                part = arr[sent:sent + step]
                try:
                    sent += end.send_array(part, 0)
                    continue
                except SendTimeout as exc:
                    sent += exc.sent
                if deadline is None:
                    deadline = self._deadline(timeout)
                if not await self._sleep(deadline):
                    raise end._records_full_error(timeout, sent, n)
            return sent
        except asyncio.CancelledError as exc:
            exc.sent = sent
            raise
        finally:
            self._busy = False

    def close(self):
        """Close this end.  Queued messages stay in the channel for a receiver."""
        super().close()


class Receiver(_AsyncEnd, _ReceiverCore):
    """The receiving end of channel ``name``, awaited: same arguments as :class:`cywhip.Receiver`
    (without ``on_message``/``on_batch``: iterate with ``async for`` instead).

    ``recv``, ``recv_many`` and ``__anext__`` (of ``_ReceiverCore``) take at once what is
    waiting; otherwise they wait here.
    """

    _plain = _channel.Receiver

    def __init__(self, *args, **kwargs):
        if len(args) > 4 or kwargs.get("on_message") is not None or kwargs.get("on_batch") is not None:
            raise TypeError("cywhip.asyncio.Receiver takes no on_message/on_batch: "
                            "use 'async for msg in receiver' or recv()")
        super().__init__(*args, **kwargs)

    @property
    def taken(self):
        return self._end.taken

    def try_recv(self):
        """Take the next message if one is waiting, else return None (no waiting)."""
        return self._end.try_recv()

    def _recv_waiting(self, timeout):
        """recv() once its first step found nothing waiting (or owed the loop a turn)."""
        end = self._end
        return self._retry(_taking(end.recv), end._empty_error, timeout, True)

    def _recv_many_waiting(self, max_count, timeout):
        """recv_many() once its first step found nothing waiting (or owed the loop a turn)."""
        check_count(max_count)
        end = self._end
        return self._retry(_taking(end.recv_many, min(max_count, self._step)), end._empty_error,
                           timeout, True)

    async def recv_into(self, out, timeout=None):
        """Fill a 1-D NumPy array of the channel's records with waiting records; return how many.

        Waits for at least one; copies at most about 1 MiB per call.
        """
        self._deadline(timeout)    # a timeout it cannot take is refused at once, waiting or not
        end = self._end
        try:
            n = len(out)
        except TypeError:
            n = None
        if n is not None and n > 0:
            step = max(1, STEP_BYTES // max(1, end.message_length))
            if n > step:
                out = out[:step]
        return await self._retry(_taking(end.recv_into, out), end._empty_error, timeout, False)

    async def recv_array(self, max_count, timeout=None):
        """Wait for at least one record, then take those waiting up to ``max_count`` (at most about
        1 MiB) as a new NumPy array."""
        check_count(max_count)
        self._deadline(timeout)    # a timeout it cannot take is refused at once, waiting or not
        end = self._end
        k = min(max_count, max(1, STEP_BYTES // max(1, end.message_length)))
        return await self._retry(_taking(end.recv_array, k), end._empty_error, timeout, False)

    def __aiter__(self):
        return self

    async def _anext_waiting(self):
        """async for's next message once its first step found nothing waiting."""
        try:
            return await self._recv_waiting(None)
        except ChannelClosedError:
            if self._closed:
                raise StopAsyncIteration from None
            raise

    def close(self):
        """Close this end.  Messages not yet taken stay in the channel for the next receiver."""
        super().close()


class _Reservation:
    """What cywhip.asyncio.Sender.reserve() returns: the plain end's reservation, entered once
    there is room (tried at once, then after each wake-up)."""

    def __init__(self, sender, size, timeout):
        self._sender = sender
        self._size = size
        self._timeout = timeout
        # Checks size (and that the end is a sender that is open) now, as the plain call does.
        self._claim = sender._end.reserve(size, timeout=0)
        self._used = None

    def truncate(self, size):
        """Send only the first ``size`` bytes when the block ends."""
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= self._size:
            # The plain reservation's own check and message.
            self._claim.truncate(size)
        self._used = size

    async def __aenter__(self):
        sender, end = self._sender, self._sender._end
        sender._deadline(self._timeout)

        def attempt():
            claim = end.reserve(self._size, timeout=0)
            try:
                buf = claim.__enter__()
            except SendTimeout:
                return _NOTHING
            self._claim = claim
            return buf

        got = attempt()
        if got is _NOTHING:
            got = await sender._retry(attempt, end._full_error, self._timeout, True)
        return got

    async def __aexit__(self, exc_type, exc, tb):
        if self._used is not None:
            self._claim.truncate(self._used)
        return self._claim.__exit__(exc_type, exc, tb)
