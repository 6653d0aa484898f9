#!/usr/bin/env python3
"""Runs the simulator's reference scenarios and prints their figures.

    tests/sim/bench.py BUILD_DIR [--quick] [--big]

The mesh's done-when figures: 1,000 nodes and 1,000 messages under each
scenario (seed 1), and, with --big, 10,000 nodes steady. --quick runs 200
nodes instead, to check the script itself. Prints one Markdown table row
per run (wall time, memory, and the metrics each scenario is judged by) and
exits 0; these are measurements, not pass/fail checks: the machine's speed
varies, and the simulator's own tests assert the behaviour.
"""
import json
import subprocess
import sys

SCENARIOS = ["steady", "kill30", "partition", "churn", "lossy"]
COLUMNS = [
    ("delivery_ratio", "delivery"),
    ("delivery_ratio_after_fault", "after fault"),
    ("delivery_ratio_same_side", "same side"),
    ("copies_per_delivery", "copies"),
    ("control_bytes_per_delivery", "control B"),
    ("p99_hops", "p99 hops"),
    ("p99_latency_ms", "p99 ms"),
    ("components", "comp."),
    ("heal_ms", "heal ms"),
    ("member_view_min", "view min"),
    ("wall_s", "wall s"),
    ("rss_bytes_per_node", "RSS/node"),
]


def fmt(key, value):
    if value is None:
        return "-"
    if key == "rss_bytes_per_node":
        return "%.0f KiB" % (value / 1024)
    if isinstance(value, float):
        return "%.6g" % value
    return str(value)


def run(sim, nodes, scenario):
    cmd = [sim, "--nodes", str(nodes), "--messages", "1000",
           "--scenario", scenario, "--seed", "1"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    sim = argv[1].rstrip("/") + "/peermesh-sim"
    quick = "--quick" in argv
    runs = [(200 if quick else 1000, s) for s in SCENARIOS]
    if "--big" in argv:
        runs.append((10000, "steady"))
    print("| nodes | scenario | " + " | ".join(c[1] for c in COLUMNS) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in COLUMNS) + " |")
    for nodes, scenario in runs:
        m = run(sim, nodes, scenario)
        cells = [fmt(k, m.get(k)) for k, _ in COLUMNS]
        print("| %d | %s | %s |" % (nodes, scenario, " | ".join(cells)),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
