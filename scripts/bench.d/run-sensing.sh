#!/usr/bin/env bash
# What watching the traffic costs `lameduck run` while the program runs
# (docs/benchmarks.md, "lameduck run traffic sensing"): lameduck's CPU time
# (utime + stime of /proc/PID/stat) over 10 s, with N idle keep-alive
# connections open on its --listen socket, for an adaptive drain (the
# connections listed every 100 ms) and a fixed one (not listed while
# running). The naive Python server serves on the socket.
#
#   scripts/bench.d/run-sensing.sh [N...]     (default: 0 200 2000)
#   LAMEDUCK=target/release/lameduck scripts/bench.d/run-sensing.sh 200
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${LAMEDUCK:-$root/target/release/lameduck}
server=$root/crates/lameduck-cli/tests/programs/naive_server.py
counts=("$@")
[[ ${#counts[@]} -gt 0 ]] || counts=(0 200 2000)
tick=$(getconf CLK_TCK)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for n in "${counts[@]}"; do
    for mode in adaptive fixed; do
        flags=(--drain-max 5s)
        [[ $mode == fixed ]] && flags=(--drain-delay 5s)
        "$bin" run --output json --admin none --listen http=127.0.0.1:0 "${flags[@]}" \
            -- python3 "$server" --keep-alive 2>"$work/log" &
        pid=$!
        for _ in $(seq 200); do grep -q 'socket http on' "$work/log" && break; sleep 0.05; done
        port=$(grep -o '"addr":"127.0.0.1:[0-9]*"' "$work/log" | head -1 | grep -o '[0-9]*"$' | tr -d '"')
        python3 - "$port" "$n" "$work/open-$mode-$n" <<'PY' &
import socket, sys, time
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
open(ready, "w").close()
time.sleep(3600)
PY
        client=$!
        for _ in $(seq 600); do [[ -e $work/open-$mode-$n ]] && break; sleep 0.05; done
        before=$(cpu "$pid")
        sleep 10
        after=$(cpu "$pid")
        printf '%-8s %5d connections: %6.1f ms of CPU a second\n' "$mode" "$n" \
            "$(echo "($after - $before) * 1000 / $tick / 10" | bc -l)"
        kill "$client"
        # SIGTERM, then SIGINT: the second signal cuts the drain short.
        kill -TERM "$pid"
        kill -INT "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
done
