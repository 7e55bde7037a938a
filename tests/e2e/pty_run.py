#!/usr/bin/env python3
"""pty_run.py OUT TIMEOUT CMD...: runs CMD on a pseudo-terminal (stdin, stdout and
stderr a terminal, as a person at a shell has them), writes everything it printed, raw,
to OUT, and exits with its status. Killed (exit 124) after TIMEOUT seconds."""
import os
import pty
import select
import signal
import sys
import time

out_path, timeout, argv = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
data = bytearray()
deadline = time.monotonic() + timeout
while True:
    left = deadline - time.monotonic()
    if left <= 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        open(out_path, "wb").write(data)
        sys.exit(124)
    ready, _, _ = select.select([fd], [], [], min(left, 1.0))
    if not ready:
        continue
    try:
        chunk = os.read(fd, 65536)
    except OSError:  # EIO: the child closed the terminal
        break
    if not chunk:
        break
    data += chunk
_, status = os.waitpid(pid, 0)
open(out_path, "wb").write(data)
sys.exit(os.waitstatus_to_exitcode(status))
