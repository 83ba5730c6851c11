"""A naive HTTP server, as most are: it binds its own port (or, with
LISTEN_FDS set, takes descriptor 3 as systemd passes it), answers every GET
with 200 and its pid after an optional ?ms= delay, and dies at once on
SIGTERM (Python's default): no draining, no readiness of its own.

    python3 naive_server.py PORT
    LISTEN_FDS=1 python3 naive_server.py   # the socket from lameduck run --listen

With --graceful, SIGTERM stops accepting and lets the requests in flight
finish before it exits 0, as Python's socketserver allows in three lines.
With --keep-alive it speaks HTTP/1.1: a connection serves request after
request until the client closes it.
"""
import http.server
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        ms = int(query.get("ms", ["0"])[0])
        if ms:
            time.sleep(ms / 1000)
        body = f"{os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    # The listen backlog of a production server (gunicorn and uvicorn use
    # 2048), not socketserver's 5: under load a backlog of 5 drops SYNs,
    # whose one-second retransmits would hide what the comparison measures.
    request_queue_size = 1024


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    graceful = "--graceful" in sys.argv
    if "--keep-alive" in sys.argv:
        Handler.protocol_version = "HTTP/1.1"
    if os.environ.get("LISTEN_FDS"):
        # The one line of change: the socket from the environment.
        sock = socket.socket(fileno=3)
        server = Server(sock.getsockname(), Handler, bind_and_activate=False)
        server.socket = sock
    else:
        server = Server(("127.0.0.1", int(args[0])), Handler)
    server.daemon_threads = not graceful
    if graceful:
        signal.signal(
            signal.SIGTERM,
            lambda *_: threading.Thread(target=server.shutdown, daemon=True).start(),
        )
    server.serve_forever(poll_interval=0.05)
    server.server_close()


main()
