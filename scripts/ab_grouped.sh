#!/usr/bin/env bash
# Grouped-bench A/B in one run, alternating, CUPTI clock:
#   bash scripts/ab_grouped.sh "<tree>[:bench flags]" ...   e.g. ab_prev . ".:--grouped-pairs"
# Prints each variant's table (bench_grouped.py prints it last).
for round in 1 2; do
  for spec in "$@"; do
    tree=${spec%%:*}; flags=""; [[ $spec == *:* ]] && flags=${spec#*:}
    echo "== round $round tree: $tree flags: ${flags:-none}"
    (cd "$tree" && env -u OUT PYTHONPATH=. timeout ${AB_TIMEOUT:-150} python3 bench/bench_grouped.py --clock cupti \
       $flags 2>&1 | grep -E "^ *(contiguous|masked) ")
  done
done
