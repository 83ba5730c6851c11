#!/bin/sh
# A wrapper that ignores SIGTERM and waits, with two children: one in a
# session of its own (setsid) that ignores SIGTERM too, whose pid it
# writes to the file $1 (once written, the program is ready), and a
# sleeper in the wrapper's group. The escaped child's parent (the wrapper)
# lives until lameduck kills it: the child is never orphaned to lameduck
# before that.
out=$1
trap '' TERM
setsid sh -c 'trap "" TERM; echo $$ >"$0.tmp"; mv "$0.tmp" "$0"; exec sleep 1000' "$out" &
sleep 1000 &
wait
wait
