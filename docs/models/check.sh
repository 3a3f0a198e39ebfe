#!/bin/sh
# Model-checks docs/models/many_senders.pml with SPIN.
#
#   docs/models/check.sh          the model's checks and its mutants (about 30 s, < 1.2 GB)
#   docs/models/check.sh --full   also the LTL property under weak fairness (about 30 s more)
#
# Every check of the model must report "errors: 0" over a complete search; every mutant
# must report an error, so the checks cannot pass vacuously. Exits non-zero otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
model="$here/many_senders.pml"
full=0
[ "${1:-}" = "--full" ] && full=1
SPIN=${SPIN:-spin}
CC=${CC:-cc}
work=$(mktemp -d "${TMPDIR:-/tmp}/cywhip-spin.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT INT TERM
failures=0
n=0

# check NAME EXPECT("pass"|"fail") "SPIN -D FLAGS" "CC FLAGS" "PAN ARGS"
check() {
    name=$1 expect=$2 sflags=$3 cflags=$4 pargs=$5
    n=$((n + 1))
    dir="$work/$n"
    mkdir "$dir" && cp "$model" "$dir/" || { failures=$((failures + 1)); return; }
    start=$(date +%s.%N)
    if ! (cd "$dir" && $SPIN $sflags -a many_senders.pml >spin.out 2>&1); then
        echo "FAIL  $name: spin -a failed"; sed 's/^/      /' "$dir/spin.out"
        failures=$((failures + 1)); return
    fi
    if ! (cd "$dir" && $CC -O2 -DMEMLIM=1800 $cflags -o pan pan.c >cc.out 2>&1); then
        echo "FAIL  $name: compiling pan failed"; sed 's/^/      /' "$dir/cc.out"
        failures=$((failures + 1)); return
    fi
    (cd "$dir" && ./pan -m100000 $pargs >pan.out 2>&1)
    end=$(date +%s.%N)
    secs=$(echo "$start $end" | awk '{printf "%.1f", $2 - $1}')
    out="$dir/pan.out"
    errors=$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' "$out" | head -n 1)
    states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$out" | head -n 1)
    first=$(grep -m 1 '^pan:1:' "$out")
    incomplete=$(grep -E 'reached -DMEMLIM bound|max search depth too small|search not completed' "$out" | head -n 1)
    if [ -z "$errors" ]; then
        echo "FAIL  $name: no 'errors:' line from pan"; sed 's/^/      /' "$out"
        failures=$((failures + 1)); return
    fi
    if [ "$expect" = pass ]; then
        if [ "$errors" -eq 0 ] && [ -z "$incomplete" ]; then
            echo "ok    $name: errors: 0, $states states, ${secs}s"
        else
            echo "FAIL  $name: errors: $errors, $states states, ${secs}s ${first}${incomplete}"
            (cd "$dir" && [ -f many_senders.pml.trail ] && $SPIN $sflags -t -p many_senders.pml | tail -n 40)
            failures=$((failures + 1))
        fi
    else
        if [ "$errors" -gt 0 ]; then
            echo "ok    $name: caught as required (${first#pan:1: }), $states states, ${secs}s"
        else
            echo "FAIL  $name: the mutant passed (errors: 0, $states states): the check is vacuous"
            failures=$((failures + 1))
        fi
    fi
}

command -v "$SPIN" >/dev/null 2>&1 || { echo "spin not found" >&2; exit 2; }
command -v "$CC" >/dev/null 2>&1 || { echo "C compiler $CC not found" >&2; exit 2; }
t0=$(date +%s)

# The protocol: 2 senders, 2 messages per place, capacity 2, 2 crashes, a new sender on a dead place.
check "safety (assertions, no invalid end state)" pass "" "-DSAFETY -DNOCLAIM" ""
# Without progress labels, any cycle is a non-progress cycle: none means every run ends,
# and with the safety check every end is a valid end with everything delivered.
check "termination (no cycle at all)" pass "" "-DNP -DNOCLAIM" "-l"
check "safety, 3 messages per place, 1 crash" pass "-DNM=3 -DMAXCRASH=1" "-DSAFETY -DNOCLAIM" ""
if [ "$full" = 1 ]; then
    check "ltl done: <> rdone under weak fairness" pass "" "" "-a -f -N done"
fi

# Mutants: each breaks one rule of the protocol and must be caught.
for m in BROKEN_ORDER NO_LOCK_CHECK NO_RECHECK NO_RESET KEEP_STALE EARLY_PUBLISH; do
    check "mutant $m" fail "-D$m" "-DSAFETY -DNOCLAIM" ""
done

echo "$n checks, $failures failed, $(($(date +%s) - t0)) s"
[ "$failures" -eq 0 ]
