#!/usr/bin/env python3
"""Check an Autobahn|Testsuite report against wsx's bar and a recorded baseline.

Usage:
    check_autobahn.py REPORT_INDEX_JSON EXPECTED_JSON [--group core|compression|all]
                      [--update] [--mode LABEL] [--expect-cases N]

REPORT_INDEX_JSON is the ``index.json`` that wstest writes into its outdir:
``{agent: {case_id: {"behavior": ..., "behaviorClose": ..., "reportfile": ...}}}``.
The report must contain exactly one agent (or name one with ``--agent``).

EXPECTED_JSON (``autobahn/expected/server.json`` / ``client.json``) is the
recorded baseline: ``{case_id: {"behavior": ..., "behaviorClose": ...}}``.
A missing file is treated as empty (no regression check; the pass rules
below still apply).

Pass rules (stricter than Autobahn's own "pass"):
  * behavior must be "OK", or "INFORMATIONAL" for the cases that are
    informational by design (7.1.6, 7.13.1, 7.13.2);
  * behaviorClose must be "OK" or "INFORMATIONAL";
  * anything else (NON-STRICT, FAILED, UNIMPLEMENTED, WRONG CODE, ...) fails,
    except that UNIMPLEMENTED in cases 12.* / 13.* (permessage-deflate) is
    *tolerated* when the expected file records that same case as UNIMPLEMENTED.
    This is temporary until compression lands.

Regression rules (only for cases of the selected group):
  * a case that passes according to the expected file but does not pass now
    fails (it is flagged as a REGRESSION);
  * a case present in the expected file but missing from the report fails;
  * with --expect-cases N, the report must contain exactly N cases of the group
    (catches truncated reports, e.g. a client that crashed half-way).

--update rewrites EXPECTED_JSON with the report's cases of the selected group
(cases of other groups are kept), as compact sorted JSON. It never weakens the
baseline: if there is a regression or a missing case, nothing is written. A
12.*/13.* case that has no entry in the old baseline may be recorded as
UNIMPLEMENTED by --update (and is then tolerated for this run too).

Exit status: 0 when every case of the group passes or is tolerated, 1 when any
case fails, 2 on usage / input errors.
"""

import argparse
import json
import os
import sys

# Cases whose behavior is INFORMATIONAL by design (the suite only records what
# the peer did, there is no right answer).
INFORMATIONAL_BY_DESIGN = frozenset({"7.1.6", "7.13.1", "7.13.2"})

# Top-level case groups that exercise permessage-deflate.
COMPRESSION_GROUPS = frozenset({"12", "13"})

GROUPS = ("core", "compression", "all")

OK_CLOSE = frozenset({"OK", "INFORMATIONAL"})


def case_key(case_id):
    """Sort key that orders case ids numerically: 1.1.9 < 1.1.10 < 2.1."""
    key = []
    for part in case_id.split("."):
        try:
            key.append((0, int(part), ""))
        except ValueError:  # never seen in practice; keep the sort total anyway
            key.append((1, 0, part))
    return tuple(key)


def sorted_cases(case_ids):
    return sorted(case_ids, key=case_key)


def is_compression_case(case_id):
    return case_id.split(".", 1)[0] in COMPRESSION_GROUPS


def in_group(case_id, group):
    if group == "all":
        return True
    if group == "compression":
        return is_compression_case(case_id)
    return not is_compression_case(case_id)  # core


def case_passes(case_id, result):
    """True when a single case result meets our bar (tolerance not included)."""
    behavior = result.get("behavior")
    behavior_close = result.get("behaviorClose")
    if behavior == "OK":
        behavior_ok = True
    elif behavior == "INFORMATIONAL":
        behavior_ok = case_id in INFORMATIONAL_BY_DESIGN
    else:
        behavior_ok = False
    return behavior_ok and behavior_close in OK_CLOSE


def is_tolerated_unimplemented(case_id, result, expected_result):
    """UNIMPLEMENTED compression case that the baseline also records as UNIMPLEMENTED."""
    return (
        is_compression_case(case_id)
        and result.get("behavior") == "UNIMPLEMENTED"
        and expected_result is not None
        and expected_result.get("behavior") == "UNIMPLEMENTED"
    )


def load_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise CheckError("%s not found: %s" % (what, path))
    except (OSError, ValueError) as e:
        raise CheckError("cannot read %s %s: %s" % (what, path, e))


class CheckError(Exception):
    pass


def load_report(path, agent=None):
    """Return (agent, {case_id: result}) from an Autobahn index.json."""
    data = load_json(path, "report")
    if not isinstance(data, dict) or not data:
        raise CheckError("report %s contains no agent" % path)
    if agent is None:
        if len(data) != 1:
            raise CheckError(
                "report %s has several agents (%s); pick one with --agent"
                % (path, ", ".join(sorted(data)))
            )
        agent = next(iter(data))
    elif agent not in data:
        raise CheckError("agent %r not in report %s (has: %s)" % (agent, path, ", ".join(sorted(data))))
    cases = data[agent]
    if not isinstance(cases, dict):
        raise CheckError("report %s: agent %r has no case table" % (path, agent))
    return agent, cases


def load_expected(path):
    """Return the baseline {case_id: {behavior, behaviorClose}}; {} if the file is absent."""
    if not os.path.exists(path):
        return {}
    data = load_json(path, "expected file")
    if not isinstance(data, dict):
        raise CheckError("expected file %s is not a JSON object" % path)
    return data


