"""WebSocket message round-trip time, for benches/load/upstream.sh.

  python3 ws_rtt.py serve PORT            # an echo server (RFC 6455, text/binary frames)
  python3 ws_rtt.py client HOST:PORT PATH N   # N round trips of a 32-byte message; prints
                                              # p50/p90/p99/mean in microseconds

Minimal on purpose (the standard library only): one connection, one message in flight.
"""
import asyncio
import base64
import hashlib
import os
import socket
import statistics
import struct
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def read_frame(reader):
    b1, b2 = await reader.readexactly(2)
    n = b2 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    mask = await reader.readexactly(4) if b2 & 0x80 else None
    payload = await reader.readexactly(n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return b1 & 0x0F, payload


def frame(opcode, payload, masked):
    head = bytes([0x80 | opcode])
    n = len(payload)
    m = 0x80 if masked else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if masked:
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + payload


async def serve_conn(reader, writer):
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = await reader.readuntil(b"\r\n\r\n")
    key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n")
           if l.lower().startswith(b"sec-websocket-key:")][0]
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    try:
        while True:
            op, payload = await read_frame(reader)
            if op == 8:
                writer.write(frame(8, payload[:2], False))
                break
            writer.write(frame(op, payload, False))
            await writer.drain()
    except asyncio.IncompleteReadError:
        pass
    writer.close()


async def serve(port):
    server = await asyncio.start_server(serve_conn, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


async def client(addr, path, n):
    host, port = addr.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16))
    writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + addr.encode() +
                 b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " +
                 key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    msg = b"x" * 32
    rtts = []
    for i in range(n + 200):
        t = time.perf_counter_ns()
        writer.write(frame(2, msg, True))
        op, payload = await read_frame(reader)
        assert payload == msg
        if i >= 200:  # warm-up
            rtts.append((time.perf_counter_ns() - t) / 1000)
    writer.write(frame(8, struct.pack("!H", 1000), True))
    rtts.sort()
    q = lambda p: rtts[min(len(rtts) - 1, int(p * len(rtts)))]
    print(f"p50 {q(0.5):.0f} p90 {q(0.9):.0f} p99 {q(0.99):.0f} mean {statistics.mean(rtts):.0f}")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        asyncio.run(serve(int(sys.argv[2])))
    else:
        asyncio.run(client(sys.argv[2], sys.argv[3], int(sys.argv[4])))
