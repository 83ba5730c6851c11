"""Holds the listening socket lameduck passes (descriptor 3) and closes it,
at once or on SIGTERM, then says so on stdout.

    closes_listener.py at-once         closes it, then exits 0 on SIGTERM
    closes_listener.py on-term FIFO    on SIGTERM closes it, then waits
                                       until FIFO is opened and closed
                                       for writing, and exits 0

Each step is a line on stdout ("ready", "closed"), for the test to wait on.
"""

import signal
import socket
import sys

mode = sys.argv[1]
listener = socket.socket(fileno=3)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def close():
    listener.close()
    print("closed", flush=True)


if mode == "at-once":
    close()
print("ready", flush=True)
signal.sigwait({signal.SIGTERM})
if mode == "on-term":
    close()
    with open(sys.argv[2]) as fifo:
        fifo.read()
