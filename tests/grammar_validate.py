#!/usr/bin/env python3
"""grammar_validate.py SCHEMAS OUTPUTS: every complete output of `dsinfer bench grammar --emit`
parses as JSON and validates against its schema (Python's jsonschema, draft 2020-12). Prints one
line per failure and a summary; exit 1 on any failure, or when fewer than MIN_SCHEMAS schemas
(third argument, default all) have a complete output."""
import json
import sys

import jsonschema


def main():
    schemas = json.load(open(sys.argv[1], encoding="utf-8"))
    need = int(sys.argv[3]) if len(sys.argv) > 3 else len(schemas)
    bad = 0
    complete = 0
    covered = set()
    total = 0
    for line in open(sys.argv[2], encoding="utf-8"):
        rec = json.loads(line)
        total += 1
        if not rec["complete"]:
            continue
        complete += 1
        i = rec["schema"]
        try:
            value = json.loads(rec["output"])
            jsonschema.validate(value, schemas[i], cls=jsonschema.Draft202012Validator)
            covered.add(i)
        except Exception as e:  # noqa: BLE001 - any failure is reported
            bad += 1
            print(f"FAIL schema {i}: {rec['output']!r}: {str(e).splitlines()[0]}")
    print(f"{total} outputs, {complete} complete, {bad} invalid; "
          f"{len(covered)} of {len(schemas)} schemas covered")
    if bad or len(covered) < need:
        sys.exit(1)


main()
