#!/bin/sh
# Model-checks the SPIN models of docs/models.
#
#   docs/models/check.sh [--full] [MODEL...]     MODEL: many_senders, groups, lifecycle, bytes,
#                                                bytes_groups, bytes_many_groups, fdwake
#                                                (default: all but bytes_many)
#
#   many_senders   the many-senders protocol: its checks and mutants (about 25 s on 2 CPUs, < 1.2 GB a check)
#   groups         receiver groups: its checks and mutants (about 25 s on 2 CPUs, < 1 GB a check)
#   lifecycle      the lifecycle of receiver groups (joins, closes, removals, entry reuse): its
#                  checks (F9 as the product does it, senders moving the floor; and the other
#                  scheme, LEFTB_FLOOR, on a ring of 2), the old steps of a54aea3 (each must
#                  fail) and mutants of the fixed steps (about 100 s on 2 busy CPUs,
#                  < 350 MB a check)
#   bytes          byte channels, one sender and one receiver (B1-B7 and the wake-ups around
#                  them, a crash of either end at every step): its checks and mutants
#                  (about 40 s of CPU, 2 min on 2 busy CPUs, < 450 MB a check)
#   bytes_many     (only when named; not in the default run) many senders on a byte ring, claims
#                  under a claim bit (S0, M1-M6, T0-T2, R1-R5), a crash of any sender at every
#                  step: its checks and mutants, the earlier sketch among them (about 3 min on
#                  2 busy CPUs; the termination check needs 2.5 GB, the others < 850 MB); and
#                  T2 as the code does it (CODE_T2), alone and with the code's T0 and T3
#                  (CODE_T0 CODE_T2 TAKE_EITHER): safety with 1 crash (16.4 M states; 15.4 M,
#                  < 830 MB, 20-35 s of CPU), 2 crashes with 1 message per place (1.8 M),
#                  termination the same (3.7 M), place 0 dying twice (3.5 M) (< 350 MB, 2-8 s
#                  of CPU each); and the code as it is, with T0's generation test (CODE_GEN,
#                  GENMOD=2): 2 crashes with 1 message per place, safety and termination
#                  (3.3 M, 6.5 M), place 0 dying twice (6.9 M), an idle new sender (IDLE_NEW)
#                  with 1 and 2 crashes and 1 message per place (1.5 M, 11.6 M), the limit of
#                  the generation's bits (must fail: 14.0 M, 710 MB) and the generation test's
#                  mutants (each < 20 s of CPU, < 710 MB)
#   bytes_groups   receiver groups on a byte ring of one sender (C1-C7 walking records under
#                  the claim lock, T, L, A, D, J2-J3, the senders' bound over holds; a crash
#                  of any member at every step): its checks and mutants (about 2 min of CPU,
#                  3.5 min on 2 busy CPUs; each check < 20 s of CPU and < 500 MB)
#   bytes_many_groups  receiver groups on a byte ring of many senders (G1-G5: the senders zero
#                  the seq words of their claim's headers before M3, members read a seq only
#                  below the claim cursor, a hole's dead claim stepped over by each group under
#                  its claim lock, S0d waiting for every group; a crash of any sender or any
#                  member at every step): its checks and mutants (about 6.5 min of CPU, 7 min
#                  on 2 busy CPUs; the termination check needs 2.4 GB, the others < 1.3 GB)
#   fdwake         waking an end that waits on a file descriptor: its checks (alone on its
#                  word; sharing it with a sleeper in the kernel) and mutants (a few seconds,
#                  < 700 MB a check)
#   --full         also, fdwake: 3 messages, 2 crashes of each side (about 1 s); many_senders: the LTL property under weak fairness (about 30 s);
#                  groups: 2 crashes of any member, termination with a group created
#                  mid-run, 4 messages, and bitstate searches of 2 crashes with a group
#                  created mid-run (about 6 min, each search < 2 min and 1.5 GB);
#                  lifecycle: 1 crash with a ring of 2 and 3 messages, the asyncio sender
#                  with a ring of 2 and 4 messages, termination with 1 crash for each kind
#                  of sender, the polling sender, remove_group with 1 crash of any process,
#                  LEFTB_FLOOR with 1 crash, the other safe choice for F9 (LEFT_NEWEST), and
#                  each of the two tag checks of F1 alone (about 10 min on 2 busy CPUs,
#                  < 1.2 GB a check);
#                  bytes: termination with 2 crashes, 4 messages, a ring of 64 bytes, a
#                  rewritten padding length and reserve() with 2 crashes, the LTL property
#                  under weak fairness (unsliced sleeps, and the sleeps of Python calls in
#                  slices without the wake at attach) (about 5 min, < 1.1 GB a check)
#                  bytes_groups: termination with 1 crash of a sharing member (72 s of CPU,
#                  970 MB) and of the lone member, claims of 2 messages with no byte limit
#                  and 1 crash of a sharing member, 2 crashes of the lone member, 4 messages,
#                  the guarded stale w with 1 crash, and a bitstate search of 2 crashes of
#                  the sharing members (190 s of CPU, 520 MB) (about 8 min of CPU, < 1 GB a
#                  check);
#                  bytes_many_groups: termination with 1 crash of any member (one sharer),
#                  and a bitstate search of 1 crash of any process with both sharing members
#                  (512 MB of bits, hash factor 8.7: 493 M states, 18 min of CPU);
#                  bytes_many: 2 crashes, 2 messages per place (a bitstate search, 2 GB of
#                  bits), and place 0 dying twice with place 1 sending (about 4 min,
#                  < 2.3 GB a check); for CODE_T2 and CODE_T0 CODE_T2 TAKE_EITHER each:
#                  termination with 1 crash (32.8 M states, 30.7 M; 2.4 GB, 90 s of CPU), a
#                  complete search of 2 crashes, 2 messages per place (111.0 M, 108.5 M;
#                  5.6 GB, 170 s of CPU, 10-15 min on 2 busy CPUs), 3 crashes with place 0
#                  sending 2 messages and place 1 one, and the other way round (38.9 M
#                  states each, 38.7 M and 38.6 M; 2.1 GB, 55 s of CPU each), termination the
#                  first way (77.9 M, 77.3 M; 4.7 GB, 200 s of CPU), 3 crashes with
#                  2 messages per place (a bitstate search, 2 GB of bits: 343.4 M and 341.7 M
#                  states, hash factor 50, 380-410 s of CPU, 7-22 min on 2 busy CPUs); and
#                  the model's own T2 with 3 crashes (place 1 sending 1), which must fail (a
#                  finding: 14.4 M states, 700 MB, 20 s of CPU); for the code as it is
#                  (CODE_GEN): safety with 1 crash (23.9 M, 1.1 GB, 45 s of CPU), idle new
#                  senders with 1 crash (34.7 M, 2.1 GB, 75 s) and their termination with 2
#                  crashes, 1 message per place (23.3 M, 1.9 GB, 75 s), termination with 1
#                  crash (47.9 M, 3.2 GB, 140 s), place 0 dying twice with place 1 sending one
#                  message and GENMOD=3 (70.3 M, 3.6 GB, 150 s), 3 crashes with one place
#                  sending 2 messages and the other 1, both ways (76.5 M each, 3.6 GB, 125 s),
#                  2 crashes with 2 messages per place (a bitstate search, 2 GB of bits:
#                  178.6 M states, hash factor 96, 250 s) (about 50 min of CPU, < 5.6 GB a
#                  check)
#
# Every check of a model must report "errors: 0" over a complete search (the groups,
# bytes_many and bytes_groups bitstate searches of --full visit nearly every state, not surely
# every one); every
# mutant must report an error, so the checks cannot pass vacuously. Exits non-zero
# otherwise. Checks run side by side, as many as there are CPUs up to 4 (CYWHIP_SPIN_JOBS=N
# sets how many); each needs the memory said above.
set -u
here=$(cd "$(dirname "$0")" && pwd)
full=0
[ "${1:-}" = "--full" ] && { full=1; shift; }
models=${*:-many_senders groups lifecycle bytes bytes_groups bytes_many_groups fdwake}
SPIN=${SPIN:-spin}
CC=${CC:-cc}
work=$(mktemp -d "${TMPDIR:-/tmp}/cywhip-spin.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT INT TERM
failures=0
n=0

# Checks run $jobs at a time (CYWHIP_SPIN_JOBS, default: the number of CPUs, at most 4), each in a
# directory of its own; their reports are printed in order once all have finished. A check
# counts as passed only if it left its mark: one that died, or could not start, has failed.
jobs=${CYWHIP_SPIN_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)}
[ -n "${CYWHIP_SPIN_JOBS:-}" ] || [ "$jobs" -le 4 ] || jobs=4
running=0

