#!/bin/bash
# test_cli_docs.sh - the user documentation (README.md and every docs/**/*.md) stays usable:
#  - no path outside the repository (`../shared/...`, `/work/...`): users do not have our layout;
#  - no build folder other than the documented `build/`. Allowed: `build-asan` and `build-tsan`
#    in README.md only, because scripts/test.sh creates exactly those and README's development
#    section documents the commands that make them;
#  - no "issue N" / "session N": words of our work tracking, which mean nothing to a reader;
#  - every relative markdown link [text](path) resolves to a file or folder (anchors ignored);
#  - README's sizing command for the 671B model runs as written and plans it.
set -u
SRC=${DSINFER_SOURCE:?DSINFER_SOURCE is not set}
cd "$SRC" || exit 1
FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }

DOCS=$(find README.md docs -name '*.md' | sort)
[ -n "$DOCS" ] || { echo "FAIL: no documentation found"; exit 1; }

# forbid PATTERN WHY [ALLOWED-LINES-REGEX]: lines of the docs matching PATTERN (ERE), except
# those matching ALLOWED in README.md.
forbid() {
    local hits
    # shellcheck disable=SC2086 # the file list
    hits=$(grep -nE "$1" $DOCS | { if [ -n "${3:-}" ]; then grep -vE "^README\.md:[0-9]+:.*($3)"; else cat; fi; })
    [ -z "$hits" ] || fail "$2:"$'\n'"$hits"
}
forbid '\.\./shared|/work/' "paths outside the repository"
forbid 'build-[a-z0-9]' "build folders other than build/" 'build-(asan|tsan)'
forbid '[Ii]ssue [0-9]|[Ss]ession [0-9]|[Ss]essions [0-9]' "issue/session numbers"

# Relative links: [text](target) where target is not a URL, a mail address or an anchor.
python3 - $DOCS <<'EOF' || FAILED=1
import os, re, sys
bad = 0
link = re.compile(r'\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
for doc in sys.argv[1:]:
    text = open(doc, encoding="utf-8").read()
    # Code blocks and inline code are not links.
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    for target in link.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        path = os.path.normpath(os.path.join(os.path.dirname(doc), target.split("#")[0]))
        if path.startswith(".."):
            print(f"FAIL: {doc}: link {target} leaves the repository")
            bad += 1
        elif not os.path.exists(path):
            print(f"FAIL: {doc}: link {target} does not resolve ({path})")
            bad += 1
sys.exit(1 if bad else 0)
EOF

# README's sizing command, as written (from the repository root, with the build's dsinfer).
PLAN=$(grep -m1 '^build/cli/dsinfer plan --config deploy/' README.md)
if [ -z "$PLAN" ]; then
    fail "README.md has no 'build/cli/dsinfer plan --config deploy/...' line"
elif [ -n "${DSINFER_BUILD:-}" ] && [ -x "$DSINFER_BUILD/cli/dsinfer" ]; then
    eval "\"$DSINFER_BUILD/cli/dsinfer\" ${PLAN#build/cli/dsinfer }" >"${TMPDIR:-/tmp}/docs-plan.$$" 2>&1 &&
        grep -q "61 layers (3 dense, 58 MoE x 256 experts)" "${TMPDIR:-/tmp}/docs-plan.$$" ||
        fail "README's plan command: $(cat "${TMPDIR:-/tmp}/docs-plan.$$")"
    rm -f "${TMPDIR:-/tmp}/docs-plan.$$"
fi

[ "$FAILED" = 0 ] && echo "docs checks passed ($(echo "$DOCS" | wc -l) files)"
exit "$FAILED"
