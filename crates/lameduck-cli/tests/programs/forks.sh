#!/bin/sh
# Forks grandchildren and reports their pids in the file $1, one a line:
# a sleeper, and a sleeper that ignores SIGTERM (so that only SIGKILL, at
# the deadline, ends it). Then it waits, like a naive supervisor script.
out=$1
sleep 1000 &
echo $! >>"$out"
sh -c 'trap "" TERM; sleep 1000 & echo $! >>"$0"; wait' "$out" &
echo $! >>"$out"
# Ready once the three pids are written (the inner shell writes its own
# child's asynchronously): at most 5 s.
n=0
while [ "$(wc -l <"$out")" -lt 3 ] && [ $n -lt 500 ]; do
    sleep 0.01
    n=$((n + 1))
done
echo ready >>"$out.ready"
wait