# check NAME EXPECT("pass"|"fail") "SPIN -D FLAGS" "CC FLAGS" "PAN ARGS"   (model: $base)
check() {
    n=$((n + 1))
    dir="$work/$n"
    mkdir "$dir" && cp "$here/$base" "$dir/" || return
    if [ "$running" -ge "$jobs" ]; then
        wait
        running=0
    fi
    (run_check "$@" >"$dir/report" 2>&1 && touch "$dir/passed") &
    running=$((running + 1))
}

# run_check: one check in $dir; prints its report line(s); fails if the check failed.
run_check() {
    name=$1 expect=$2 sflags=$3 cflags=$4 pargs=$5
    failures=0
    start=$(date +%s.%N)
    if ! (cd "$dir" && $SPIN $sflags -a "$base" >spin.out 2>&1); then
        echo "FAIL  $name: spin -a failed"; sed 's/^/      /' "$dir/spin.out"
        return 1
    fi
    if ! (cd "$dir" && $CC -O2 -DMEMLIM=$memlim $cflags -o pan pan.c >cc.out 2>&1); then
        echo "FAIL  $name: compiling pan failed"; sed 's/^/      /' "$dir/cc.out"
        return 1
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
        return 1
    fi
    if [ "$expect" = pass ]; then
        if [ "$errors" -eq 0 ] && [ -z "$incomplete" ]; then
            echo "ok    $name: errors: 0, $states states, ${secs}s"
        else
            echo "FAIL  $name: errors: $errors, $states states, ${secs}s ${first}${incomplete}"
            (cd "$dir" && [ -f "$base.trail" ] && $SPIN $sflags -t -p "$base" | tail -n 40)
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
    [ "$failures" -eq 0 ]
}

check_many_senders() {
    base=many_senders.pml memlim=1800
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
}

