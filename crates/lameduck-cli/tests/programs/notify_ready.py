"""Sends READY=1 to NOTIFY_SOCKET (as sd_notify(3) does) once a line can be
read from the FIFO named by its argument, then serves until SIGTERM."""
import os
import signal
import socket
import sys

with open(sys.argv[1]) as fifo:
    fifo.readline()
path = os.environ["NOTIFY_SOCKET"]
if path.startswith("@"):
    path = "\0" + path[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"garbage without an equals sign\n", path)
s.sendto(b"READY=1\nSTATUS=serving\n", path)
signal.sigwait([signal.SIGTERM])
