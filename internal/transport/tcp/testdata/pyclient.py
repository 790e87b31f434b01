#!/usr/bin/env python3
"""A herald TCP client written from docs/protocol.md alone (binary encoding).

Usage: pyclient.py HOST PORT CHANNEL

It performs the hello, connects anonymously, subscribes to CHANNEL, prints
one line per step on stdout, waits for one publication, publishes
{"from":"python"} to CHANNEL and exits 0. Any protocol surprise exits 1.
"""

import json
import socket
import struct
import sys


def uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def string(s):
    b = s.encode("utf-8")
    return uvarint(len(b)) + b


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def u8(self):
        if self.pos >= len(self.data):
            raise ValueError("truncated")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uvarint(self):
        result = shift = 0
        for _ in range(10):
            b = self.u8()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
        raise ValueError("varint too long")

    def svarint(self):
        u = self.uvarint()
        return (u >> 1) ^ -(u & 1)

    def raw(self):
        n = self.uvarint()
        if n > len(self.data) - self.pos:
            raise ValueError("length beyond message")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def string(self):
        return self.raw().decode("utf-8")

    def info(self):
        return {"client": self.string(), "user": self.string(),
                "conn_info": self.raw(), "chan_info": self.raw()}

    def publication(self):
        pub = {"offset": self.uvarint(), "time": self.svarint()}
        flags = self.u8()
        if flags & 1:
            pub["info"] = self.info()
        pub["data"] = self.raw()
        return pub

    def end(self):
        if self.pos != len(self.data):
            raise ValueError("trailing bytes")


class Client:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""

    def recv_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def hello(self):
        self.sock.sendall(b"HRLD\x01\x01")
        answer = self.recv_exact(7)
        if answer[:4] != b"HRLD" or answer[6] != 0:
            raise ValueError("hello refused: %r" % answer)

    def send(self, payload):
        self.sock.sendall(struct.pack(">I", len(payload)) + payload)

    def command(self, method, cid, params=b""):
        self.send(bytes([1, method]) + uvarint(cid) + params)

    def frame(self):
        while True:
            (n,) = struct.unpack(">I", self.recv_exact(4))
            if n:
                return self.recv_exact(n)

    def message(self):
        """Returns ("reply", id, result kind, reader) or ("push", type, reader)."""
        while True:
            r = Reader(self.frame())
            kind, sub = r.u8(), r.u8()
            if kind == 3 and sub == 7:  # ping push: answer with pong
                self.command(11, 0)
                continue
            if kind == 3 and sub == 6:
                code = r.uvarint()
                raise ValueError("disconnected: %d %s" % (code, r.string()))
            if kind == 2:
                cid = r.uvarint()
                if sub == 255:
                    code = r.uvarint()
                    raise ValueError("error reply %d to %d: %s" % (code, cid, r.string()))
                return ("reply", cid, sub, r)
            if kind == 3:
                return ("push", sub, r)
            raise ValueError("unexpected message kind %d" % kind)

    def reply(self, cid, result_kind):
        while True:
            m = self.message()
            if m[0] == "reply":
                if m[1] != cid or m[2] != result_kind:
                    raise ValueError("reply %r, want id %d kind %d" % (m[:3], cid, result_kind))
                return m[3]


def main():
    host, port, channel = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    c = Client(host, port)
    c.hello()

    c.command(1, 1, string("") + string("herald-py") + string("1.0"))
    r = c.reply(1, 1)
    client = r.string()
    r.string(), r.string(), r.uvarint(), r.uvarint(), r.u8()
    r.end()
    print("connected", client, flush=True)

    c.command(2, 2, string(channel) + b"\x00")
    r = c.reply(2, 2)
    r.string(), r.uvarint(), r.u8()
    for _ in range(r.uvarint()):
        r.publication()
    r.end()
    print("subscribed", flush=True)

    while True:
        m = c.message()
        if m[0] == "push" and m[1] == 1:
            r = m[2]
            got_channel = r.string()
            pub = r.publication()
            r.end()
            if got_channel != channel:
                raise ValueError("publication on %s" % got_channel)
            print("publication", pub["offset"], pub["data"].decode("utf-8"), flush=True)
            break

    data = json.dumps({"from": "python"}, separators=(",", ":")).encode("utf-8")
    c.command(4, 3, string(channel) + uvarint(len(data)) + data)
    r = c.reply(3, 4)
    offset = r.uvarint()
    r.string()
    r.end()
    print("published", offset, flush=True)
    c.sock.close()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # report every failure the same way
        print("error:", e, file=sys.stderr, flush=True)
        sys.exit(1)