check_groups() {
    base=groups.pml memlim=1500
    safe="-DSAFETY -DNOCLAIM -DCOLLAPSE"
    # One sender, 3 messages, capacity 2; group 0 with 2 members, group 1 (1 member)
    # created mid-run; a crash of any member at any step; a new member on a dead place.
    check "groups: safety, 1 crash of any member" pass "-DMAXCRASH=1" "$safe" ""
    check "groups: safety, 2 crashes of the broadcast member (durable group, J1 creator)" \
        pass "-DMAXCRASH=2 -DKILLABLE=4" "$safe" ""
    # No progress labels: any cycle is a non-progress cycle; none means every run ends.
    check "groups: termination (no cycle at all), 1 crash, group 1 from the start" \
        pass "-DMAXCRASH=1 -DNOCREATE" "-DNP -DNOCLAIM -DCOLLAPSE" "-l"
    if [ "$full" = 1 ]; then
        check "groups: safety, 2 crashes of any member, group 1 from the start" \
            pass "-DMAXCRASH=2 -DNOCREATE" "$safe" ""
        check "groups: termination (no cycle at all), 1 crash" \
            pass "-DMAXCRASH=1" "-DNP -DNOCLAIM -DCOLLAPSE" "-l"
        check "groups: safety, 4 messages, 1 crash" pass "-DM=4 -DMAXCRASH=1" "$safe" ""
        # 2 crashes with group 1 created mid-run: too many states to store them all in
        # 1.5 GB, so a bitstate search for each pair of members that may crash (a run
        # with 2 crashes kills at most 2 members); hash factor about 90-125.
        bits="-DSAFETY -DNOCLAIM -DBITSTATE"
        check "groups: safety, 2 crashes of members 0 and 1, bitstate" pass "-DKILLABLE=3" "$bits" "-w32"
        check "groups: safety, 2 crashes of members 0 and 2, bitstate" pass "-DKILLABLE=5" "$bits" "-w32"
        check "groups: safety, 2 crashes of members 1 and 2, bitstate" pass "-DKILLABLE=6" "$bits" "-w32"
    fi

    # Mutants, each in the smallest run that shows it (a few thousand states mostly;
    # compiled without optimization: compiling is most of their time).
    for m in NEXT_BEFORE_HOLD NO_LOCK RESOLVE_ALWAYS_ADOPT RESOLVE_NEVER_ADOPT TAKE_BEFORE_COPY \
             ADOPT_WITHOUT_LOCK NO_DETECT J2_NO_RESOLVE UNLOCK_PLACE_FIRST; do
        check "groups: mutant $m" fail "-D$m -DMAXCRASH=1" "-O0 -DSAFETY -DNOCLAIM" ""
    done
    for m in SENDER_IGNORES_HOLDS NO_SEQLOCK STALE_W; do
        check "groups: mutant $m" fail "-D$m -DMAXCRASH=0" "-O0 -DSAFETY -DNOCLAIM" ""
    done
    for m in NO_GEN_REPAIR NO_JOIN_REPAIR; do
        check "groups: mutant $m" fail "-D$m -DMAXCRASH=1 -DKILLABLE=4" "-O0 -DSAFETY -DNOCLAIM" ""
    done
    check "groups: mutant J2_AS_SPEC" fail "-DJ2_AS_SPEC -DMAXCRASH=2" "-O0 -DSAFETY -DNOCLAIM" ""
}

check_lifecycle() {
    base=lifecycle.pml memlim=1500
    safe="-DSAFETY -DNOCLAIM -DCOLLAPSE"
    small="-DCAP=1 -DM=2"
    # One sender (SKIND 1: blocking plain sends, 3: asyncio sends); members 0 and 1 joining
    # "a" (member 1: or "b"), each closing at any point; a crash of any process at any step.
    check "lifecycle: blocking sender, 1 crash" pass "-DSKIND=1 -DADMIN=0 $small" "$safe" ""
    check "lifecycle: asyncio sender, 1 crash" pass "-DSKIND=3 -DADMIN=0 $small" "$safe" ""
    # remove_group on "a" or "b" at any moment; "b" durable.
    check "lifecycle: remove_group, a durable group" pass "-DSKIND=1 -DADMIN=2 -DBDUR -DMAXCRASH=0 $small" "$safe" ""
    # A ring of 2, 4 messages: groups joining after every group left, the floor.
    check "lifecycle: ring of 2, 4 messages" pass "-DSKIND=1 -DADMIN=0 -DCAP=2 -DM=4 -DMAXCRASH=0" "$safe" ""
    check "lifecycle: termination (no cycle at all)" pass "-DSKIND=1 -DADMIN=0 -DMAXCRASH=0 $small" \
        "-DNP -DNOCLAIM -DCOLLAPSE" "-l"
    # F9 the other safe way: every group gone, a bound max(floor, W + 1 - capacity) recomputed
    # at each look, and a new group starting there (the floor never moved by the senders).
    check "lifecycle: F9 with the bound max(floor, W + 1 - capacity), ring of 2, 4 messages" pass \
        "-DLEFTB_FLOOR -DSKIND=1 -DADMIN=0 -DCAP=2 -DM=4 -DMAXCRASH=0" "$safe" ""
    if [ "$full" = 1 ]; then
        check "lifecycle: F9 with the bound max(floor, W + 1 - capacity), blocking sender, 1 crash" pass \
            "-DLEFTB_FLOOR -DSKIND=1 -DADMIN=0 $small" "$safe" ""
        check "lifecycle: F9 with the bound max(floor, W + 1 - capacity), asyncio sender, 1 crash" pass \
            "-DLEFTB_FLOOR -DSKIND=3 -DADMIN=0 $small" "$safe" ""
        check "lifecycle: ring of 2, 3 messages, 1 crash" pass "-DSKIND=1 -DADMIN=0 -DCAP=2 -DM=3" "$safe" ""
        check "lifecycle: asyncio sender, ring of 2, 4 messages" pass \
            "-DSKIND=3 -DADMIN=0 -DCAP=2 -DM=4 -DMAXCRASH=0" "$safe" ""
        check "lifecycle: polling sender, 1 crash" pass "-DSKIND=2 -DADMIN=0 $small" "$safe" ""
        check "lifecycle: termination, blocking sender, 1 crash" pass "-DSKIND=1 -DADMIN=0 $small" \
            "-DNP -DNOCLAIM -DCOLLAPSE" "-l"
        check "lifecycle: termination, asyncio sender, 1 crash" pass "-DSKIND=3 -DADMIN=0 $small" \
            "-DNP -DNOCLAIM -DCOLLAPSE" "-l"
        check "lifecycle: F9 with a later group starting at the newest message" pass \
            "-DLEFT_NEWEST -DSKIND=1 -DADMIN=0 -DCAP=2 -DM=4 -DMAXCRASH=0" "$safe" ""
        check "lifecycle: remove_group on \"a\", 1 crash of any process (the administrator too)" pass \
            "-DSKIND=1 -DADMIN=1 $small" "$safe" ""
        check "lifecycle: F1 with the tag checked by X3 alone" pass "-DR_NO_CHECK -DSKIND=1 -DADMIN=0 $small" "$safe" ""
        check "lifecycle: F1 with the tag checked by group_remove alone" pass \
            "-DX_NO_CHECK -DSKIND=1 -DADMIN=0 $small" "$safe" ""
    fi

    # The old steps (a54aea3), one finding each, and mutants of the fixed steps: each must fail.
    mut="-O0 -DSAFETY -DNOCLAIM"
    check "lifecycle: old step OLD_LEAVE (finding 1)" fail "-DOLD_LEAVE -DSKIND=1 -DADMIN=0 $small" "$mut" ""
    check "lifecycle: old step OLD_RELEASE (finding 3)" fail "-DOLD_RELEASE -DSKIND=2 -DADMIN=0 $small" "$mut" ""
    check "lifecycle: old step OLD_ASYNC_GEN (finding 6)" fail "-DOLD_ASYNC_GEN -DSKIND=3 -DADMIN=0 $small" "$mut" ""
    check "lifecycle: old step OLD_FLOOR (finding 9)" fail "-DOLD_FLOOR -DSKIND=1 -DADMIN=0 $small" "$mut" ""
    check "lifecycle: old steps OLD (a54aea3)" fail "-DOLD -DSKIND=3 -DADMIN=0 $small" "$mut" ""
    for m in START_OLDEST ASYNC_UNSLICED ASYNC_SLICE_NOB; do
        check "lifecycle: mutant $m" fail "-D$m -DSKIND=$([ $m = START_OLDEST ] && echo 1 || echo 3) -DADMIN=0 $small" "$mut" ""
    done
    for m in START_NO_FLOOR LEFT_ROOM_CAP; do
        check "lifecycle: mutant $m" fail "-D$m -DSKIND=1 -DADMIN=0 -DCAP=2 -DM=4 -DMAXCRASH=0" "$mut" ""
    done
    # Mutants of F9's floor moved by the senders (the default).
    for m in FM_NO_STORE FM_NO_G2 FM_G2_BEFORE_CAS FM_FLOOR_FIRST; do
        check "lifecycle: mutant $m" fail "-D$m -DSKIND=1 -DADMIN=0 $small" "$mut" ""
    done
}