def evaluate(report_cases, expected, group, update=False, expect_cases=None):
    """Judge the report. Returns a dict with the lists the caller prints.

    Keys: total, passed, tolerated, failed (list of (case_id, reason)),
    missing (case ids), improved (case ids), count_error (str or None).
    """
    cases = {c: r for c, r in report_cases.items() if in_group(c, group)}
    expected_group = {c: r for c, r in expected.items() if in_group(c, group)}

    passed = []
    tolerated = []
    failed = []  # (case_id, is_regression)
    improved = []
    for case_id in sorted_cases(cases):
        result = cases[case_id]
        exp = expected_group.get(case_id)
        if case_passes(case_id, result):
            passed.append(case_id)
            if exp is not None and not case_passes(case_id, exp):
                improved.append(case_id)
            continue
        # With --update, a compression case with no baseline entry may be
        # recorded as UNIMPLEMENTED: judge it against what will be written.
        baseline = exp
        if update and exp is None:
            baseline = result
        if is_tolerated_unimplemented(case_id, result, baseline):
            tolerated.append(case_id)
            continue
        regression = exp is not None and case_passes(case_id, exp)
        failed.append((case_id, regression))

    missing = [c for c in sorted_cases(expected_group) if c not in cases]

    count_error = None
    if not cases:
        count_error = "report has no cases of group %r" % group
    elif expect_cases is not None and len(cases) != expect_cases:
        count_error = "report has %d cases of group %r, expected %d (truncated run?)" % (
            len(cases), group, expect_cases)

    return {
        "cases": cases,
        "total": len(cases),
        "passed": passed,
        "tolerated": tolerated,
        "failed": failed,
        "missing": missing,
        "improved": improved,
        "count_error": count_error,
    }


def dump_expected(expected):
    """Compact, stable JSON: one case per line, numerically sorted."""
    lines = []
    for case_id in sorted_cases(expected):
        r = expected[case_id]
        entry = {"behavior": r.get("behavior"), "behaviorClose": r.get("behaviorClose")}
        lines.append("%s:%s" % (json.dumps(case_id), json.dumps(entry, sort_keys=True, separators=(",", ":"))))
    if not lines:
        return "{}\n"
    return "{\n" + ",\n".join(lines) + "\n}\n"


def write_expected(path, expected, report_cases, group):
    merged = {c: r for c, r in expected.items() if not in_group(c, group)}
    for case_id, r in report_cases.items():
        if in_group(case_id, group):
            merged[case_id] = {"behavior": r.get("behavior"), "behaviorClose": r.get("behaviorClose")}
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dump_expected(merged))
    os.replace(tmp, path)
    return len(merged)


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Check an Autobahn|Testsuite index.json against wsx's pass rules and baseline.")
    p.add_argument("report", metavar="REPORT_INDEX_JSON")
    p.add_argument("expected", metavar="EXPECTED_JSON")
    p.add_argument("--group", choices=GROUPS, default="all",
                   help="which cases to check: core (1-10), compression (12, 13) or all (default)")
    p.add_argument("--update", action="store_true",
                   help="record this report's cases of the group in EXPECTED_JSON")
    p.add_argument("--mode", default=None,
                   help="label for the summary line (default: EXPECTED_JSON's base name, e.g. server)")
    p.add_argument("--agent", default=None, help="agent to check when the report has several")
    p.add_argument("--expect-cases", type=int, default=None, metavar="N",
                   help="fail unless the report has exactly N cases of the group")
    args = p.parse_args(argv)

    mode = args.mode or os.path.splitext(os.path.basename(args.expected))[0]
    label = "autobahn %s %s" % (mode, args.group)

    try:
        _agent, report_cases = load_report(args.report, args.agent)
        expected = load_expected(args.expected)
    except CheckError as e:
        print("%s: ERROR: %s" % (label, e))
        return 2

    res = evaluate(report_cases, expected, args.group, update=args.update,
                   expect_cases=args.expect_cases)
    report_dir = os.path.dirname(args.report)

    n_failed = len(res["failed"]) + len(res["missing"])
    summary = "%s: %d cases, %d passed, %d failed" % (label, res["total"], len(res["passed"]), n_failed)
    if res["tolerated"]:
        summary += ", %d tolerated (UNIMPLEMENTED, as expected)" % len(res["tolerated"])
    print(summary)

    for case_id, regression in res["failed"]:
        r = res["cases"][case_id]
        detail = os.path.join(report_dir, r["reportfile"]) if r.get("reportfile") else "(no report file)"
        note = ""
        if regression:
            exp = expected[case_id]
            note = "  REGRESSION (expected %s/%s)" % (exp.get("behavior"), exp.get("behaviorClose"))
        print("  FAIL %-9s behavior=%s behaviorClose=%s  %s%s" % (
            case_id, r.get("behavior"), r.get("behaviorClose"), detail, note))
    for case_id in res["missing"]:
        print("  FAIL %-9s missing from the report (recorded in %s)" % (case_id, args.expected))
    if res["count_error"]:
        print("  FAIL %s" % res["count_error"])
    if res["improved"] and not args.update:
        print("  note: %d case(s) now pass that %s records as not passing (%s); "
              "re-run with WSX_AUTOBAHN_UPDATE=1 to record them"
              % (len(res["improved"]), args.expected, ", ".join(res["improved"][:10])
                 + (", ..." if len(res["improved"]) > 10 else "")))

    ok = n_failed == 0 and res["count_error"] is None

    if args.update:
        weakening = res["missing"] or any(reg for _c, reg in res["failed"]) or res["count_error"]
        if weakening:
            print("  not updating %s: the report has regressions, missing cases or a wrong case count"
                  % args.expected)
        else:
            n = write_expected(args.expected, expected, report_cases, args.group)
            print("  updated %s (%d cases of group %s, %d in file)" % (
                args.expected, res["total"], args.group, n))

    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
