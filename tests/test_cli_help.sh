#!/bin/bash
# test_cli_help.sh - every option in every program's --help is in the settings table for that
# program, and the default the help prints is the table's and the one the program uses: the
# table's view comes from `dsinfer config --program P` (no flag, variable or config file set),
# which shows each setting's value and its source. Every setting of the table is in the help.
set -u
for p in dsinfer dsinfer-node dsinfer-coordinator dsinfer-cluster; do
    command -v $p >/dev/null || { echo "FAIL: $p is not on PATH"; exit 1; }
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# Only the table's defaults: none of our variables, no config file.
for v in $(compgen -e | grep '^DSINFER_'); do
    case $v in DSINFER_FIXTURES | DSINFER_BUILD | DSINFER_SOURCE) ;; *) unset "$v" ;; esac
done
export DSINFER_CONFIG_FILE=$TMP/none.conf
touch "$TMP/none.conf"
FAILED=0

check() { # program-name help-command...
    local prog=$1; shift
    "$@" --help >"$TMP/$prog.help" 2>&1 || { echo "FAIL: $* --help exited $?"; FAILED=1; return; }
    dsinfer config --program "$prog" >"$TMP/$prog.config" 2>"$TMP/$prog.err" ||
        { echo "FAIL: dsinfer config --program $prog: $(cat "$TMP/$prog.err")"; FAILED=1; return; }
    python3 - "$prog" "$TMP/$prog.help" "$TMP/$prog.config" <<'PY' || FAILED=1
import re, sys
prog, help_text, config = sys.argv[1], open(sys.argv[2]).read(), open(sys.argv[3]).read()
table = {}
for line in config.splitlines():
    m = re.match(r'^([a-z0-9-]+) = (.*?)\s+# (\w+)', line)
    if m and m.group(1) == 'config-file':
        table['config-file'] = '/etc/dsinfer/dsinfer.conf'  # this test names its own by variable
    elif m:
        assert m.group(3) == 'default', line
        table[m.group(1)] = m.group(2)
aliases = set(re.findall(r'^  --([a-z0-9-]+): deprecated name of --([a-z0-9-]+)$', help_text, re.M))
alias_names = {a for a, _ in aliases}
bad = []
# Every --word anywhere in the help is an option of this program (or an alias, or --help).
for name in sorted(set(re.findall(r'(?<![\w-])--([a-z][a-z0-9-]*)', help_text))):
    if name not in table and name not in alias_names and name != 'help':
        bad.append('--%s is in the help but not in the table for %s' % (name, prog))
# Each option's block: "  --name META" then "      help (default: X; VAR)" on indented lines.
blocks = []
for name, body in re.findall(r'^  --([a-z0-9-]+)(?: [^\n]*)?\n((?:      [^\n]*\n)+)', help_text, re.M):
    m = re.search(r'\(default: ([^;)]*)', ' '.join(body.split()))
    if m:
        blocks.append((name, m.group(1)))
shown = {}
for name, default in blocks:
    shown[name] = default
    want = table.get(name)
    if want is None:
        continue
    if (default if default != 'none' else '') != want:
        bad.append('--%s: the help says the default is %r, the program uses %r' % (name, default, want))
for name in table:
    if name not in shown:
        bad.append('--%s is in the table for %s but not in its help' % (name, prog))
for alias, target in aliases:
    if target not in table:
        bad.append('alias --%s of an option %s does not take' % (alias, prog))
if bad:
    print('\n'.join('FAIL: ' + b for b in bad))
    sys.exit(1)
print('%s: %d options, %d aliases: help and table agree' % (prog, len(table), len(aliases)))
PY
}
check run dsinfer run
check serve dsinfer serve
check plan dsinfer plan
check inspect dsinfer inspect
check coordinator dsinfer-coordinator
check node dsinfer-node
check cluster dsinfer-cluster
check admin dsinfer cluster
[ "$FAILED" = 0 ] && echo "help checks passed"
exit "$FAILED"