check_bytes_many() {
    base=bytes_many.pml memlim=1500
    safe="-DSAFETY -DNOCLAIM -DCOLLAPSE"
    # 2 senders, 2 messages per place, a ring of 64 bytes, records of 24 and 32 bytes with
    # padding; a crash of any sender at any step, a new sender on a dead place; claims under
    # the claim bit (M1-M3, T0-T2, S0).
    check "bytes_many: safety, 1 crash" pass "-DMAXCRASH=1" "$safe" ""
    # No progress labels: any cycle is a non-progress cycle; none means every run ends.
    memlim=3000
    check "bytes_many: termination (no cycle at all), 1 crash" pass "-DMAXCRASH=1" "-DNP -DNOCLAIM -DCOLLAPSE" "-l"
    memlim=1500
    check "bytes_many: safety, 2 crashes, 1 message per place" pass "-DMAXCRASH=2 -DNM=1" "$safe" ""
    check "bytes_many: termination (no cycle at all), 2 crashes, 1 message per place" pass \
        "-DMAXCRASH=2 -DNM=1" "-DNP -DNOCLAIM -DCOLLAPSE" "-l"
    # Place 0 dies twice (twice with its claim committed, or the second sender between its
    # S0e and S0f) and a third sender takes it (S0d); place 1 sends nothing (--full: one).
    check "bytes_many: safety, 2 crashes of place 0, 3 senders on it, place 1 idle" pass \
        "-DMAXCRASH=2 -DKILLABLE=1 -DMAXINC=3 -DNM0=3 -DNM=0" "$safe" ""
    if [ "$full" = 1 ]; then
        # 2 crashes, 2 messages per place: more states than 4 GB hold; a bitstate search
        # (2 GB of bits, hash factor about 155), which visits nearly every state, not surely
        # every one.
        memlim=3000
        check "bytes_many: safety, 2 crashes, bitstate" pass "" "-DSAFETY -DNOCLAIM -DBITSTATE" "-w34"
        check "bytes_many: safety, 2 crashes of place 0, 3 senders on it, place 1 sending 1" pass \
            "-DMAXCRASH=2 -DKILLABLE=1 -DMAXINC=3 -DNM0=3 -DNM=1" "$safe" ""
        memlim=1500
    fi

    # T0 as the code does it (CODE_T0): a taker that keeps the bit or frees it at c (T3) at any
    # takeover.  T2 as the code does it (CODE_T2: every place's intent for c cleared), alone
    # and with the code's T0 and T3 (the code as it is).
    for v in "CODE_T0 TAKE_EITHER" "CODE_T2" "CODE_T0 CODE_T2 TAKE_EITHER"; do
        f="-D$(echo "$v" | sed 's/ / -D/g')"
        check "bytes_many: $v, safety, 1 crash" pass "$f -DMAXCRASH=1" "$safe" ""
        check "bytes_many: $v, safety, 2 crashes, 1 message per place" pass "$f -DMAXCRASH=2 -DNM=1" "$safe" ""
        check "bytes_many: $v, termination, 2 crashes, 1 message per place" pass \
            "$f -DMAXCRASH=2 -DNM=1" "-DNP -DNOCLAIM -DCOLLAPSE" "-l"
        if [ "$v" = "CODE_T0 TAKE_EITHER" ]; then
            check "bytes_many: CODE_T0 TAKE_RELEASE, place 0 dying twice" pass \
                "-DCODE_T0 -DTAKE_RELEASE -DMAXCRASH=2 -DKILLABLE=1 -DMAXINC=3 -DNM0=3 -DNM=0" "$safe" ""
            check "bytes_many: mutant CODE_T0 NO_GEN" fail "-DCODE_T0 -DNO_GEN -DMAXCRASH=1" "-O0 -DSAFETY -DNOCLAIM" ""
            continue
        fi
        check "bytes_many: $v, place 0 dying twice" pass \
            "$f -DMAXCRASH=2 -DKILLABLE=1 -DMAXINC=3 -DNM0=3 -DNM=0" "$safe" ""
        if [ "$full" = 1 ]; then
            memlim=3000
            check "bytes_many: $v, termination (no cycle at all), 1 crash" pass \
                "$f -DMAXCRASH=1" "-DNP -DNOCLAIM -DCOLLAPSE" "-l"
            # A complete search of 2 crashes, 2 messages per place: 111 M states, 5.6 GB.
            memlim=7000
            check "bytes_many: $v, safety, 2 crashes" pass "$f -DMAXCRASH=2" "$safe" "-w27"
            # 3 crashes, one place sending 2 messages (2 senders), the other one.
            check "bytes_many: $v, safety, 3 crashes, place 1 sending 1" pass \
                "$f -DMAXCRASH=3 -DNM0=2 -DNM=1" "$safe" "-w26"
            check "bytes_many: $v, safety, 3 crashes, place 0 sending 1" pass \
                "$f -DMAXCRASH=3 -DNM0=1 -DNM=2" "$safe" "-w26"
            check "bytes_many: $v, termination (no cycle at all), 3 crashes, place 1 sending 1" pass \
                "$f -DMAXCRASH=3 -DNM0=2 -DNM=1" "-DNP -DNOCLAIM -DCOLLAPSE" "-l -w26"
            # 3 crashes, 2 messages per place: about 342 M states, more than 8 GB hold; a
            # bitstate search (2 GB of bits, hash factor about 50).
            memlim=3000
            check "bytes_many: $v, safety, 3 crashes, bitstate" pass "$f -DMAXCRASH=3" \
                "-DSAFETY -DNOCLAIM -DBITSTATE" "-w34"
            memlim=1500
        fi
    done
    # The code as it is with T0's generation test as the code does it (CODE_GEN: the place's
    # generation modulo GENMOD=2, counted by S0, skipping the word's owner's; the lock test and
    # the generation's load two steps).  IDLE_NEW: a new sender may keep a dead place, idle.
    f="-DCODE_T0 -DCODE_T2 -DTAKE_EITHER -DCODE_GEN"
    check "bytes_many: the code, safety, 2 crashes, 1 message per place" pass "$f -DMAXCRASH=2 -DNM=1" "$safe" ""
    check "bytes_many: the code, termination, 2 crashes, 1 message per place" pass \
        "$f -DMAXCRASH=2 -DNM=1" "-DNP -DNOCLAIM -DCOLLAPSE" "-l"
    # 3 senders on place 0: the generation wraps round (3 = 1 modulo 2), S0 skips it.
    check "bytes_many: the code, place 0 dying twice" pass \
        "$f -DMAXCRASH=2 -DKILLABLE=1 -DMAXINC=3 -DNM0=3 -DNM=0" "$safe" ""
    check "bytes_many: the code, idle new senders, safety, 1 crash, 1 message per place" pass \
        "$f -DIDLE_NEW -DMAXCRASH=1 -DNM=1" "$safe" ""
    check "bytes_many: the code, idle new senders, safety, 2 crashes, 1 message per place" pass \
        "$f -DIDLE_NEW -DMAXCRASH=2 -DNM=1" "$safe" ""
    # The limit of the generation's bits: a sender preempted between its lock test and its T1
    # while GENMOD senders of another place come and go (the code: 2,048) takes the bit from a
    # live owner of the same generation (docs/protocol.md).  Must fail with GENMOD=2.
    check "bytes_many: the code, place 0 dying twice, place 1 sending 1, GENMOD=2 (the limit)" fail \
        "$f -DMAXCRASH=2 -DKILLABLE=1 -DMAXINC=3 -DNM0=3 -DNM=1" "$safe" ""
    # Mutants of the generation test, each must fail; and the model's own death test with an
    # idle new sender.
    mut="-O0 -DSAFETY -DNOCLAIM"
    check "bytes_many: the code without CODE_GEN, idle new senders" fail \
        "-DCODE_T0 -DCODE_T2 -DTAKE_EITHER -DIDLE_NEW -DMAXCRASH=1 -DNM=1" "$mut" ""
    check "bytes_many: mutant CODE_GEN GEN_NO_SKIP" fail \
        "$f -DGEN_NO_SKIP -DMAXCRASH=2 -DKILLABLE=1 -DMAXINC=3 -DNM0=3 -DNM=0" "$mut" ""
    check "bytes_many: mutant CODE_GEN GENMOD=1" fail "$f -DGENMOD=1 -DMAXCRASH=1" "$mut" ""
    check "bytes_many: mutant CODE_GEN GEN_GE" fail "$f -DGEN_GE -DMAXCRASH=0" "$mut" ""
    check "bytes_many: mutant CODE_GEN GEN_GT" fail "$f -DGEN_GT -DIDLE_NEW -DMAXCRASH=1 -DNM=1" "$mut" ""
    if [ "$full" = 1 ]; then
        memlim=3000
        check "bytes_many: the code, safety, 1 crash" pass "$f -DMAXCRASH=1" "$safe" ""
        check "bytes_many: the code, idle new senders, safety, 1 crash" pass \
            "$f -DIDLE_NEW -DMAXCRASH=1" "$safe" ""
        check "bytes_many: the code, idle new senders, termination, 2 crashes, 1 message per place" pass \
            "$f -DIDLE_NEW -DMAXCRASH=2 -DNM=1" "-DNP -DNOCLAIM -DCOLLAPSE" "-l"
        memlim=6000
        check "bytes_many: the code, termination (no cycle at all), 1 crash" pass \
            "$f -DMAXCRASH=1" "-DNP -DNOCLAIM -DCOLLAPSE" "-l"
        check "bytes_many: the code, place 0 dying twice, place 1 sending 1, GENMOD=3" pass \
            "$f -DGENMOD=3 -DMAXCRASH=2 -DKILLABLE=1 -DMAXINC=3 -DNM0=3 -DNM=1" "$safe" ""
        check "bytes_many: the code, safety, 3 crashes, place 1 sending 1" pass \
            "$f -DMAXCRASH=3 -DNM0=2 -DNM=1" "$safe" "-w26"
        check "bytes_many: the code, safety, 3 crashes, place 0 sending 1" pass \
            "$f -DMAXCRASH=3 -DNM0=1 -DNM=2" "$safe" "-w26"
        # 2 crashes, 2 messages per place: about 179 M states, 9 GB; a bitstate search (2 GB
        # of bits, hash factor about 96).
        memlim=3000
        check "bytes_many: the code, safety, 2 crashes, bitstate" pass "$f -DMAXCRASH=2" \
            "-DSAFETY -DNOCLAIM -DBITSTATE" "-w34"
        memlim=1500
    fi

    if [ "$full" = 1 ]; then
        # Finding: the model's T2 (the dead owner's place alone) fails with 3 crashes: two dead
        # claims at one position (docs/protocol.md, "Many senders on a byte ring").
        check "bytes_many: the model's T2, 3 crashes, place 1 sending 1 (finding)" fail \
            "-DMAXCRASH=3 -DNM0=2 -DNM=1" "$safe" ""
    fi

    # Mutants: each must fail.  The earlier sketch (no claim bit): finding 1 without the
    # second load of the intent, finding 2 (two dead intents at one position) with it.
    mut="-O0 -DSAFETY -DNOCLAIM"
    check "bytes_many: mutant SKETCH NO_REREAD (finding 1)" fail "-DSKETCH -DNO_REREAD -DMAXCRASH=1" "$mut" ""
    check "bytes_many: mutant SKETCH (finding 2)" fail "-DSKETCH -DMAXCRASH=2 -DNM=1 -DMAXINC=1" "$mut" ""
    check "bytes_many: mutant TAKE_NO_CLEAR" fail "-DTAKE_NO_CLEAR -DMAXCRASH=2 -DNM=1 -DMAXINC=1" "$mut" ""
    for m in M3_FIRST NO_ZERO EXACT_INTENT NO_LOCK_TEST SCAN_OWNED; do
        check "bytes_many: mutant $m" fail "-D$m -DMAXCRASH=0" "$mut" ""
    done
    for m in NO_GEN TAKE_RELEASE S0_UNDER_BIT S0_ERASES; do
        check "bytes_many: mutant $m" fail "-D$m -DMAXCRASH=1" "$mut" ""
    done
    check "bytes_many: mutant S0_WAIT_ALWAYS" fail "-DS0_WAIT_ALWAYS -DMAXCRASH=2 -DKILLABLE=1 -DMAXINC=3 -DNM0=3 -DNM=0" "$mut" ""
}

