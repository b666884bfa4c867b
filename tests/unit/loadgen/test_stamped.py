"""Kernel-stamped TCP transport: a busy loop delays the read, not the arrival time."""

import asyncio
import socket
import threading
import time
from array import array

import pytest

from servesweep.loadgen.stamped import BRIDGE, StampedTransport, open_stamped, rx_timestamps_supported


def test_this_machine_stamps_tcp_reads():
    assert rx_timestamps_supported()  # Linux: what the load generator runs on, here and in a cluster


class _Recorder:
    def __init__(self) -> None:
        self.reads: list[tuple[bytes, float, float]] = []  # data, arrived, when the protocol saw it
        self.lost: list[Exception | None] = []
        self.transport: StampedTransport | None = None
        self.got_data = asyncio.Event()
        self.closed = asyncio.Event()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received_at(self, data: bytes, arrived: float) -> None:
        self.reads.append((data, arrived, time.perf_counter()))
        self.got_data.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)
        self.closed.set()


def _listener() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    return listener


def test_bridge_maps_realtime_onto_perf_counter():
    BRIDGE.refresh()
    before = time.perf_counter()  # bracketed, so a deschedule between the two reads cannot fail it
    mapped = BRIDGE.to_perf(time.time_ns())
    after = time.perf_counter()
    assert before - 0.001 < mapped < after + 0.001


def test_arrival_is_the_kernel_stamp_even_when_the_loop_reads_late():
    async def run() -> None:
        listener = _listener()
        recorder, lags = _Recorder(), array("d")
        connecting = asyncio.ensure_future(open_stamped("127.0.0.1", listener.getsockname()[1], recorder, lags))
        peer, _ = await asyncio.get_running_loop().sock_accept(listener)
        await connecting
        sent = time.perf_counter()
        peer.send(b"first token")
        time.sleep(0.05)  # the loop is busy elsewhere: nothing reads the socket for 50 ms
        await asyncio.wait_for(recorder.got_data.wait(), 5)
        data, arrived, seen = recorder.reads[0]
        assert data == b"first token"
        assert 0 <= arrived - sent < 0.005  # when the bytes came, to within the loopback's microseconds
        assert seen - sent >= 0.05  # ... although they were read 50 ms later
        assert len(lags) == 1 and lags[0] >= 0.045
        peer.close()
        await asyncio.wait_for(recorder.closed.wait(), 5)
        assert recorder.lost == [None] and recorder.transport.is_closing()
        listener.close()

    asyncio.run(run())


def test_a_write_larger_than_the_socket_buffer_arrives_whole_before_close():
    payload = bytes(range(256)) * (16 * 1024)  # 4 MiB: the kernel takes it in pieces
    received = bytearray()

    def drain(peer: socket.socket) -> None:
        peer.setblocking(True)  # accepted from a non-blocking listener
        while chunk := peer.recv(1 << 16):
            received.extend(chunk)
            time.sleep(0.0005)  # a slow reader keeps the sender's socket full
        peer.close()

    async def run() -> None:
        listener = _listener()
        recorder = _Recorder()
        connecting = asyncio.ensure_future(open_stamped("127.0.0.1", listener.getsockname()[1], recorder))
        peer, _ = await asyncio.get_running_loop().sock_accept(listener)
        transport = await connecting
        reader = threading.Thread(target=drain, args=(peer,))
        reader.start()
        transport.write(payload[:1000])
        transport.write(payload[1000:])
        transport.close()  # closes once everything buffered is sent
        await asyncio.wait_for(recorder.closed.wait(), 30)
        await asyncio.to_thread(reader.join, 30)
        listener.close()

    asyncio.run(run())
    assert received == payload


def test_connect_refused_raises():
    listener = _listener()
    port = listener.getsockname()[1]
    listener.close()

    async def run() -> None:
        with pytest.raises(OSError):
            await open_stamped("127.0.0.1", port, _Recorder())

    asyncio.run(run())
