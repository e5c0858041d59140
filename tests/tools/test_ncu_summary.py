"""tools/ncu_summary.py on ncu CSV in both of its layouts (written from ncu's documented
columns; the first GPU run's real CSV is the test that matters: tools/gpu_check.sh keeps it)."""
from __future__ import annotations

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import ncu_summary  # noqa: E402

HEAD = '"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"'


def details_row(launch, kernel, metric, unit, value):
    return (f'"{launch}","4242","cnn","127.0.0.1","{kernel}","1","7","(128, 1, 1)","(896, 1, 1)","0","9.0",'
            f'"Command line profiler metrics","{metric}","{unit}","{value}"')


def launch_rows(launch, kernel, ns, occ, sm, dram, unit="nsecond"):
    p = ncu_summary.PERCENTS
    return [details_row(launch, kernel, ncu_summary.DURATION, unit, ns),
            details_row(launch, kernel, p["occupancy %"], "%", occ),
            details_row(launch, kernel, p["SM %"], "%", sm),
            details_row(launch, kernel, p["DRAM %"], "%", dram)]


DETAILS = "\n".join(
    ["==PROF== Connected to process 4242 (/work/build/gpu/cnn)",
     "==PROF== Profiling \"conv_direct_forward_kernel\" - 0: 0%....50%....100% - 9 passes",
     HEAD]
    + launch_rows(0, "conv_direct_forward_kernel(int, const float *)", "10,000", "40", "30", "10")
    + launch_rows(1, "sum_weight_and_bias_slices_kernel(int)", "2,000", "90", "5", "50")
    + launch_rows(2, "conv_direct_forward_kernel(int, const float *)", "30,000", "60", "50", "20")
    + launch_rows(3, "void cnn::ops::cuda::sgd_kernel<float>(float *, long)", "1.5", "20", "10", "70", "usecond")
    + ["==PROF== Disconnected from process 4242"])


class DetailsPage(unittest.TestCase):
    def test_groups_by_kernel_weights_percents_by_duration_and_sorts_hottest_first(self):
        rows = ncu_summary.summarize(ncu_summary.parse(DETAILS))
        self.assertEqual([r.name.split("(")[0] for r in rows],
                         ["conv_direct_forward_kernel", "sum_weight_and_bias_slices_kernel",
                          "void cnn::ops::cuda::sgd_kernel<float>"])
        conv = rows[0]
        self.assertEqual(conv.launches, 2)
        self.assertAlmostEqual(conv.total_us, 40.0)  # 10,000 + 30,000 ns
        self.assertAlmostEqual(conv.percents["occupancy %"], (40 * 10 + 60 * 30) / 40)
        self.assertAlmostEqual(conv.percents["DRAM %"], (10 * 10 + 20 * 30) / 40)
        self.assertAlmostEqual(rows[2].total_us, 1.5)  # usecond, as printed without --print-units base

    def test_report_lists_top_n_per_step_with_shares_and_the_total(self):
        text = ncu_summary.report(ncu_summary.summarize(ncu_summary.parse(DETAILS)), top=2, steps=4)
        lines = text.splitlines()
        self.assertEqual(len(lines), 2 + 2 + 1)  # header, rule, two kernels, total
        self.assertIn("conv_direct_forward_kernel", lines[2])
        self.assertIn("10.00", lines[2])  # 40 us over 4 steps
        self.assertIn("92.0%", lines[2])  # 40 of 43.5 us
        self.assertNotIn("sgd_kernel", text)
        self.assertIn("all 3 kernels", lines[-1])
        self.assertIn("10.88", lines[-1])  # 43.5 / 4

    def test_a_launch_without_its_duration_is_an_error_naming_the_metric(self):
        text = "\n".join([HEAD, details_row(0, "k()", ncu_summary.PERCENTS["SM %"], "%", "3")])
        with self.assertRaisesRegex(ncu_summary.NcuCsvError, "gpu__time_duration.sum"):
            ncu_summary.parse(text)

    def test_a_duration_in_a_unit_that_is_not_time_is_an_error(self):
        text = "\n".join([HEAD, details_row(0, "k()", ncu_summary.DURATION, "byte", "3")])
        with self.assertRaisesRegex(ncu_summary.NcuCsvError, "'byte' is not a time unit"):
            ncu_summary.parse(text)


RAW = "\n".join([
    '"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","gpu__time_duration.sum",'
    '"sm__throughput.avg.pct_of_peak_sustained_elapsed"',
    '"","","","","","","","usecond","%"',
    '"0","1","cnn","h","a_kernel()","1","7","2.5","40"',
    '"1","1","cnn","h","b_kernel()","1","7","7.5","n/a"',
    '"2","1","cnn","h","a_kernel()","1","7","2.5","60"',
])


class RawPage(unittest.TestCase):
    def test_metrics_as_columns_with_a_units_row(self):
        rows = ncu_summary.summarize(ncu_summary.parse(RAW))
        self.assertEqual([(r.name, r.launches, r.total_us) for r in rows],
                         [("b_kernel()", 1, 7.5), ("a_kernel()", 2, 5.0)])
        self.assertEqual(rows[0].percents["SM %"], None)  # n/a
        self.assertAlmostEqual(rows[1].percents["SM %"], 50.0)
        self.assertEqual(rows[1].percents["DRAM %"], None)  # not profiled


class Errors(unittest.TestCase):
    def test_output_without_a_table_says_what_to_check(self):
        with self.assertRaisesRegex(ncu_summary.NcuCsvError, "--csv"):
            ncu_summary.parse("==PROF== Disconnected from process 1\nno kernels were profiled\n")

    def test_main_reports_errors_with_the_file_and_exit_1(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "empty.csv")
            with open(path, "w") as f:
                f.write("==WARNING== No kernels were profiled.\n")
            self.assertEqual(ncu_summary.main([path]), 1)
            self.assertEqual(ncu_summary.main([os.path.join(d, "missing.csv")]), 1)
            with open(path, "w") as f:
                f.write(DETAILS)
            self.assertEqual(ncu_summary.main([path, "--top", "1"]), 0)


if __name__ == "__main__":
    unittest.main()