check_bytes() {
    base=bytes.pml memlim=1500
    safe="-DSAFETY -DNOCLAIM -DCOLLAPSE"
    # One sender, one receiver, 3 messages of 5 or 16 bytes in a ring of 48 bytes (records of
    # 16 and 24 bytes, padding of 8 and 16), a crash of either end at every step, a new end
    # taking its place.
    check "bytes: safety, 2 crashes" pass "" "$safe" ""
    # No progress labels: any cycle is a non-progress cycle; none means every run ends.
    check "bytes: termination (no cycle at all), 1 crash" pass "-DMAXCRASH=1" "-DNP -DNOCLAIM -DCOLLAPSE" "-l"
    check "bytes: reserve() committing, truncating or abandoning, 1 crash" pass "-DRESERVE -DMAXCRASH=1" "$safe" ""
    check "bytes: a padding length rewritten, caught by B6, 1 crash" pass "-DCORRUPT_PAD -DMAXCRASH=1" "$safe" ""
    check "bytes: a ring of 64 bytes, messages of 13 or 24 bytes, 1 crash" pass \
        "-DCAP=8 -DLEN1=13 -DMAXCRASH=1" "$safe" ""
    if [ "$full" = 1 ]; then
        check "bytes: termination (no cycle at all), 2 crashes" pass "" "-DNP -DNOCLAIM -DCOLLAPSE" "-l"
        check "bytes: safety, 4 messages, 2 crashes" pass "-DNM=4" "$safe" ""
        check "bytes: a ring of 64 bytes, 4 messages, 1 crash" pass "-DCAP=8 -DLEN1=13 -DNM=4 -DMAXCRASH=1" "$safe" ""
        check "bytes: reserve(), 2 crashes" pass "-DRESERVE" "$safe" ""
        check "bytes: a padding length rewritten, 2 crashes" pass "-DCORRUPT_PAD" "$safe" ""
        check "bytes: ltl done: <> rdone under weak fairness, 1 crash" pass "-DMAXCRASH=1" "-DCOLLAPSE" "-a -f"
        check "bytes: ltl done, sleeps in slices (Python calls) without the wake at attach, 1 crash" pass \
            "-DSLICED -DNO_ATTACH_WAKE -DMAXCRASH=1" "-DCOLLAPSE" "-a -f"
    fi

    # Mutants: each breaks one rule of the steps and must be caught (no crash needed but
    # for the wake at attach; CORRUPT_PAD's rewritten padding for the padding check).
    mut="-O0 -DSAFETY -DNOCLAIM"
    for m in EARLY_PUBLISH PUBLISH_FIRST NO_PAD_RECORD ROOM_NO_PAD RELEASE_EARLY BIG_MESSAGE \
             NO_RECHECK NO_RECHECK_R; do
        check "bytes: mutant $m" fail "-D$m -DMAXCRASH=0" "$mut" ""
    done
    for m in NO_ATTACH_WAKE ATTACH_WAKE_IF_SET; do
        check "bytes: mutant $m" fail "-D$m -DMAXCRASH=1" "$mut" ""
    done
    check "bytes: mutant NO_PAD_CHECK" fail "-DNO_PAD_CHECK -DCORRUPT_PAD -DMAXCRASH=0" "$mut" ""
}

