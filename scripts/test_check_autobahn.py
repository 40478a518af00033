#!/usr/bin/env python3
"""Self-test for scripts/check_autobahn.py.

Run with either of:
    python3 scripts/test_check_autobahn.py
    python3 -m unittest scripts/test_check_autobahn.py
"""

import contextlib
import io
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_autobahn as ca  # noqa: E402


def res(behavior, close="OK"):
    return {"behavior": behavior, "behaviorClose": close}


class CheckerTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.index = os.path.join(self.dir, "reports", "index.json")
        self.expected = os.path.join(self.dir, "expected", "server.json")
        os.makedirs(os.path.dirname(self.index))

    def tearDown(self):
        self.tmp.cleanup()

    def write_report(self, cases, agent="wsx"):
        table = {}
        for case_id, r in cases.items():
            entry = dict(r)
            entry["reportfile"] = "%s_case_%s.json" % (agent, case_id.replace(".", "_"))
            entry.setdefault("duration", 1)
            entry.setdefault("remoteCloseCode", 1000)
            table[case_id] = entry
        with open(self.index, "w") as f:
            json.dump({agent: table}, f)

    def write_expected(self, cases):
        os.makedirs(os.path.dirname(self.expected), exist_ok=True)
        with open(self.expected, "w") as f:
            json.dump(cases, f)

    def run_check(self, *extra):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = ca.main([self.index, self.expected] + list(extra))
        return status, out.getvalue()

    # --- pass rules -------------------------------------------------------

    def test_all_ok_passes(self):
        self.write_report({"1.1.1": res("OK"), "2.1": res("OK", "INFORMATIONAL"), "7.1.6": res("INFORMATIONAL")})
        status, out = self.run_check("--group", "core")
        self.assertEqual(status, 0, out)
        self.assertIn("autobahn server core: 3 cases, 3 passed, 0 failed", out)

    def test_non_strict_fails(self):
        self.write_report({"1.1.1": res("OK"), "6.4.3": res("NON-STRICT")})
        status, out = self.run_check("--group", "core")
        self.assertEqual(status, 1)
        self.assertIn("2 cases, 1 passed, 1 failed", out)
        self.assertIn("FAIL 6.4.3", out)
        self.assertIn("behavior=NON-STRICT", out)
        # the detail report path is printed so it can be opened
        self.assertIn(os.path.join(os.path.dirname(self.index), "wsx_case_6_4_3.json"), out)

    def test_bad_close_behavior_fails(self):
        self.write_report({"1.1.1": res("OK", "FAILED"), "1.1.2": res("OK", "WRONG CODE")})
        status, out = self.run_check("--group", "core")
        self.assertEqual(status, 1)
        self.assertIn("2 failed", out)

    def test_informational_only_for_the_three_cases(self):
        for case_id in ("7.1.6", "7.13.1", "7.13.2"):
            self.assertTrue(ca.case_passes(case_id, res("INFORMATIONAL")), case_id)
        for case_id in ("7.1.5", "7.13.3", "1.1.1", "12.1.1"):
            self.assertFalse(ca.case_passes(case_id, res("INFORMATIONAL")), case_id)
        self.write_report({"7.13.1": res("INFORMATIONAL"), "7.1.5": res("INFORMATIONAL")})
        status, out = self.run_check("--group", "core")
        self.assertEqual(status, 1)
        self.assertIn("FAIL 7.1.5", out)
        self.assertNotIn("FAIL 7.13.1", out)

    def test_other_failures(self):
        for behavior in ("FAILED", "UNIMPLEMENTED", "WRONG CODE", "NON-STRICT", None):
            self.assertFalse(ca.case_passes("1.1.1", res(behavior)), behavior)

    # --- UNIMPLEMENTED compression tolerance ------------------------------

    def test_unimplemented_compression_fails_without_baseline(self):
        self.write_report({"12.1.1": res("UNIMPLEMENTED"), "13.1.1": res("UNIMPLEMENTED")})
        status, out = self.run_check("--group", "compression")
        self.assertEqual(status, 1)
        self.assertIn("2 cases, 0 passed, 2 failed", out)

    def test_unimplemented_compression_tolerated_when_expected(self):
        self.write_expected({"12.1.1": res("UNIMPLEMENTED"), "13.1.1": res("UNIMPLEMENTED")})
        self.write_report({"12.1.1": res("UNIMPLEMENTED"), "13.1.1": res("UNIMPLEMENTED")})
        status, out = self.run_check("--group", "compression")
        self.assertEqual(status, 0, out)
        self.assertIn("2 cases, 0 passed, 0 failed, 2 tolerated", out)

    def test_unimplemented_tolerated_only_for_12_and_13(self):
        self.write_expected({"1.1.1": res("UNIMPLEMENTED")})
        self.write_report({"1.1.1": res("UNIMPLEMENTED")})
        status, _ = self.run_check("--group", "core")
        self.assertEqual(status, 1)

    def test_unimplemented_compression_not_tolerated_when_expected_ok(self):
        self.write_expected({"12.1.1": res("OK")})
        self.write_report({"12.1.1": res("UNIMPLEMENTED")})
        status, out = self.run_check("--group", "compression")
        self.assertEqual(status, 1)
        self.assertIn("REGRESSION", out)

    def test_non_strict_compression_not_tolerated(self):
        self.write_expected({"12.1.1": res("UNIMPLEMENTED")})
        self.write_report({"12.1.1": res("NON-STRICT")})
        status, _ = self.run_check("--group", "compression")
        self.assertEqual(status, 1)

    # --- regressions ------------------------------------------------------

    def test_regression_detected(self):
        self.write_expected({"1.1.1": res("OK"), "1.1.2": res("OK"), "6.4.3": res("NON-STRICT")})
        self.write_report({"1.1.1": res("FAILED"), "1.1.2": res("OK"), "6.4.3": res("NON-STRICT")})
        status, out = self.run_check("--group", "core")
        self.assertEqual(status, 1)
        self.assertIn("FAIL 1.1.1", out)
        self.assertIn("REGRESSION (expected OK/OK)", out)
        # 6.4.3 fails (pass rules) but is not a regression
        line = [l for l in out.splitlines() if "6.4.3" in l][0]
        self.assertNotIn("REGRESSION", line)

    def test_missing_case_detected(self):
        self.write_expected({"1.1.1": res("OK"), "1.1.2": res("OK"), "12.1.1": res("OK")})
        self.write_report({"1.1.1": res("OK")})
        status, out = self.run_check("--group", "core")
        self.assertEqual(status, 1)
        self.assertIn("FAIL 1.1.2", out)
        self.assertIn("missing from the report", out)
        # 12.1.1 belongs to another group: not reported missing in a core check
        self.assertNotIn("12.1.1", out)

    def test_expect_cases(self):
        self.write_report({"1.1.1": res("OK"), "1.1.2": res("OK")})
        self.assertEqual(self.run_check("--group", "core", "--expect-cases", "2")[0], 0)
        status, out = self.run_check("--group", "core", "--expect-cases", "3")
        self.assertEqual(status, 1)
        self.assertIn("truncated", out)

    def test_empty_group_fails(self):
        self.write_report({"1.1.1": res("OK")})
        status, out = self.run_check("--group", "compression")
        self.assertEqual(status, 1)
        self.assertIn("no cases", out)

    def test_group_filter(self):
        self.write_report({"1.1.1": res("OK"), "12.1.1": res("UNIMPLEMENTED")})
        status, out = self.run_check("--group", "core")
        self.assertEqual(status, 0, out)
        self.assertIn("1 cases, 1 passed", out)

    def test_missing_report_is_an_error(self):
        status, out = self.run_check()
        self.assertEqual(status, 2)
        self.assertIn("not found", out)

    def test_several_agents_is_an_error(self):
        with open(self.index, "w") as f:
            json.dump({"a": {"1.1.1": res("OK")}, "b": {"1.1.1": res("OK")}}, f)
        self.assertEqual(self.run_check()[0], 2)
        self.assertEqual(self.run_check("--agent", "b")[0], 0)

    # --- ordering ---------------------------------------------------------

    def test_numeric_sort(self):
        ids = ["1.1.10", "10.1.1", "1.1.9", "2.1", "1.1.1", "9.10.1", "9.2.1", "12.1.10", "12.1.2"]
        self.assertEqual(
            ca.sorted_cases(ids),
            ["1.1.1", "1.1.9", "1.1.10", "2.1", "9.2.1", "9.10.1", "10.1.1", "12.1.2", "12.1.10"])

    def test_failures_listed_in_numeric_order(self):
        self.write_report({"1.1.10": res("FAILED"), "1.1.9": res("FAILED"), "1.1.2": res("FAILED")})
        _, out = self.run_check("--group", "core")
        fails = [l.split()[1] for l in out.splitlines() if l.strip().startswith("FAIL")]
        self.assertEqual(fails, ["1.1.2", "1.1.9", "1.1.10"])

    # --- --update ---------------------------------------------------------

    def test_update_merges_group_and_is_sorted(self):
        self.write_expected({"1.1.1": res("OK"), "12.1.1": res("UNIMPLEMENTED")})
        self.write_report({"12.1.1": res("OK"), "12.1.10": res("OK"), "12.1.2": res("OK")})
        status, out = self.run_check("--group", "compression", "--update")
        self.assertEqual(status, 0, out)
        with open(self.expected) as f:
            text = f.read()
        data = json.loads(text)
        self.assertEqual(list(data), ["1.1.1", "12.1.1", "12.1.2", "12.1.10"])
        self.assertEqual(data["12.1.1"], res("OK"))
        self.assertEqual(data["1.1.1"], res("OK"))  # other group untouched
        # only behavior/behaviorClose are stored
        self.assertEqual(set(data["12.1.2"]), {"behavior", "behaviorClose"})
        # stable: a second update produces the identical file
        self.run_check("--group", "compression", "--update")
        with open(self.expected) as f:
            self.assertEqual(f.read(), text)

    def test_update_bootstraps_unimplemented(self):
        self.write_report({"12.1.1": res("UNIMPLEMENTED"), "1.1.1": res("OK")})
        status, out = self.run_check("--group", "all", "--update")
        self.assertEqual(status, 0, out)
        self.assertEqual(self.run_check("--group", "all")[0], 0)

    def test_update_refuses_regression(self):
        self.write_expected({"1.1.1": res("OK")})
        self.write_report({"1.1.1": res("FAILED")})
        status, out = self.run_check("--group", "core", "--update")
        self.assertEqual(status, 1)
        self.assertIn("not updating", out)
        with open(self.expected) as f:
            self.assertEqual(json.load(f), {"1.1.1": res("OK")})


if __name__ == "__main__":
    unittest.main()
