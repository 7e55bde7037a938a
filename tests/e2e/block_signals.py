#!/usr/bin/env python3
"""block_signals.py CMD [ARGS...]: runs CMD with SIGTERM and SIGINT blocked, the mask a
supervisor or CI runner may hand down (a blocked signal stays pending for ever)."""
import os
import signal
import sys

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
os.execvp(sys.argv[1], sys.argv[1:])
