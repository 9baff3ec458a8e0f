#!/usr/bin/env python3
"""Splits a spike's time at the wire: from a packet capture on the loopback (tcpdump,
libpcap format, bench/spike.sh with WIRE=1), per connection to the server's port, when the
client's SYN, its request's first byte and the answer's first byte passed. The answer's
first byte minus the request's is the server's share of k6's http_req_waiting (accept, read,
routing, the handler and Redis, the write); what k6 reports beyond it is the client's own
(its goroutines scheduled to read the answer).

Usage: bench/spike_wire.py PCAP PORT         prints one JSON line of p50/p95/p99 (ms)
       bench/spike_wire.py --self-test        checks the parser on a capture it writes"""
import json
import statistics
import struct
import sys

MAGIC_NS, MAGIC_US = 0xA1B23C4D, 0xA1B2C3D4
LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL = 1, 113


def packets(path):
    """(seconds, IPv4 packet bytes) for each captured packet."""
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack_from("<I", data, 0)[0]
    endian = "<"
    if magic not in (MAGIC_NS, MAGIC_US):
        endian, magic = ">", struct.unpack_from(">I", data, 0)[0]
    if magic not in (MAGIC_NS, MAGIC_US):
        raise ValueError(f"{path}: not a libpcap capture")
    scale = 1e-9 if magic == MAGIC_NS else 1e-6
    link = struct.unpack_from(endian + "I", data, 20)[0]
    skip = {LINKTYPE_ETHERNET: 14, LINKTYPE_LINUX_SLL: 16}.get(link)
    if skip is None:
        raise ValueError(f"{path}: link type {link} is not handled")
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack_from(endian + "IIII", data, off)
        frame = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        yield sec + frac * scale, frame[skip:]


def tcp_segment(ip):
    """(source port, destination port, flags, payload length) of an IPv4 TCP packet, or None."""
    if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
        return None
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack_from(">H", ip, 2)[0]
    if len(ip) < ihl + 14:
        return None
    sport, dport = struct.unpack_from(">HH", ip, ihl)
    doff = (ip[ihl + 12] >> 4) * 4
    return sport, dport, ip[ihl + 13], total - ihl - doff


def connections(path, port):
    """Per client port: {'syn', 'request', 'answer'} times (seconds) seen on the wire."""
    conns = {}
    for t, ip in packets(path):
        seg = tcp_segment(ip)
        if seg is None:
            continue
        sport, dport, flags, payload = seg
        if dport == port:
            c = conns.setdefault(sport, {})
            if flags & 0x02 and not flags & 0x10:
                c.setdefault("syn", t)
            if payload > 0:
                c.setdefault("request", t)
        elif sport == port and payload > 0:
            conns.setdefault(dport, {}).setdefault("answer", t)
    return conns


def quantiles(values):
    """p50, p95 and p99 (ms) of a list of seconds, or None each when empty."""
    if len(values) < 2:
        v = values[0] * 1000 if values else None
        return {"p50": v, "p95": v, "p99": v}
    q = statistics.quantiles([v * 1000 for v in values], n=100, method="inclusive")
    return {"p50": round(q[49], 2), "p95": round(q[94], 2), "p99": round(q[98], 2)}


def split(path, port):
    """The spike's wire split: the server's share (request in to answer out), the
    client's time from SYN to its request, and how long the answers took to all leave."""
    conns = [c for c in connections(path, port).values() if "request" in c]
    server = [c["answer"] - c["request"] for c in conns if "answer" in c]
    to_request = [c["request"] - c["syn"] for c in conns if "syn" in c]
    first = min((c.get("syn", c["request"]) for c in conns), default=0.0)
    last = max((c["answer"] for c in conns if "answer" in c), default=first)
    return {
        "connections": len(conns),
        "answered": len(server),
        "server": quantiles(server),
        "syn_to_request": quantiles(to_request),
        "span_ms": round((last - first) * 1000, 1),
    }


def self_test():
    """Writes a capture of two connections and checks the split read from it."""
    import os
    import tempfile

    def frame(sport, dport, flags, payload):
        tcp = struct.pack(">HHIIBBHHH", sport, dport, 0, 0, 5 << 4, flags, 0, 0, 0) + payload
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, bytes(4), bytes(4))
        return bytes(14) + ip + tcp

    events = [  # (seconds, source port, destination port, flags, payload)
        (1.000, 40001, 8080, 0x02, b""),
        (1.001, 40002, 8080, 0x02, b""),
        (1.010, 40001, 8080, 0x18, b"POST"),
        (1.012, 8080, 40001, 0x18, b"HTTP"),
        (1.020, 40002, 8080, 0x18, b"POST"),
        (1.050, 8080, 40002, 0x18, b"HTTP"),
        (1.060, 9999, 40003, 0x18, b"other"),
    ]
    fd, path = tempfile.mkstemp(suffix=".pcap")
    with os.fdopen(fd, "wb") as f:
        f.write(struct.pack("<IHHiIII", MAGIC_NS, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
        for t, sport, dport, flags, payload in events:
            fr = frame(sport, dport, flags, payload)
            sec = int(t)
            f.write(struct.pack("<IIII", sec, round((t - sec) * 1e9), len(fr), len(fr)))
            f.write(fr)
    try:
        got = split(path, 8080)
    finally:
        os.unlink(path)
    assert got["connections"] == 2 and got["answered"] == 2, got
    assert got["server"]["p50"] == 16.0 and got["server"]["p99"] == 29.72, got  # 2 and 30 ms
    assert got["syn_to_request"]["p99"] == 18.91, got  # 10 and 19 ms
    assert abs(got["span_ms"] - 50.0) < 0.01, got
    print("spike_wire self-test: ok")


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        self_test()
    elif len(sys.argv) == 3:
        print(json.dumps(split(sys.argv[1], int(sys.argv[2]))))
    else:
        sys.exit(__doc__)
