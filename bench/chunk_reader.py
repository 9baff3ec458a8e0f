"""Reads an outbox the way bench/relay-redis.sh's `bchunk` mode says: every GATHER seconds
it runs the read script in chunks of COUNT entries, back to back, until a chunk comes back
short. Talks RESP over the loopback (no client library); stops when killed.
usage: STAMPEDE_REDIS_URL=redis://… chunk_reader.py KEY COUNT GATHER_SECONDS < script.lua
(the URL from the environment, not argv: it carries the password)"""
import os
import socket
import sys
import time
from urllib.parse import urlparse


def command(sock, reader, *args):
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(f"${len(b)}\r\n".encode() + b + b"\r\n")
    sock.sendall(b"".join(out))
    line = reader.readline()
    if line.startswith(b"-"):
        raise SystemExit(f"redis: {line.decode().strip()}")
    if line.startswith(b":"):
        return int(line[1:])
    if line.startswith(b"$"):
        n = int(line[1:])
        return None if n < 0 else reader.read(n + 2)[:-2]
    return line[1:].strip()


def main():
    url = urlparse(os.environ.get("STAMPEDE_REDIS_URL", "redis://127.0.0.1:6379"))
    if url.scheme != "redis":
        raise SystemExit(f"chunk_reader.py: a single Redis (redis://) only, not {url.scheme}://")
    key, count, gather = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    script = sys.stdin.read()
    sock = socket.create_connection((url.hostname, url.port or 6379))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = sock.makefile("rb")
    if url.password:
        command(sock, reader, "AUTH", url.username or "default", url.password)
    sha = command(sock, reader, "SCRIPT", "LOAD", script).decode()
    while True:
        while command(sock, reader, "EVALSHA", sha, 1, key, count, "group") >= count:
            pass
        time.sleep(gather)


main()