check_bytes_groups() {
    base=bytes_groups.pml memlim=1500
    safe="-DSAFETY -DNOCLAIM -DCOLLAPSE"
    # One sender, 3 messages of 5 or 16 bytes in a ring of 48 bytes (records of 16 and 24
    # bytes, padding of 8 and 16); members 0 and 1 sharing group 0, member 2 alone in group 1,
    # both groups in use from the start; a crash at any step of a member, a new member coming
    # back.  Members 0 and 1 are alike (the places and the steps are the same but for their
    # numbers): a crash of member 0 stands for a crash of either (KILLABLE=1), member 2 is
    # the other case (KILLABLE=4).
    check "bytes_groups: safety, 1 crash of a sharing member" pass "-DMAXCRASH=1 -DKILLABLE=1" "$safe" ""
    check "bytes_groups: safety, 1 crash of the lone member" pass "-DMAXCRASH=1 -DKILLABLE=4" "$safe" ""
    check "bytes_groups: claims of up to 2 messages (T after one or both), 1 crash of the lone member" \
        pass "-DWANT=2 -DMAXCRASH=1 -DKILLABLE=4" "$safe" ""
    check "bytes_groups: C4 walking to the w of C2, with the guard" pass "-DSTALE_W_GUARD -DMAXCRASH=0" "$safe" ""
    # No progress labels: any cycle is a non-progress cycle; none means every run ends.
    # No progress labels: any cycle is a non-progress cycle; none means every run ends.  A
    # ring of 40 bytes and 2 messages (records of 16 and 24 bytes, a padding of 16 after two
    # of 24); --full: the ring of 48 bytes and 3 messages.
    check "bytes_groups: termination (no cycle at all), 1 crash of any member, 40 bytes, 2 messages" \
        pass "-DCAP=5 -DNM=2 -DMAXCRASH=1" "-DNP -DNOCLAIM -DCOLLAPSE" "-l"
    if [ "$full" = 1 ]; then
        check "bytes_groups: termination, 1 crash of a sharing member" \
            pass "-DMAXCRASH=1 -DKILLABLE=1" "-DNP -DNOCLAIM -DCOLLAPSE" "-l"
        check "bytes_groups: termination, 1 crash of the lone member" \
            pass "-DMAXCRASH=1 -DKILLABLE=4" "-DNP -DNOCLAIM -DCOLLAPSE" "-l"
        check "bytes_groups: claims of up to 2 messages, no byte limit, 1 crash of a sharing member" \
            pass "-DWANT=2 -DLIMIT=CAP -DMAXCRASH=1 -DKILLABLE=1" "$safe" ""
        check "bytes_groups: safety, 2 crashes of the lone member" pass "-DMAXCRASH=2 -DKILLABLE=4" "$safe" ""
        check "bytes_groups: safety, 4 messages" pass "-DNM=4 -DMAXCRASH=0" "$safe" ""
        check "bytes_groups: C4 walking to the w of C2, with the guard, 1 crash of a sharing member" \
            pass "-DSTALE_W_GUARD -DMAXCRASH=1 -DKILLABLE=1" "$safe" ""
        # 2 crashes of the sharing members: more than 28 M states, past 1.5 GB; a bitstate
        # search (512 MB of bits, hash factor about 40), which visits nearly every state.
        check "bytes_groups: safety, 2 crashes of the sharing members, bitstate" \
            pass "-DMAXCRASH=2 -DKILLABLE=3" "-DSAFETY -DNOCLAIM -DBITSTATE" "-w32"
    fi

    # Mutants, each in the smallest run that shows it.
    mut="-O0 -DSAFETY -DNOCLAIM"
    for m in SENDER_IGNORES_HOLDS STALE_W PAD_ALONE ROOM_NO_PAD NEXT_BEFORE_HOLD NO_LOCK; do
        check "bytes_groups: mutant $m" fail "-D$m -DMAXCRASH=0" "$mut" ""
    done
    check "bytes_groups: mutant PAD_END" fail "-DPAD_END -DWANT=2 -DMAXCRASH=0" "$mut" ""
    check "bytes_groups: mutant T_PAST" fail "-DT_PAST -DWANT=2 -DLIMIT=CAP -DMAXCRASH=0" "$mut" ""
    check "bytes_groups: mutant HOLD_AT_MESSAGE" fail "-DHOLD_AT_MESSAGE -DNM=4 -DMAXCRASH=0" "$mut" ""
    for m in RESOLVE_ALWAYS_ADOPT RESOLVE_NEVER_ADOPT UNLOCK_PLACE_FIRST NO_DETECT; do
        check "bytes_groups: mutant $m" fail "-D$m -DMAXCRASH=1" "$mut" ""
    done
}

