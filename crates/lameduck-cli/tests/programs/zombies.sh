#!/bin/sh
# Makes orphans that exit at once, so that they become zombies of PID 1
# unless PID 1 reaps them, then waits (bounded) until no zombie is left in
# this PID namespace: exit 0 when none is left, 1 otherwise.
for i in 1 2 3 4 5; do
    ( true & )
done
n=0
while [ $n -lt 200 ]; do
    if ! grep -q '^State:[[:space:]]*Z' /proc/[0-9]*/status 2>/dev/null; then
        exit 0
    fi
    n=$((n + 1))
    sleep 0.01
done
echo "zombies left:" >&2
grep -l '^State:[[:space:]]*Z' /proc/[0-9]*/status >&2
exit 1
