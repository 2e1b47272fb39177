#!/usr/bin/env python3
"""An unauthenticated peer abusing the viewer page's port (tests/web.rs flood test).

    flood.py HOST PORT SOURCE_ADDR IDLE_CONNECTIONS LOOPS SECONDS

1. Opens IDLE_CONNECTIONS TCP connections from SOURCE_ADDR to HOST:PORT and sends nothing
   on them (slowloris without even a byte), as fast as it can.
2. While holding them, runs LOOPS threads that each repeat, for SECONDS: TCP connect, TLS
   handshake (certificate not checked), `GET /`, read the answer, close.
3. Prints one JSON line: how many idle connections were accepted and still open after
   the loops (the server closed or reset the rest), how many handshakes and pages
   completed, how many attempts failed.

Only the Python standard library (socket, ssl, threading): an independent client.
"""
import json
import resource
import socket
import ssl
import sys
import threading
import time

host, port, source, idle_n, loops, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])

# One descriptor per idle connection, beyond the usual soft limit of 1024.
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

idle = []
refused = 0
for _ in range(idle_n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.bind((source, 0))
        s.connect((host, port))
        idle.append(s)
    except OSError:
        refused += 1
        s.close()

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
counts = {"handshakes": 0, "pages": 0, "failed": 0}
lock = threading.Lock()
deadline = time.monotonic() + secs


def loop():
    while time.monotonic() < deadline:
        key = "failed"
        try:
            with socket.create_connection((host, port), timeout=3, source_address=(source, 0)) as raw:
                with ctx.wrap_socket(raw, server_hostname=host) as tls:
                    with lock:
                        counts["handshakes"] += 1
                    tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                    data = b""
                    while True:
                        chunk = tls.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    if data.startswith(b"HTTP/1.1 200"):
                        key = "pages"
        except (OSError, ssl.SSLError):
            pass
        with lock:
            counts[key] += 1
        if key == "failed":
            time.sleep(0.01)


threads = [threading.Thread(target=loop) for _ in range(loops)]
for t in threads:
    t.start()
for t in threads:
    t.join()

# Which idle connections did the server keep? A closed or reset one reads EOF or errors.
still_open = 0
for s in idle:
    try:
        s.setblocking(False)
        if s.recv(1) == b"":
            continue
        still_open += 1
    except BlockingIOError:
        still_open += 1
    except OSError:
        pass
    finally:
        s.close()

print(json.dumps({"idle_connected": len(idle), "idle_refused": refused, "idle_still_open": still_open, **counts}))
