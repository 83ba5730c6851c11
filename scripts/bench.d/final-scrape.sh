#!/usr/bin/env bash
# The time the final scrape adds to a shutdown: `lameduck demo` (drain delay
# 0) scraped by a real Prometheus every second, SIGTERM at a random moment
# once Prometheus has scraped it, the Closing phase's duration read from the
# demo's report; with --final-scrape 2s and without. Prints one line per run
# and a summary; sourced by scripts/bench (scenario final-scrape).
#
#   final_scrape_runs LAMEDUCK_BINARY RUNS OUT_DIR
final_scrape_runs() {
    local bin=$1 runs=$2 out=$3 port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    local with=() without=()
    for mode in with without; do
        local fs=2s
        [[ $mode == without ]] && fs=0s
        for ((i = 0; i < runs; i++)); do
            local d
            d=$(mktemp -d) || return 1
            "$bin" demo --listen 127.0.0.1:0 --admin 127.0.0.1:0 --drain-delay 0s \
                --final-scrape "$fs" --output human >"$d/out" 2>"$d/err" &
            local demo=$!
            for ((k = 0; k < 100; k++)); do grep -qs "admin on" "$d/out" && break; sleep 0.1; done
            local admin
            admin=$(sed -n 's/admin on http:\/\///p' "$d/out")
            printf 'global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: ["%s"]\n' \
                "$admin" >"$d/prometheus.yml"
            prometheus --config.file="$d/prometheus.yml" --storage.tsdb.path="$d/tsdb" \
                --web.listen-address="127.0.0.1:$port" >"$d/prometheus.log" 2>&1 &
            local prom=$!
            # Until Prometheus has scraped the demo once (its target is up).
            for ((k = 0; k < 300; k++)); do
                curl -s "127.0.0.1:$port/api/v1/targets" | grep -q '"health":"up"' && break
                sleep 0.1
            done
            # A random moment of the scrape interval.
            sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
            kill -TERM "$demo"
            wait "$demo"
            kill "$prom" 2>/dev/null
            wait "$prom" 2>/dev/null
            local closing
            closing=$(awk '$1 == "closing" {print $2}' "$d/err")
            cp "$d/err" "$out/$mode-$i.txt"
            rm -rf "$d"
            echo "$mode $closing"
            [[ $mode == with ]] && with+=("$closing") || without+=("$closing")
        done
    done
    # In seconds, sorted, then min, median and max.
    summary() {
        printf '%s\n' "$@" |
            awk '{ v = $1; if (v ~ /ms$/) { sub(/ms$/, "", v); v = v / 1000 } else { sub(/s$/, "", v) } print v }' |
            sort -g |
            awk '{ x[NR] = $1 } END { printf "min %.3fs  median %.3fs  max %.3fs  (%d runs)\n", x[1], x[int((NR + 1) / 2)], x[NR], NR }'
    }
    echo "Closing, with --final-scrape 2s (Prometheus every 1s): $(summary "${with[@]}")"
    echo "Closing, without:                                      $(summary "${without[@]}")"
}
