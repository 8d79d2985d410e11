#!/bin/bash
# test_cli_bench_serve_html.sh - `dsinfer bench serve --html` renders in headless Chromium: the
# page loads offline (nothing fetched), its timeline and latency-vs-load charts are there, and
# every number of its summary and error tables equals the JSON's value at the path the cell names
# (data-key), formatted as the page shows it. A screenshot is taken and checked to be a PNG.
# Skipped (77) without chromium (scripts/setup.sh installs it).
set -u
unset DSINFER_API_KEY OPENAI_API_KEY # the load tool reads them: each run here says its key
BUILD=${DSINFER_BUILD:?DSINFER_BUILD is not set}
SERVER=$BUILD/tests/test_unit_api_server
command -v dsinfer >/dev/null || { echo "FAIL: dsinfer is not on PATH"; exit 1; }
[ -x "$SERVER" ] || { echo "FAIL: $SERVER is not built"; exit 1; }
CHROMIUM=$(command -v chromium || command -v chromium-browser) \
    || { echo "SKIPPED: no chromium (scripts/setup.sh installs it)"; exit 77; }

TMP=$(mktemp -d)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }

"$SERVER" --serve "$TMP/port" --delay-ms 2 2>"$TMP/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.05; done
[ -s "$TMP/port" ] || { cat "$TMP/server.log"; echo "FAIL: the server did not start"; exit 1; }
URL=http://127.0.0.1:$(cat "$TMP/port")

# A good run of three levels, and a run whose every request is refused (unknown model: 404).
dsinfer bench serve --url "$URL" --concurrency 1,2,4 --requests 10 --prompt-len 6:30 \
    --output-len 3:9 --slo ttft=5ms --json "$TMP/r.json" --html "$TMP/r.html" >/dev/null \
    2>"$TMP/bench.err" || { cat "$TMP/bench.err"; fail "bench serve exited $?"; }
dsinfer bench serve --url "$URL" --model nope --concurrency 2 --requests 4 \
    --json "$TMP/bad.json" --html "$TMP/bad.html" >/dev/null 2>&1
[ $? = 1 ] || fail "every request refused: want exit 1"

render() { # $1 page -> $1.dom, $1.png (a fresh profile each time: nothing shared, no network)
    timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run \
        --user-data-dir="$TMP/profile-$(basename "$1")" --dump-dom "file://$1" \
        >"$1.dom" 2>"$1.log" || { cat "$1.log"; fail "chromium --dump-dom $1"; }
    timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run --hide-scrollbars \
        --user-data-dir="$TMP/profile-$(basename "$1")" --window-size=1040,2400 \
        --screenshot="$1.png" "file://$1" >>"$1.log" 2>&1 || fail "chromium --screenshot $1"
}
render "$TMP/r.html"
render "$TMP/bad.html"

python3 - "$TMP/r.json" "$TMP/r.html" "$TMP/bad.json" "$TMP/bad.html" <<'EOF' || fail "the page"
import json, re, struct, sys
from html.parser import HTMLParser

class Cells(HTMLParser):
    """data-key cells, and what the page would fetch (src/href) and draws (svg ids, lines)."""
    def __init__(self):
        super().__init__()
        self.cells, self.key, self.fetch, self.svgs, self.polylines = {}, None, [], [], 0
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-key" in a:
            self.key, self.cells[a["data-key"]] = a["data-key"], ""
        for k in ("src", "href"):
            if k in a:
                self.fetch.append(a[k])
        if tag == "svg":
            self.svgs.append(a.get("id"))
        self.polylines += tag == "polyline"
    def handle_endtag(self, tag):
        self.key = None if tag == "td" else self.key
    def handle_data(self, data):
        if self.key:
            self.cells[self.key] += data

def lookup(doc, path):
    for part in path.split("."):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc

def shown(key, v):
    """The page's format for the JSON value at key."""
    if v is None:
        return "-"
    if isinstance(v, str) or isinstance(v, int):
        return str(v)
    last = key.split(".")[-2] if key.split(".")[-1].startswith("p") else key.split(".")[-1]
    if last.endswith("_s") and last not in ("requests_per_s", "output_tokens_per_s",
                                            "goodput_per_s"):
        return f"{v * 1e3:.2f}"  # seconds shown as ms
    return f"{v:.1f}" if last == "output_tokens_per_s" else f"{v:.2f}"

for json_path, html_path, levels, with_errors in ((sys.argv[1], sys.argv[2], 3, False),
                                                   (sys.argv[3], sys.argv[4], 1, True)):
    doc = json.load(open(json_path))
    dom = open(html_path + ".dom").read()
    p = Cells()
    p.feed(dom)
    assert "<table id=\"summary\">" in dom, "no summary table in the rendered DOM"
    assert p.fetch == [], f"the page fetches {p.fetch}"
    assert "timeline" in p.svgs and "load" in p.svgs, p.svgs
    keys = [k for k in p.cells if k.startswith("levels.")]
    assert len({k.split(".")[1] for k in keys}) == levels, keys
    # every level row shows 19 numbers; the errors table one per error kind
    assert sum(1 for k in keys if k.count(".") >= 2 and ".errors." not in k) == levels * 19, keys
    for k in keys:
        want = shown(k, lookup(doc, k))
        assert p.cells[k].strip() == want, (html_path, k, p.cells[k], want)
    if with_errors:
        assert p.cells["levels.0.errors.404"] == "4" and p.cells["levels.0.failed"] == "4", p.cells
    else:
        assert p.polylines > 10, p.polylines
    png = open(html_path + ".png", "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    w, h = struct.unpack(">II", png[16:24])
    assert (w, h) == (1040, 2400) and len(png) > 20000, (w, h, len(png))
    print(f"{html_path}: {len(keys)} cells equal the JSON; screenshot {w}x{h}, {len(png)} bytes")
EOF
[ $FAILED = 0 ] && echo "PASS"
exit $FAILED
