#!/usr/bin/env python3
"""P6 stalled writers: N clients on a Unix socket, each negotiating an NBD
export and sending a 32 MiB WRITE whose payload stops one byte short; they
then hold their connections open. Prints "ready" once every client has
sent what the server would take (a send the server no longer reads from
stays blocked), then waits to be killed.

    p6_stalled.py SOCKET N
"""
import socket
import struct
import sys
import threading
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
OPT_GO = 7
REP_ACK = 1
CMD_WRITE = 1
LENGTH = 32 << 20
PAYLOAD = bytes(LENGTH - 1)


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("the server closed the connection")
        buf += chunk
    return buf


def stall(path, i, sent, conns):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    conns.append(s)
    magic, opt, _flags = struct.unpack(">QQH", recv_exact(s, 18))
    assert magic == NBDMAGIC and opt == IHAVEOPT, "not an NBD server"
    s.sendall(struct.pack(">I", 3))  # fixed newstyle, no zeroes
    data = struct.pack(">IH", 0, 0)  # export "", no info requests
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, len(data)) + data)
    while True:
        magic, _opt, rtype, rlen = struct.unpack(">QIII", recv_exact(s, 20))
        recv_exact(s, rlen)
        if rtype == REP_ACK:
            break
        if rtype & 0x80000000:
            raise RuntimeError(f"NBD_OPT_GO refused ({rtype:#x})")
    s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_WRITE, i, 0, LENGTH))
    sent[i] = True  # the header went; the payload may block
    s.sendall(PAYLOAD)


def main():
    path, n = sys.argv[1], int(sys.argv[2])
    sent = [False] * n
    conns = []
    for i in range(n):
        threading.Thread(target=stall, args=(path, i, sent, conns), daemon=True).start()
    deadline = time.monotonic() + 60
    while not all(sent) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Let the server take what it will of the payloads.
    time.sleep(2)
    print("ready" if all(sent) else "not all clients got their header through", flush=True)
    while True:
        time.sleep(60)


main()
