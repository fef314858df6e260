"""Per case of `iwae-bench speed --json`, the best time of each precision
over the rounds given, and bf16's over fp32's (Benchmarks/precision/run.sh)."""
import json
import os
import sys
from collections import defaultdict

best = defaultdict(dict)       # case -> precision -> seconds
for path in sys.argv[1:]:
    for line in open(path):
        row = json.loads(line)
        precision = os.path.basename(path).split("-")[0]   # fp32-1.jsonl, bf16-1.jsonl, …
        if row.get("case") == "train_step":
            fresh = min(row["ms_per_step"], row.get("fresh_alternating_ms_per_step") or float("inf"))
            keys = [(f"B{row['batch']} K{row['k']} fresh", fresh)]
            if row.get("trained_ms_per_step") is not None:
                keys.append((f"B{row['batch']} K{row['k']} trained", row["trained_ms_per_step"]))
        elif row.get("case") == "evaluate":
            keys = [(f"evaluation k={row['k']} on {row['batch']} fresh", row["seconds"] * 1e3)]
            if row.get("trained_seconds") is not None:
                keys.append((f"evaluation k={row['k']} on {row['batch']} trained", row["trained_seconds"] * 1e3))
        else:
            continue
        for case, ms in keys:
            old = best[case].get(precision)
            best[case][precision] = ms if old is None else min(old, ms)

print(f"{'case':40} {'fp32 ms':>10} {'bf16 ms':>10} {'bf16/fp32':>10}")
worst = 0.0
for case, times in best.items():
    if "fp32" in times and "bf16" in times:
        ratio = times["bf16"] / times["fp32"]
        worst = max(worst, ratio)
        print(f"{case:40} {times['fp32']:10.3f} {times['bf16']:10.3f} {ratio:10.3f}")
print(f"largest bf16/fp32: {worst:.3f}")
