# fixture.bash - sourced by the shell tests that run a fixture model.
#   need_fixture NAME...  FIXDIR/NAME must exist: a missing one skips the test (exit 77), or
#                         fails it under CI (CI=true), as the C tests do
#   ok / bad MESSAGE      count a passed / failed check (bad prints the message)
FIXDIR=${DSINFER_FIXTURES:-../shared/fixtures}
pass=0
fail=0
need_fixture() {
    local name
    for name in "$@"; do
        [ -d "$FIXDIR/$name" ] && continue
        [ "${CI:-}" = true ] && { echo "ERROR: fixture $FIXDIR/$name missing under CI"; exit 1; }
        echo "*** SKIPPED: fixture $FIXDIR/$name missing ***"
        exit 77
    done
}
ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    echo "FAIL: $*"
}
