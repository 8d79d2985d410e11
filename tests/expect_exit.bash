# expect_exit.bash - sourced by the tests of scripts' argument checks: `expect WHAT CODE PATTERN
# COMMAND...` runs COMMAND and fails the test (FAIL line, fail=1) unless it exits CODE with
# PATTERN in its stderr (an empty PATTERN: any). Needs TMP set to a scratch folder.
fail=0
bad() { fail=1; echo "FAIL: $*"; }

expect() { # what, exit code, stderr pattern, command...
  local what=$1 code=$2 pat=$3; shift 3
  "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  [ $rc = "$code" ] || { bad "$what: exit $rc, expected $code: $(cat "$TMP/err")"; return; }
  [ -z "$pat" ] || grep -q -- "$pat" "$TMP/err" || bad "$what: stderr lacks '$pat': $(cat "$TMP/err")"
}
