"""TCP streams timed by the kernel: every read carries the time its bytes reached this host.

A busy client stamps a token when its event loop gets round to the socket, which at a few hundred
streams per core is milliseconds after the bytes arrived (benchmarks/loadgen/RESULTS.md). Linux
stamps every received packet (`SO_TIMESTAMPNS`), and `recvmsg` hands the stamp of the newest packet
it read alongside the data. `StampedTransport` is a minimal asyncio transport built on that: reads
via `recvmsg` on the loop's reader callback, writes straight to the socket (buffered only when the
socket is full). Its protocol gets `data_received_at(data, arrived)`, with `arrived` on the
perf_counter time line, so TTFT and ITL are the network's, not the client loop's. How long the
bytes waited in the kernel before the loop read them (`read_lags`) is what the loop would otherwise
have added: the load generator's health, not part of any latency. The stamp is the newest packet's:
chunks left unread until the next one arrives merge in the kernel's queue and share its stamp, so
timing stays exact only while reads keep up within one inter-token interval.

The kernel stamps CLOCK_REALTIME; `RealtimeBridge` maps it onto CLOCK_MONOTONIC (perf_counter) with
an offset measured between two monotonic reads and refreshed often, so an NTP step or slew between
refreshes costs at most what it moves in `REFRESH_S`.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import time
from array import array
from typing import Any, Protocol

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; Python does not export it
_TIMESPEC = struct.Struct("qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)
READ_SIZE = 1 << 16
REFRESH_S = 0.1


class RealtimeBridge:
    """Maps CLOCK_REALTIME nanoseconds (kernel packet stamps) to perf_counter seconds.

    `offset_ns` is refreshed by a timer on every loop that has a stamped transport, not per read:
    the read path stays a subtraction."""

    __slots__ = ("offset_ns", "_loops")

    def __init__(self) -> None:
        self.offset_ns = 0
        self._loops: set[int] = set()
        self.refresh()

    def refresh(self) -> None:
        """Offset = realtime - monotonic, from the tightest of a few bracketed reads."""
        best_gap, best_offset = None, 0
        for _ in range(3):
            before = time.perf_counter_ns()
            real = time.time_ns()
            after = time.perf_counter_ns()
            if best_gap is None or after - before < best_gap:
                best_gap, best_offset = after - before, real - (before + after) // 2
        self.offset_ns = best_offset

    def to_perf(self, realtime_ns: int) -> float:
        return (realtime_ns - self.offset_ns) / 1e9

    def keep_fresh(self, loop: asyncio.AbstractEventLoop) -> None:
        """Refresh every REFRESH_S on `loop` while it runs (once per loop)."""
        if id(loop) in self._loops:
            return
        self._loops.add(id(loop))

        def tick() -> None:
            if loop.is_closed():
                self._loops.discard(id(loop))
                return
            self.refresh()
            loop.call_later(REFRESH_S, tick)

        loop.call_later(REFRESH_S, tick)


BRIDGE = RealtimeBridge()


class StampedProtocol(Protocol):
    def connection_made(self, transport: StampedTransport) -> None: ...
    def data_received_at(self, data: bytes, arrived: float) -> None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...


_stamping_keeper: socket.socket | None = None


def rx_timestamps_supported() -> bool:
    """Kernel receive stamps on TCP sockets: Linux only.

    Linux stamps packets only while some socket asks for stamps, and switches stamping on
    asynchronously (a deferred work item) when the first one does: bytes arriving just after a fresh
    socket asked can come unstamped. The probe socket is therefore kept open for the life of the
    process, so stamping is on before the first connection and stays on between points.
    """
    global _stamping_keeper
    if _stamping_keeper is not None:
        return True
    if not sys.platform.startswith("linux"):
        return False
    probe = socket.socket()
    try:
        probe.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        probe.close()
        return False
    _stamping_keeper = probe
    return True


class StampedTransport(asyncio.Transport):
    """One connected non-blocking TCP socket on the running loop, reads stamped by the kernel."""

    def __init__(self, sock: socket.socket, protocol: StampedProtocol,
                 loop: asyncio.AbstractEventLoop | None = None, read_lags: array[float] | None = None) -> None:
        super().__init__()
        self._read_lags = read_lags  # when given: seconds each read's bytes waited in the kernel
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._loop = loop or asyncio.get_running_loop()
        self._pending = bytearray()  # bytes the socket had no room for yet
        self._closing = False
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        rx_timestamps_supported()  # keeps stamping switched on (see there)
        BRIDGE.keep_fresh(self._loop)
        self._loop.add_reader(self._fd, self._on_readable)
        protocol.connection_made(self)

    def _on_readable(self) -> None:
        try:
            data, ancillary, _, _ = self._sock.recvmsg(READ_SIZE, _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._lose(error)
            return
        if not data:
            self._lose(None)
            return
        if ancillary:  # SO_TIMESTAMPNS is the only control message this socket asks for
            seconds, nanos = _TIMESPEC.unpack(ancillary[0][2])
            arrived = (seconds * 1_000_000_000 + nanos - BRIDGE.offset_ns) / 1e9
            if self._read_lags is not None:
                self._read_lags.append(time.perf_counter() - arrived)
        else:
            arrived = time.perf_counter()
        self._protocol.data_received_at(data, arrived)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        if self._pending:
            self._pending += data
            return
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as error:
            self._lose(error)
            return
        if sent < len(data):
            self._pending += memoryview(data)[sent:]
            self._loop.add_writer(self._fd, self._on_writable)

    def _on_writable(self) -> None:
        try:
            sent = self._sock.send(self._pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._lose(error)
            return
        del self._pending[:sent]
        if not self._pending:
            self._loop.remove_writer(self._fd)
            if self._closing:
                self._lose(None)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self._sock
        if name == "peername":
            try:
                return self._sock.getpeername()
            except OSError:
                return default
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Close after the buffered bytes are sent."""
        if self._closing:
            return
        self._closing = True
        if not self._pending:
            self._lose(None)

    def abort(self) -> None:
        self._pending.clear()
        self._closing = True
        self._lose(None)

    def _lose(self, error: Exception | None) -> None:
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._fd = -1
        self._closing = True
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, error)


async def open_stamped(host: str, port: int, protocol: StampedProtocol,
                       read_lags: array[float] | None = None) -> StampedTransport:
    """Connect a stamped TCP stream to host:port (the first address that answers)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    last_error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except OSError as error:
            sock.close()
            last_error = error
            continue
        except BaseException:  # cancelled (a connect timeout): the socket must not leak
            sock.close()
            raise
        return StampedTransport(sock, protocol, loop, read_lags)
    raise last_error or OSError(f"no address for {host}:{port}")