check_bytes_many_groups() {
    base=bytes_many_groups.pml memlim=1500
    safe="-DSAFETY -DNOCLAIM -DCOLLAPSE"
    # 2 senders, 1 message each of 5 or 12 bytes, a ring of 56 bytes after earlier laps (every
    # unit a stale seq); members 0 and 1 sharing group 0, member 2 alone in group 1.
    check "bytes_many_groups: safety, no crash, both sharing members" pass "-DMAXCRASH=0" "$safe" ""
    # Group 0 of one member (ONE_SHARER): a crash of either sender, of any member.
    check "bytes_many_groups: safety, 1 crash of either sender" pass "-DMAXCRASH=1 -DKILLABLE=3 -DONE_SHARER" "$safe" ""
    check "bytes_many_groups: safety, 1 crash of any member" pass "-DMAXCRASH=1 -DKILLABLE=28 -DONE_SHARER" "$safe" ""
    # Place 0 dies twice with a claim committed; the third sender's S0d waits for every group
    # to pass the first dead claim before it keeps the second.
    check "bytes_many_groups: safety, place 0 dying twice, a third sender on it" pass \
        "-DNM0=3 -DNM=0 -DMAXCRASH=2 -DKILLABLE=1 -DMAXINC=3 -DONE_SHARER -DFIXED" "$safe" ""
    # No progress labels: any cycle is a non-progress cycle; none means every run ends.
    memlim=3000
    check "bytes_many_groups: termination (no cycle at all), 1 crash of either sender" pass \
        "-DMAXCRASH=1 -DKILLABLE=3 -DONE_SHARER" "-DNP -DNOCLAIM -DCOLLAPSE" "-l"
    if [ "$full" = 1 ]; then
        check "bytes_many_groups: termination (no cycle at all), 1 crash of any member" pass \
            "-DMAXCRASH=1 -DKILLABLE=28 -DONE_SHARER" "-DNP -DNOCLAIM -DCOLLAPSE" "-l"
        # 1 crash of any process with both sharing members: a bitstate search (512 MB of bits).
        check "bytes_many_groups: safety, 1 crash of any process, both sharing members, bitstate" pass \
            "-DMAXCRASH=1" "-DSAFETY -DNOCLAIM -DBITSTATE" "-w32"
    fi
    memlim=1500

    # Mutants, each must fail.
    mut="-O0 -DSAFETY -DNOCLAIM"
    for m in NO_SZERO ZERO_AFTER_M3 ZERO_FIRST SEQ_FIRST ROOM_ONE_GROUP; do
        check "bytes_many_groups: mutant $m" fail "-D$m -DMAXCRASH=0 -DONE_SHARER" "$mut" ""
    done
    for m in S0D_NO_WAIT S0D_ANY_GROUP; do
        check "bytes_many_groups: mutant $m" fail \
            "-D$m -DNM0=3 -DNM=0 -DMAXCRASH=2 -DKILLABLE=1 -DMAXINC=3 -DONE_SHARER -DFIXED" "$mut" ""
    done
}

