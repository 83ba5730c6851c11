"""Binds its own port, as a program given no socket by lameduck does.

    own_port.py PORT DIR

Listens on 127.0.0.1:PORT (accepting and closing each connection) and
says "listening"; on SIGTERM waits until the
FIFO DIR/old is opened and closed for writing, then exits 0. If the port is
taken (another instance holds it) says "port in use", waits likewise on
DIR/new, then exits 1. The FIFOs let a test decide the order of the ends.
"""

import os
import signal
import socket
import sys
import threading

port, folder = int(sys.argv[1]), sys.argv[2]
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
listener = socket.socket()
try:
    listener.bind(("127.0.0.1", port))
except OSError:
    print("port in use", flush=True)
    with open(os.path.join(folder, "new")) as fifo:
        fifo.read()
    sys.exit(1)
listener.listen(16)


def serve():
    while True:
        listener.accept()[0].close()


threading.Thread(target=serve, daemon=True).start()
print("listening", flush=True)
signal.sigwait({signal.SIGTERM})
with open(os.path.join(folder, "old")) as fifo:
    fifo.read()
