#!/usr/bin/env python3
"""Checks of what the tools print, independent of their code.

output_check.py table FILE [RIGHT_HEADER...]
    FILE is a text table: a header of upper-case names two or more spaces apart, then
    rows. Every cell starts where its header starts (ends where it ends, for the
    RIGHT_HEADER columns), and no line has trailing blanks.
output_check.py cleared FILE PROGRESS SUMMARY
    FILE is the raw output of a run on a terminal. PROGRESS (a regex) was drawn, and the
    first SUMMARY (a regex) starts a fresh line: after a newline or after the erase-line
    sequence that cleared the progress line.
output_check.py redraws FILE MAX
    The progress line was drawn at most MAX times (counted by erase-line sequences).
output_check.py jsonlines FILE
    Every line of FILE is one JSON object; prints how many.
"""
import json
import re
import sys


def table(path, right):
    lines = open(path, encoding="utf-8", errors="replace").read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    assert lines, "empty table"
    header = lines[0]
    cols = [(m.start(), m.end(), m.group(0)) for m in re.finditer(r"\S+(?: \S+)*", header)]
    assert len(cols) >= 2, f"not a header: {header!r}"
    for _, _, name in cols:
        assert name == name.upper(), f"header {name!r} is not upper case"
    for n, line in enumerate(lines, 1):
        assert line == line.rstrip(), f"line {n} has trailing blanks: {line!r}"
    for line in lines[1:]:
        for i, (start, end, name) in enumerate(cols):
            if name in right:
                assert len(line) >= end and line[end - 1] != " ", f"{name}: cell does not end at column {end}: {line!r}"
                assert len(line) == end or line[end] == " ", f"{name}: cell runs past column {end}: {line!r}"
            elif i > 0 and len(line) > start and line[start] != " ":
                assert line[start - 2:start] == "  ", f"{name}: cell does not start at column {start}: {line!r}"
                assert line[start - 1] == " ", f"{name}: cell starts before column {start}: {line!r}"
    print(f"{len(lines) - 1} rows, {len(cols)} columns")


def cleared(path, progress, summary):
    raw = open(path, "rb").read().decode("utf-8", "replace")
    assert re.search(progress, raw), f"no progress /{progress}/ in {raw!r}"
    m = re.search(summary, raw)
    assert m, f"no summary /{summary}/ in {raw!r}"
    before = raw[: m.start()]
    assert before == "" or before.endswith("\n") or before.endswith("\x1b[K"), \
        f"the summary does not start a line: ...{before[-80:]!r} then {m.group(0)!r}"


def redraws(path, most):
    raw = open(path, "rb").read()
    n = raw.count(b"\r\x1b[K")
    assert n <= most, f"the progress line was drawn {n} times (at most {most})"
    print(f"{n} redraws")


def jsonlines(path):
    n = 0
    for line in open(path, encoding="utf-8"):
        doc = json.loads(line)
        assert isinstance(doc, dict), f"not an object: {line!r}"
        n += 1
    print(n)


cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "table":
    table(args[0], set(args[1:]))
elif cmd == "cleared":
    cleared(*args)
elif cmd == "redraws":
    redraws(args[0], int(args[1]))
elif cmd == "jsonlines":
    jsonlines(args[0])
else:
    sys.exit(f"unknown check {cmd}")
