#!/usr/bin/env bash
# The role matrix in man mirage-serverd is the server's method registry: the block
# between the BEGIN and END markers is exactly `mirage-serverd methods --output text`,
# and the JSON rows name the same methods as the text. A man page edited by hand (one
# cell changed) fails here; so does a registry row changed without the man page.
source "$(dirname "$0")/lib.sh"
need python3
man_block() {  # MANPAGE: the lines between .nf and .fi after the BEGIN marker
  awk '/^\.\\" BEGIN mirage-serverd methods/ {on=1; next} on && /^\.nf$/ {inside=1; next}
       inside && /^\.fi$/ {exit} inside {print}' "$1"
}
expect_exit 0 mirage-serverd methods --output text
printf '%s\n' "$OUT" >"$TEST_TMP/generated"
man_block "$MIRAGE_SOURCE/man/mirage-serverd.1" >"$TEST_TMP/man"
[ "$(wc -l <"$TEST_TMP/man")" -gt 40 ] || fail "no method table found in man/mirage-serverd.1"
diff -u "$TEST_TMP/man" "$TEST_TMP/generated" >&2 ||
  fail "man/mirage-serverd.1's role matrix differs from mirage-serverd methods (regenerate it from the output above)"

# The comparison catches one changed cell: helpdesk given token.create in a copy.
sed 's/^\(token\.create  *\)A - - -/\1A - - H/' "$MIRAGE_SOURCE/man/mirage-serverd.1" >"$TEST_TMP/edited.1"
cmp -s "$MIRAGE_SOURCE/man/mirage-serverd.1" "$TEST_TMP/edited.1" && fail "the test's edit changed nothing"
man_block "$TEST_TMP/edited.1" | cmp -s - "$TEST_TMP/generated" && fail "a changed cell went unnoticed"

# JSON and text are the same rows.
expect_exit 0 mirage-serverd methods --output json
python3 - "$TEST_TMP/generated" <<PY
import json, sys
rows = json.loads('''$OUT''')["methods"]
text = open(sys.argv[1]).read().splitlines()[1:]
assert len(rows) == len(text), (len(rows), len(text))
letters = {"admin": "A", "image-manager": "I", "protection-manager": "P", "helpdesk": "H"}
for row, line in zip(rows, text):
    name = row["method"] + (" (%s)" % row["when"] if row["when"] else "")
    assert line.startswith(name + " "), (name, line)
    cells = line[27:].split()
    roles = [letters[r] for r in row["roles"]]
    assert [c for c in cells[:4] if c != "-"] == roles, (name, cells, roles)
    assert cells[4] == ("yes" if row["device"] else "no") and cells[5] == ("yes" if row["anonymous"] else "no"), line
    assert cells[6] == row["concurrency"] and row["body_limit"].startswith(cells[7]), line
    assert " ".join(cells[8:]) == row["audit"], line
PY
echo ok
