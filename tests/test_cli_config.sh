#!/bin/bash
# test_cli_config.sh - one settings table for every program: `dsinfer config` shows a setting
# coming from the config file, then the environment overriding it, then a flag overriding both;
# bad lines and values are errors naming file:line or the option and what it accepts; old names
# warn and still work.
set -u
command -v dsinfer >/dev/null || { echo "FAIL: dsinfer is not on PATH"; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }
unset DSINFER_THREADS DSINFER_CONFIG_FILE DSINFER_MEM
# expect "<line regexp>" -- command: the command succeeds and prints a matching line.
expect() {
    local want=$1; shift 2
    local out
    out=$("$@" 2>"$TMP/err") || { fail "$* exited $?: $(cat "$TMP/err")"; return; }
    grep -Eq -- "$want" <<<"$out" || fail "$*: no line matching '$want' in:
$out"
}
# refuse CODE "<stderr regexp>" -- command
refuse() {
    local code=$1 want=$2; shift 3
    "$@" >/dev/null 2>"$TMP/err"
    local rc=$?
    [ "$rc" = "$code" ] || fail "$*: exit $rc, expected $code"
    grep -Eq -- "$want" "$TMP/err" || fail "$*: stderr lacks '$want': $(cat "$TMP/err")"
}

cat >"$TMP/dsinfer.conf" <<'CONF'
# a comment
threads = 3
mem = 8G
listen = 127.0.0.1:9100
CONF
C="--config-file $TMP/dsinfer.conf"
expect '^threads = auto +# default$' -- dsinfer config --program node --config-file ""
expect "^threads = 3 +# file $TMP/dsinfer.conf:2\$" -- dsinfer config --program node $C
expect '^threads = 5 +# environment DSINFER_THREADS$' -- env DSINFER_THREADS=5 dsinfer config --program node $C
expect '^threads = 7 +# flag --threads$' -- env DSINFER_THREADS=5 dsinfer config --program node $C --threads 7
# The variable names the file too; a setting of another program is ignored by this one.
expect "^mem = 8G +# file" -- env DSINFER_CONFIG_FILE="$TMP/dsinfer.conf" dsinfer config --program node
expect "^listen = 127.0.0.1:9100 +# file" -- dsinfer config --program serve $C
dsinfer config --program node $C | grep -q '^listen' && fail "the node shows listen"
# An old name warns once and sets the new one.
expect '^threads = 2 +# flag' -- dsinfer config --program serve --node-threads 2
refuse 0 "--node-threads is deprecated, use --threads" -- dsinfer config --program serve --node-threads 2
expect '^listen = 127.0.0.1:1 +# flag' -- dsinfer config --program coordinator --http 127.0.0.1:1
# The key is not shown.
expect '^api-key = \(set, not shown\)' -- dsinfer config --program serve --api-key s3cret

# Errors name what was wrong.
printf 'threads = 3\nthreads 4\n' >"$TMP/bad1.conf"
refuse 2 "bad1.conf:2: expected .name = value." -- dsinfer config --config-file "$TMP/bad1.conf"
printf 'no-such-thing = 1\n' >"$TMP/bad2.conf"
refuse 2 "bad2.conf:1: unknown setting 'no-such-thing'" -- dsinfer config --config-file "$TMP/bad2.conf"
printf 'threads = lots\n' >"$TMP/bad3.conf"
refuse 2 "bad3.conf:1: threads: 'lots' is not valid: expected auto or an integer from 0 to 1024" -- dsinfer config --program node --config-file "$TMP/bad3.conf"
refuse 2 "--config-file $TMP/missing.conf: No such file" -- dsinfer config --config-file "$TMP/missing.conf"
refuse 2 "--threads: '0x' is not valid: expected auto or an integer from 0 to 1024" -- dsinfer config --program node --threads 0x
refuse 2 "DSINFER_THREADS: '-1' is not valid" -- env DSINFER_THREADS=-1 dsinfer config --program node
refuse 2 "--max-context: '99999999999' is not valid: expected auto or an integer from 2 to 16777216" -- dsinfer config --program serve --max-context 99999999999
refuse 2 "--replan: 'soon' is not one of restart, live" -- dsinfer config --program serve --replan soon
refuse 2 "--listen: 'nowhere' is not valid: expected HOST:PORT" -- dsinfer config --program serve --listen nowhere
refuse 2 "--mem: '12Q' is not valid: expected auto or a size" -- dsinfer config --program node --mem 12Q
refuse 2 "unknown option '--bogus'" -- dsinfer config --program node --bogus 1
refuse 2 "--program: 'toaster' is not valid" -- dsinfer config --program toaster
refuse 2 "--threads needs a value" -- dsinfer config --program node --threads
# The deployment's example config file is valid for the programs of the systemd units.
for prog in coordinator node; do
    expect "^model = /models/DeepSeek-V3 +# file" -- dsinfer config --program $prog \
        --config-file "$DSINFER_SOURCE/deploy/dsinfer.conf.example"
done
# docs/SETTINGS.md carries the table as `dsinfer config --markdown` prints it.
DOC=${DSINFER_SOURCE:?DSINFER_SOURCE is not set}/docs/SETTINGS.md
sed -n '/<!-- settings table: begin -->/,/<!-- settings table: end -->/p' "$DOC" | sed '1d;$d' >"$TMP/doc.md"
dsinfer config --markdown >"$TMP/table.md"
diff -u "$TMP/doc.md" "$TMP/table.md" >"$TMP/doc.diff" ||
    fail "docs/SETTINGS.md differs from dsinfer config --markdown:
$(cat "$TMP/doc.diff")"
[ "$FAILED" = 0 ] && echo "config checks passed"
exit "$FAILED"
