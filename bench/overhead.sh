#!/usr/bin/env bash
# overhead.sh - what a feature costs on the data path: the same route, bare and with
# the feature configured, in one run.
#
# Runs the load harness on ninefold twice per round, interleaved: once with the BASE
# config and once with the WITH config, nginx alongside as the yardstick of each run.
# Prints ninefold's requests/s and CPU µs per request for both, and the ratio.
#
# Usage: bench/overhead.sh NAME BASE.yaml WITH.yaml [ROUNDS] [DURATION_S]
#        (default 6 rounds of 10 s; bench/slo-overhead.sh and
#        bench/failover-overhead.sh call it)
# Needs what bench/run.sh needs (nginx, haproxy, wrk: NINEFOLD_BENCH=1 scripts/test
# installs them). Results: bench/results/NAME-*.json (gitignored).

set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NAME="$1"
BASE="$2"
WITH="$3"
ROUNDS="${4:-6}"
DURATION="${5:-10}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$BENCH_DIR/results/$NAME-$STAMP"
mkdir -p "$BENCH_DIR/results"

for r in $(seq 1 "$ROUNDS"); do
    # Alternate the order, so a drift of the machine does not favour one variant.
    order="plain with"
    [ $((r % 2)) -eq 0 ] && order="with plain"
    for variant in $order; do
        config="$BASE"
        [ "$variant" = with ] && config="$WITH"
        echo "== round $r: $variant ($config)"
        NINEFOLD_CONFIG="$config" "$BENCH_DIR/run.sh" --targets nginx,ninefold --bodies small \
            -d "$DURATION" "$OUT-$r-$variant" >/dev/null
    done
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
rows = {"plain": [], "with": []}
for r in range(1, rounds + 1):
    for v in rows:
        res = json.load(open(f"{out}-{r}-{v}.json"))["results"]
        nf = next(x for x in res if x["target"] == "ninefold")
        ng = next(x for x in res if x["target"] == "nginx")
        rows[v].append((nf["rps"], nf["proxy_cpu_us_per_req"], nf["rps"] / ng["rps"]))
for r in range(rounds):
    p, q = rows["plain"][r], rows["with"][r]
    print(f"round {r + 1}: plain {p[0]:.0f} rps {p[1]:.2f} us/req, with {q[0]:.0f} rps {q[1]:.2f} us/req; "
          f"with/plain rps {q[0] / p[0]:.3f}, CPU {q[1] / p[1]:.3f}")
print(f"{'variant':<8} {'rps (median)':>13} {'CPU us/req':>11} {'rps vs nginx':>13}")
med = {}
for v, xs in rows.items():
    med[v] = [statistics.median(c) for c in zip(*xs)]
    print(f"{v:<8} {med[v][0]:>13.0f} {med[v][1]:>11.2f} {med[v][2]:>13.3f}")
print(f"with/plain: rps {med['with'][0] / med['plain'][0]:.3f}, CPU per request "
      f"{med['with'][1] / med['plain'][1]:.3f}, rps vs nginx {med['with'][2] / med['plain'][2]:.3f}")
PY