check_fdwake() {
    base=fdwake.pml memlim=1000
    # 2 messages; the fd waiter and the waker may each crash once, at any step.
    check "fdwake: safety, alone on the word, 1 crash of each side" pass "" "-DSAFETY" ""
    check "fdwake: safety, a word shared with a sleeper in the kernel, 1 crash of each side" \
        pass "-DSHARED" "-DSAFETY" ""
    if [ "$full" = 1 ]; then
        check "fdwake: safety, 3 messages, 2 crashes of each side" pass "-DN=3 -DMAXCRASH=2 -DWCRASH=2" "-DSAFETY" ""
    fi
    for m in NO_RECHECK DRAIN_LATE NO_FD_WAKE NO_REPAIR; do
        check "fdwake: mutant $m" fail "-D$m" "-O0 -DSAFETY" ""
    done
    check "fdwake: mutant NO_RECHECK, shared word" fail "-DNO_RECHECK -DSHARED" "-O0 -DSAFETY" ""
}

command -v "$SPIN" >/dev/null 2>&1 || { echo "spin not found" >&2; exit 2; }
command -v "$CC" >/dev/null 2>&1 || { echo "C compiler $CC not found" >&2; exit 2; }
t0=$(date +%s)

for model in $models; do
    case $model in
    many_senders|groups|lifecycle|bytes|bytes_many|bytes_groups|bytes_many_groups|fdwake) check_$model ;;
    *) echo "unknown model: $model (many_senders, groups, lifecycle, bytes, bytes_many, bytes_groups, bytes_many_groups, fdwake)" >&2; exit 2 ;;
    esac
done

wait
k=1
while [ "$k" -le "$n" ]; do
    cat "$work/$k/report" 2>/dev/null
    if [ ! -e "$work/$k/passed" ]; then
        failures=$((failures + 1))
        [ -s "$work/$k/report" ] || echo "FAIL  check $k: it ended without a report"
    fi
    k=$((k + 1))
done
echo "$n checks, $failures failed, $(($(date +%s) - t0)) s"
[ "$failures" -eq 0 ]
