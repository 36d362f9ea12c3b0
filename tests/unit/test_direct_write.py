"""Switch messages written on the connection at once (`ryu_shell.direct_write`) only when
that keeps the byte stream in order: a fake datapath with Ryu's send queue and writer
greenlet (the same loop as Ryu's `Datapath._send_loop`) over a real socket pair."""
from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import eventlet
    from eventlet.green import socket as green_socket
    from eventlet.queue import LightQueue
    from eventlet.semaphore import BoundedSemaphore

from controller.ryu_shell import direct_write


class FakeDp:
    """Ryu's datapath, as far as sending goes: a queue and a greenlet that empties it."""

    def __init__(self, sock, size: int = 16):
        self.socket = sock
        self.send_q = LightQueue(size)
        self._send_q_sem = BoundedSemaphore(size)
        self.queued: list[bytes] = []
        eventlet.spawn(self._send_loop)

    def send(self, buf: bytes) -> bool:
        self._send_q_sem.acquire()
        self.queued.append(buf)
        self.send_q.put(buf)
        return True

    def _send_loop(self):
        while True:
            buf = self.send_q.get()
            self._send_q_sem.release()
            self.socket.sendall(buf)


def pair():
    a, b = green_socket.socketpair()
    a.setsockopt(green_socket.SOL_SOCKET, green_socket.SO_SNDBUF, 4096)
    b.setsockopt(green_socket.SOL_SOCKET, green_socket.SO_RCVBUF, 4096)
    return a, b


def read_all(sock, n: int) -> bytes:
    out = b""
    with eventlet.Timeout(5):
        while len(out) < n:
            out += sock.recv(65536)
    return out


def test_written_at_once_only_after_a_queued_write_went_through_the_tracked_socket():
    a, b = pair()
    dp = FakeDp(a)
    direct_write.track(dp)
    assert direct_write.write(dp, b"first") and dp.queued == [b"first"]   # not ready yet
    assert read_all(b, 5) == b"first"
    assert direct_write.write(dp, b"second") and dp.queued == [b"first"]  # written at once
    assert read_all(b, 6) == b"second"
    direct_write.track(dp)                    # (wrapped once)
    assert isinstance(dp.socket, direct_write.Tracked) and \
        not isinstance(dp.socket._sock, direct_write.Tracked)


def test_while_ryus_writer_is_inside_a_write_everything_queues_behind_it_in_order():
    a, b = pair()
    dp = FakeDp(a)
    direct_write.track(dp)
    dp.send(b"x")
    assert read_all(b, 1) == b"x"
    big = bytes(range(256)) * 4096           # 1 MiB: far more than the socket holds
    dp.send(big)
    eventlet.sleep(0.01)
    assert dp.socket.sending                 # the writer yielded inside sendall
    got = b.recv(65536)                      # room in the socket again, the writer asleep
    assert got
    for i in range(3):
        assert direct_write.write(dp, b"after%d" % i)
    assert dp.queued[-3:] == [b"after0", b"after1", b"after2"]
    got += read_all(b, len(big) + 18 - len(got))
    assert got == big + b"after0after1after2"
    # a queue that is not empty keeps its order the same way
    eventlet.sleep(0.01)
    assert not dp.socket.sending


def test_what_the_kernel_does_not_take_at_once_is_queued_and_leaves_next_whole():
    class Half:
        """A raw socket that takes half of what it is given."""

        def __init__(self, real):
            self.real = real

        def send(self, data, *flags):
            return self.real.send(data[:max(1, len(data) // 2)], *flags)

        def __getattr__(self, name):
            return getattr(self.real, name)

    a, b = pair()
    dp = FakeDp(a)
    direct_write.track(dp)
    dp.send(b"x")
    read_all(b, 1)
    real_fd = dp.socket._sock.fd
    dp.socket._sock.fd = Half(real_fd)
    try:
        assert direct_write.write(dp, b"0123456789")
        assert dp.queued[-1] == b"56789"
        assert read_all(b, 10) == b"0123456789"
    finally:
        dp.socket._sock.fd = real_fd


def test_a_closing_connection_or_a_datapath_without_a_queue_goes_through_ryu():
    class Closing:
        send_q = None
        socket = None

        def send(self, buf):
            return False
    assert direct_write.write(Closing(), b"x") is False
    direct_write.track(Closing())            # nothing to wrap: no error


def test_a_sender_waiting_to_queue_is_never_overtaken():
    """Ryu's send takes a fair semaphore before it queues: a green thread waiting there (a
    role request, an echo reply) goes first, and a direct write would overtake it -- or,
    cut short by a full socket, have its tail queued behind it, splitting the message."""
    a, b = pair()
    dp = FakeDp(a, size=1)
    direct_write.track(dp)
    dp.send(b"x")
    assert read_all(b, 1) == b"x"
    dp._send_q_sem.acquire()                 # the queue's one place taken for a moment
    first = eventlet.spawn(dp.send, b"role")  # waits at the semaphore
    eventlet.sleep(0)
    assert dp.send_q.empty() and not dp.socket.sending and dp._send_q_sem._waiters
    second = eventlet.spawn(direct_write.write, dp, b"flows")
    eventlet.sleep(0)
    dp._send_q_sem.release()
    first.wait()
    second.wait()
    assert read_all(b, 9) == b"roleflows"
