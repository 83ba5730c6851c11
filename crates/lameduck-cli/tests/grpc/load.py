"""gRPC load on `lameduck demo` with Python's grpcio, a real client.

Usage: load.py ADDR [--cacert PEM]

Unary calls (lameduck.demo.Echo/Say), server-streaming calls
(lameduck.demo.Echo/Count) and a grpc.health.v1 Watch run until stdin
closes or a bound passes; a TCP probe times the listener closing. Prints
"ready" once every kind has succeeded once, and one JSON line at the end:
each call with its start time, end time and status code; each Watch
message with its time; the first refused connect.
"""

import json
import socket
import sys
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

BOUND = 60.0  # seconds; the test ends long before


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field_varint(tag, n):
    return varint(tag << 3) + varint(n)


def field_str(tag, s):
    data = s.encode()
    return varint(tag << 3 | 2) + varint(len(data)) + data


def channel(addr, cacert):
    if cacert is None:
        return grpc.insecure_channel(addr)
    with open(cacert, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    return grpc.secure_channel(
        addr, creds, options=[("grpc.ssl_target_name_override", "localhost")]
    )


def main():
    addr = sys.argv[1]
    cacert = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--cacert" else None
    host, port = addr.rsplit(":", 1)
    stop = threading.Event()
    lock = threading.Lock()
    calls = []  # [kind, start, end, code, detail]
    watch = []  # [time, status]
    refused = []
    ok_kinds = set()
    ready = threading.Event()
    t0 = time.monotonic()

    def now():
        return time.monotonic() - t0

    def record(kind, start, code, detail=""):
        with lock:
            calls.append([kind, start, now(), code, detail])
            if code == "OK":
                ok_kinds.add(kind)
                if ok_kinds >= {"unary", "stream"} and watch:
                    ready.set()

    def unary():
        ch = channel(addr, cacert)
        say = ch.unary_unary("/lameduck.demo.Echo/Say")
        request = field_str(1, "hi") + field_varint(2, 20)
        while not stop.is_set():
            start = now()
            try:
                say(request, timeout=10)
                record("unary", start, "OK")
            except grpc.RpcError as e:
                record("unary", start, e.code().name, e.details() or "")
                time.sleep(0.01)

    def stream():
        ch = channel(addr, cacert)
        count = ch.unary_stream("/lameduck.demo.Echo/Count")
        request = field_varint(1, 5) + field_varint(2, 40)
        while not stop.is_set():
            start = now()
            n = 0
            try:
                for _ in count(request, timeout=10):
                    n += 1
                record("stream", start, "OK" if n == 5 else "SHORT", str(n))
            except grpc.RpcError as e:
                record("stream", start, e.code().name, e.details() or "")
                time.sleep(0.01)

    watching = []

    def watcher():
        ch = channel(addr, cacert)
        stub = health_pb2_grpc.HealthStub(ch)
        while not stop.is_set():
            try:
                call = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=BOUND)
                with lock:
                    watching.append(call)
                for reply in call:
                    name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                    with lock:
                        watch.append([now(), name])
            except grpc.RpcError as e:
                with lock:
                    watch.append([now(), "END " + e.code().name])
                time.sleep(0.01)

    def probe():
        while not stop.is_set():
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
            except ConnectionRefusedError:
                with lock:
                    refused.append(now())
                return
            except OSError:
                pass
            time.sleep(0.005)

    threads = [threading.Thread(target=f, daemon=True) for f in (unary, unary, stream, stream, watcher, probe)]
    for t in threads:
        t.start()
    if not ready.wait(BOUND):
        print("never ready", file=sys.stderr)
        sys.exit(1)
    print("ready", flush=True)
    # The test closes stdin when it is done.
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    stop.wait(BOUND)
    stop.set()
    with lock:
        for call in watching:
            call.cancel()
    for t in threads:
        t.join(timeout=15)
    with lock:
        print(json.dumps({"calls": calls, "watch": watch, "refused": refused[0] if refused else None}), flush=True)


main()
