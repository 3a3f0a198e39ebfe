/*
 * groups.pml -- receiver groups with one sender: members of named groups split the
 * messages of their group between them, and every group gets every message; with a
 * crash of any member before or after every step.
 *
 * Step labels (C1..C7, T, L, A, D, J1..J3) are those of the receiver-groups spec.
 *
 * Shared memory                          model
 *   header write_cursor W                 W
 *   slot payload                          slot[s]       (c + 1 while message c is in it)
 *   header groups_gen (seqlock)           gen
 *   groups lock (OFD lock byte)           glk           (holder + 1, 0 free)
 *   group entry g: next_g, lock_g,        nxt[g], lk[g] (place + 1, 0 free),
 *                  flags_g (in use)       inuse[g]      (every group is durable)
 *   member place p: OFD lock byte         owner[p]      (member + 1, 0 free)
 *                   tag_p                 tag[p]        (group, or NONE)
 *                   hold_start_p          hs[p]         (first untaken + 1, 0 nothing)
 *                   hold_end_p            he[p]
 *
 * Processes: the sender, publishing M messages into a ring of CAP slots; members 0 and
 * 1 in group 0 (work sharing); member 2 in group 1 (broadcast: it gets every message
 * again); a killer.  Three member places.  Group 0 exists from the start.  Group 1 is
 * created by member 2's join (J1 under the groups lock, with the seqlock) while the
 * sender and group 0 run; with -DNOCREATE it exists from the start too.
 *
 * A crash: the killer clears live[m] and drops every lock member m holds (its places,
 * the groups lock) in one step, as the kernel does at the death; the member's `unless`
 * escape then ends that incarnation before its next step.  The dead member's process
 * may come back as a new member of the same group (a join, J1-J3, on any free place
 * it may take): it must if no other member of its group is alive (a durable group
 * keeps the senders waiting until a member comes back; the model needs one to end),
 * and may otherwise (then the surviving member alone must find the dead one's claim:
 * D, L, A).  Up to MAXCRASH crashes per run, at any step of a member (KILLABLE: which
 * members may crash).
 *
 * The protocol as modelled differs from the draft spec in four places; the spec as
 * written is the mutant named, which check.sh requires to fail:
 *   C4 loads W again (acquire) for k = min(W - n2, want).  With the w of C2, a
 *      claimer that waited for the lock can find next_g past w (other members
 *      claimed newer messages meanwhile): w - n2 wraps around and it claims messages
 *      not yet published.                                            (STALE_W)
 *   groups_gen odd with the groups lock free (a creator died between J1's two
 *      increments): whoever takes the groups lock and finds groups_gen odd first
 *      makes it even (the entry is whole if its in-use flag, stored last, is set, and
 *      unused otherwise); a sender that finds it odd with the groups lock free takes
 *      the groups lock to do so.  Otherwise senders retry their bound forever, and
 *      the next creation runs with groups_gen even, so the seqlock hides it from a
 *      sender reading its bound meanwhile.            (NO_GEN_REPAIR; NO_JOIN_REPAIR:
 *      the senders' repair alone is not enough.  The model's runs do not need the
 *      senders' repair, as a member of the group always joins again.)
 *   J2 may take a free place that holds nothing (hold_start 0) whatever its tag,
 *      clearing the lock_g of its tag's group if that names it (a claimer dead before
 *      C5).  The spec's "never a free place tagged with another in-use group" leaves a
 *      dead member's empty place unusable by other groups forever: a join finds no
 *      place though one holds nothing.                                (J2_AS_SPEC)
 *   L stores lock_g = 0 before it unlocks the dead place (the spec leaves the order
 *      open).  Once the place is free, a new member can take it, claim, and hold
 *      lock_g with the same value place + 1: the late store releases its claim lock
 *      and two members claim the same messages.                       (UNLOCK_PLACE_FIRST)
 *
 * Properties (ghosts: taken, allow, pend, gstart, fin):
 *   (a) no message lost: a member that finishes (nothing left to claim, no place of
 *       its group holding anything) asserts that its group took every message from
 *       the group's start; init asserts it for both groups once everyone has ended.
 *   (b) within a group a message is taken by one member, except after a death: a
 *       member that dies after copying message x and before its T for x gives (its
 *       group, x) one allowance; a second take of x in the group uses one up.  This
 *       is stricter than "x was in the dead member's hold": the rest of that hold was
 *       never copied, so taking it twice is a duplicate.
 *   (c) the sender never overwrites a message a group still needs: at the slot write,
 *       every group in use has taken the message overwritten (or starts after it);
 *       and every copy asserts that its slot holds the message claimed (published,
 *       and not overwritten before a slow or adopting member copied it).
 *   (d) nobody stuck: the -DSAFETY run finds no invalid end state (every wait is a
 *       blocking guard: a member for messages, for the claim lock, for the groups
 *       lock, for a place; the sender for room or for an even groups_gen); the -DNP
 *       run (no progress labels) finds no cycle at all, so every run ends.
 *
 * Mutants (each must fail):
 *   NEXT_BEFORE_HOLD      C6 before C5
 *   NO_LOCK               claims without the claim lock (no C3, no C7)
 *   RESOLVE_ALWAYS_ADOPT  L takes every stale hold as effective (also without C6)
 *   RESOLVE_NEVER_ADOPT   L takes every stale hold as void (also after C6)
 *   SENDER_IGNORES_HOLDS  the bound is the min of next_g only
 *   TAKE_BEFORE_COPY      T stored before the copy
 *   ADOPT_WITHOUT_LOCK    D adopts a holding place of its group without taking its
 *                         lock: a live but slow member taken for dead
 *   NO_DETECT             a member with nothing to claim never looks for dead places
 *   J2_NO_RESOLVE         a join ignores a lock_g that names the place it takes
 *   NO_SEQLOCK            the sender reads its bound without groups_gen
 *   NO_JOIN_REPAIR        only senders make an odd groups_gen even, joins do not: the
 *                         next creation then runs with groups_gen even
 *   STALE_W, NO_GEN_REPAIR, J2_AS_SPEC, UNLOCK_PLACE_FIRST   the spec as written
 *
 * Steps.  A step is one atomic action; the model joins into one step only actions
 * whose intermediate states nobody else can tell apart or act on:
 *   - C1 and C2 are one read (W == next_g: nothing to claim); C3, C4 and C5 one step
 *     (a live claimer holding lock_g with no hold yet looks to the others as before
 *     C3; a death there leaves lock_g with hold_start 0, which C4 finding nothing
 *     also leaves); C5 stores hold_end, then hold_start: nobody reads hold_end while
 *     hold_start is 0.  C6, C7, the copy and T are steps of their own.
 *   - Testing a place's lock and taking it (L, D, J2) is one step, and so is what
 *     follows under that lock until a store others read: under the lock of a dead
 *     claimer's place named by lock_g, nobody else writes lock_g, next_g or its hold.
 *   - The sender reads groups_gen and every group's next_g in one step, the holds of
 *     all places in a second, groups_gen again in a third (a hold never moves to
 *     another place; a hold_start only grows, or goes to 0 and comes back at a next_g
 *     not below the one read first: one read per place gives no larger bound).  J1
 *     computes S and stores next_g in one step (the entry is not in use yet).
 * A wait is a blocking guard on what it waits for; the sender's wait for room uses
 * the true bound as its guard, then reads the bound as the protocol does.
 *
 * Not modelled: group removal (R), clean close (X), the floor F (group 0 is never
 * removed); epochs (without removal a tag never goes stale); names and members_g;
 * several senders; waiting words and wake-ups; the sender's crash; memory ordering
 * (interleavings of a sequentially consistent memory: acquire/release is argued, not
 * checked).  Messages are taken one at a time.  J2 takes any free place it may take,
 * nondeterministically (the spec's order of preference picks one of these runs).
 */

#ifndef M
#define M 3             /* messages the sender publishes */
#endif
#ifndef CAP
#define CAP 2           /* ring capacity */
#endif
#ifndef WANT
#define WANT 2          /* most messages one claim takes */
#endif
#ifndef MAXCRASH
#define MAXCRASH 2      /* crashes in one run */
#endif
#ifndef KILLABLE
#define KILLABLE 7      /* bit m set: member m may crash */
#endif

#define NG 2            /* groups */
#define NPL 3           /* member places (max_receivers) */
#define NMEM 3          /* member processes */
#define NONE NG         /* the tag of a place of no group */
#define INF 255
#define SND (NMEM + 1)  /* the sender, as a holder of the groups lock */
#define GRP(mm) ((mm) < 2 -> 0 : 1)
#define MIN(a, b) ((a) < (b) -> (a) : (b))
#define BIT(i) (1 << (i))
#define NEED(gg) ((BIT(M) - 1) & ~(BIT(gstart[gg]) - 1))   /* what group gg must take */

byte W;                 /* write_cursor: messages published */
byte slot[CAP];         /* payload: message + 1 */
byte gen;               /* groups_gen */
byte glk;               /* groups lock */
byte nxt[NG];           /* next_g */
byte lk[NG];            /* lock_g */
bool inuse[NG];         /* flags_g */
byte owner[NPL];        /* place lock */
byte tag[NPL];
byte hs[NPL];           /* hold_start */
byte he[NPL];           /* hold_end */
bool live[NMEM];        /* member process alive */

/* ghosts */
byte crashes;
byte taken[NG];         /* bit x: group g took message x */
byte allow[NG * M];     /* second takes of (g, x) allowed by deaths */
byte pend[NMEM];        /* x + 1: member m copied message x, its T not done */
byte gstart[NG];        /* the first message group g needs */
bool fin[NMEM];         /* member m finished (alive, takes no more) */

#define HELD(q, gg) (tag[q] == (gg) && hs[q] != 0)
/* (ghost) group gg has everything: all claimed, no claim under way, no hold left */
#define STOP(gg) (W == M && inuse[gg] && nxt[gg] == M && lk[gg] == 0 && \
                  !HELD(0, gg) && !HELD(1, gg) && !HELD(2, gg))

/* the true bound is at least t: the sender's wait for room */
#define HOK(q, t) (hs[q] == 0 || tag[q] == NONE || !inuse[tag[q]] || hs[q] - 1 >= (t))
#define GOK(t) ((!inuse[0] || nxt[0] >= (t)) && (!inuse[1] || nxt[1] >= (t)) && \
                HOK(0, t) && HOK(1, t) && HOK(2, t))

/* the hold of place q, if its tag names a group in `seen` (a tag changes only while
 * its place holds nothing) */
#define SEEHOLD(q) \
    if \
    :: hs[q] != 0 && tag[q] != NONE && (seen & BIT(tag[q])) -> v = MIN(v, hs[q] - 1) \
    :: else -> skip \
    fi

proctype sender()
{
    byte b, v, g1, seen;                   /* b: the bound B last read */

    do
    :: atomic { W < M && W < b + CAP ->    /* room: write message W, publish it */
            /* (c) the message overwritten was taken by every group that needs it */
            assert(W < CAP ||
                   ((!inuse[0] || W - CAP < gstart[0] || (taken[0] & BIT(W - CAP))) &&
                    (!inuse[1] || W - CAP < gstart[1] || (taken[1] & BIT(W - CAP)))));
            slot[W % CAP] = W + 1;         /* write the slot, then */
            W++                            /* store-release W */
        }
    /* no room as far as b says: read the bound B, a seqlock read */
#ifdef NO_SEQLOCK
    :: atomic { W < M && W >= b + CAP ->
#else
    :: atomic { W < M && W >= b + CAP && gen % 2 == 0 -> g1 = gen;
#endif
            v = INF; seen = 0;
            if                             /* every group in use: next_g */
            :: inuse[0] -> v = MIN(v, nxt[0]); seen = seen | BIT(0)
            :: else -> skip
            fi;
            if
            :: inuse[1] -> v = MIN(v, nxt[1]); seen = seen | BIT(1)
            :: else -> skip
            fi
        }
#ifndef SENDER_IGNORES_HOLDS
        atomic { SEEHOLD(0); SEEHOLD(1); SEEHOLD(2) }   /* every place's hold */
#endif
        if
#ifdef NO_SEQLOCK
        :: atomic { b = (seen != 0 -> v : 0); v = 0; seen = 0 }
#else
        :: atomic { gen == g1 -> b = (seen != 0 -> v : 0); v = 0; g1 = 0; seen = 0 }
        :: atomic { gen != g1 -> v = 0; g1 = 0; seen = 0 }   /* changed: read again */
#endif
        fi;
        W < b + CAP || GOK(W + 1 - CAP)    /* still full: sleep until a take frees room */
#ifndef NO_GEN_REPAIR
    /* groups_gen odd, the groups lock free: its creator died in J1 */
    :: atomic { W < M && W >= b + CAP && gen % 2 == 1 && glk == 0 -> glk = SND; gen++ }
        glk = 0
#endif
    :: W == M -> break
    od
}

/* a second take of message x by group gg uses up an allowance of a death */
#define TAKE(gg, x) \
    if \
    :: taken[gg] & BIT(x) -> assert(allow[(gg) * M + (x)] > 0); allow[(gg) * M + (x)]-- \
    :: else -> taken[gg] = taken[gg] | BIT(x) \
    fi

#ifdef NO_LOCK
#define UNLOCKG skip
#else
#define UNLOCKG lk[g] = 0
#endif

/* J2: the places a join may take */
#ifdef J2_AS_SPEC
#define J2OK(q) (tag[q] == g || tag[q] == NONE)
#else
#define J2OK(q) (hs[q] == 0 || tag[q] == g)
#endif

/* D: a place member m looks at: its lock free, holding for its group or named by
 * lock_g */
#ifdef ADOPT_WITHOUT_LOCK
#define DCAND(q) (owner[q] != m + 1 && (lk[g] == (q) + 1 && owner[q] == 0 || HELD(q, g)))
#define TAKELOCK(q) skip
#else
#define DCAND(q) (owner[q] == 0 && (lk[g] == (q) + 1 || HELD(q, g)))
#define TAKELOCK(q) owner[q] = m + 1
#endif

/* A: member m, its own hold exhausted, holds the lock of place q: it moves into q and
 * leaves its old place (tag none, unlock; the old place holds nothing) */
#define ADOPT(q) v = p; p = q; tag[v] = NONE; owner[v] = 0; v = 0

/* L releases lock_g, then the dead place's lock */
#ifdef UNLOCK_PLACE_FIRST
#define RELEASE(q) owner[q] = 0; lk[g] = 0
#else
#define RELEASE(q) lk[g] = 0; owner[q] = 0
#endif

/* L (from C3, or from D), or A (from D): member m holds the lock of place q of a dead
 * member; lock_g still naming q: L */
inline resolve(q)
{
    if
#if defined(RESOLVE_ALWAYS_ADOPT)
    :: atomic { lk[g] == q + 1 && hs[q] != 0 -> ADOPT(q) }
        lk[g] = 0
#elif defined(RESOLVE_NEVER_ADOPT)
    :: atomic { lk[g] == q + 1 && hs[q] != 0 -> hs[q] = 0 }
        RELEASE(q)
#else
    :: atomic { lk[g] == q + 1 && hs[q] != 0 && nxt[g] == he[q] -> ADOPT(q) }
        lk[g] = 0                          /* C6 done: the claim stands, adopted */
    :: atomic { lk[g] == q + 1 && hs[q] != 0 && nxt[g] != he[q] -> hs[q] = 0 }
        RELEASE(q)                         /* C6 not done: nothing was handed out */
#endif
    :: atomic { lk[g] == q + 1 && hs[q] == 0 } ->
        RELEASE(q)                         /* C5 not done: nothing */
    :: atomic { lk[g] != q + 1 && HELD(q, g) -> ADOPT(q) }    /* A */
    :: atomic { lk[g] != q + 1 && !HELD(q, g) -> owner[q] = 0 }
    fi
}

/* J2, J3 on place q: take its lock; if the lock_g of its group names it, resolve as L
 * (the joiner stays: a claim that stands is its hold); tag it; release the groups
 * lock */
#ifdef J2_NO_RESOLVE
#define J2L(q) skip
#else
#define J2L(q) \
    if \
    :: tag[q] == g && lk[g] == (q) + 1 -> \
        if \
        :: hs[q] != 0 && nxt[g] != he[q] -> hs[q] = 0 \
        :: else -> skip \
        fi; \
        lk[g] = 0 \
    :: tag[q] != g && tag[q] != NONE && lk[tag[q]] == (q) + 1 -> \
        lk[tag[q]] = 0 \
    :: else -> skip \
    fi
#endif
#define J2(q) \
    :: atomic { owner[q] == 0 && J2OK(q) -> \
                owner[q] = m + 1; p = q; J2L(q); tag[q] = g; glk = 0 }

/* nothing to claim, the hold exhausted */
#define NOTHING (hs[p] == 0 && W == nxt[g])

proctype member(byte m; byte g)
{
    byte p, n, w, k, x, q, v, seen;       /* p: the place it holds (NPL: none) */

    p = (m < 2 || inuse[1] -> m : NPL);   /* the first members' places */
start:
    {
        if
        :: p == NPL ->                     /* join */
            atomic {
                glk == 0 -> glk = m + 1    /* the groups lock */
#if !defined(NO_GEN_REPAIR) && !defined(NO_JOIN_REPAIR)
                ;
                if
                :: gen % 2 == 1 -> gen++   /* its last holder died in J1 */
                :: else -> skip
                fi
#endif
            }
            if                             /* J1 */
            :: inuse[g] -> skip
            :: atomic { !inuse[g] -> gen++ }                   /* odd */
                atomic {
                    /* S: min over the groups in use of next_g and their holds */
                    v = INF;
                    if
                    :: inuse[0] -> v = MIN(v, nxt[0])
                    :: else -> skip
                    fi;
                    if
                    :: inuse[1] -> v = MIN(v, nxt[1])
                    :: else -> skip
                    fi;
                    seen = (inuse[0] -> BIT(0) : 0) | (inuse[1] -> BIT(1) : 0);
                    SEEHOLD(0); SEEHOLD(1); SEEHOLD(2);
                    nxt[g] = (seen != 0 -> v : 0);     /* S, or F (0) with no group */
                    lk[g] = 0;
                    gstart[g] = nxt[g];
                    v = 0; seen = 0
                }
                inuse[g] = true;
                gen++                                          /* even */
            fi;
            if                             /* J2, J3 */
            J2(0)
            J2(1)
            J2(2)
            fi
        :: else -> skip
        fi;

        do
#ifdef TAKE_BEFORE_COPY
        :: atomic { hs[p] != 0 -> x = hs[p] - 1; hs[p] = (x + 1 < he[p] -> x + 2 : 0) }
            atomic { assert(slot[x % CAP] == x + 1); TAKE(g, x); x = 0 }
#else
        :: atomic { hs[p] != 0 ->          /* copy out the first message of the hold */
                x = hs[p] - 1;
                assert(x < M && x >= gstart[g] && slot[x % CAP] == x + 1);
                TAKE(g, x);
                pend[m] = x + 1
            }
            atomic { hs[p] = (x + 1 < he[p] -> x + 2 : 0); pend[m] = 0; x = 0 }   /* T */
#endif
        :: atomic { NOTHING && STOP(g) } -> break     /* (ghost) the group has it all */
#ifndef NO_DETECT
        /* D: nothing to claim; a place whose lock is free, holding for the group or
         * named by lock_g: take its lock (any such place); with none, the member
         * sleeps here until W moves or one appears */
        :: atomic { NOTHING && p != 0 && DCAND(0) -> TAKELOCK(0); q = 0 } -> resolve(q); q = 0
        :: atomic { NOTHING && p != 1 && DCAND(1) -> TAKELOCK(1); q = 1 } -> resolve(q); q = 0
        :: atomic { NOTHING && p != 2 && DCAND(2) -> TAKELOCK(2); q = 2 } -> resolve(q); q = 0
#endif
        /* C1, C2: something to claim */
#ifdef STALE_W
        :: atomic { hs[p] == 0 && W != nxt[g] -> w = W } ->
#else
        :: atomic { hs[p] == 0 && W != nxt[g] } ->
#endif
            if
#ifdef NO_LOCK
            :: atomic { true ->
#else
            :: atomic { lk[g] == 0 -> lk[g] = p + 1;           /* C3 */
#endif
#ifdef STALE_W
                    n = nxt[g]; k = (w >= n -> MIN(w - n, WANT) : WANT); w = 0;   /* C4 */
#else
                    n = nxt[g]; k = MIN(W - n, WANT);                             /* C4 */
#endif
#ifdef NEXT_BEFORE_HOLD
                    if
                    :: k != 0 -> nxt[g] = n + k                /* C6 */
                    :: else -> skip
                    fi
                }
                if
                :: atomic { k != 0 -> he[p] = n + k; hs[p] = n + 1; n = 0; k = 0 }   /* C5 */
                :: else -> skip
                fi;
                UNLOCKG                                        /* C7 */
#else
                    if
                    :: k != 0 -> he[p] = n + k; hs[p] = n + 1  /* C5 */
                    :: else -> skip
                    fi;
                    n = 0; k = 0
                }
                if
                :: atomic { hs[p] != 0 -> nxt[g] = he[p] }     /* C6 */
                    UNLOCKG                                    /* C7 */
                :: atomic { hs[p] == 0 -> UNLOCKG }            /* C4: nothing after all */
                fi
#endif
#ifndef NO_LOCK
            /* C3 failed: spin while lock_g is held; its holder's place lock free (dead):
             * take that lock, L */
            :: atomic { lk[g] != 0 && owner[lk[g] - 1] == 0 ->
                        q = lk[g] - 1; owner[q] = m + 1; w = 0 } ->
                resolve(q);
                q = 0
#endif
            fi
        od;
        atomic {
            /* (a) the group took every message it needs */
            assert((taken[g] & NEED(g)) == NEED(g));
            fin[m] = true
        }
        goto end
    } unless {
        atomic { !live[m] -> p = NPL; n = 0; w = 0; k = 0; x = 0; q = 0; v = 0; seen = 0 }
    };
    /* dead: a new member of the same group joins; or, another member of the group
     * alive, perhaps none */
    if
    :: atomic { m < 2 && live[1 - m] } -> goto end
    :: live[m] = true; goto start
    fi;
end:
    skip
}

/* The death of member mm: the kernel drops its locks; a copy without its T allows a
 * second take. */
#define KILL(mm) \
    :: atomic { (KILLABLE & BIT(mm)) && crashes < MAXCRASH && live[mm] && !fin[mm] -> \
                live[mm] = false; crashes++; \
                if :: owner[0] == mm + 1 -> owner[0] = 0 :: else fi; \
                if :: owner[1] == mm + 1 -> owner[1] = 0 :: else fi; \
                if :: owner[2] == mm + 1 -> owner[2] = 0 :: else fi; \
                if :: glk == mm + 1 -> glk = 0 :: else fi; \
                if :: pend[mm] != 0 -> allow[GRP(mm) * M + pend[mm] - 1]++; pend[mm] = 0 \
                   :: else fi }

proctype killer()
{
end:
    do
    KILL(0)
    KILL(1)
    KILL(2)
    od
}

init
{
    atomic {
        tag[0] = 0; owner[0] = 1;
        tag[1] = 0; owner[1] = 2;
        inuse[0] = true;
#ifdef NOCREATE
        tag[2] = 1; owner[2] = 3;
        inuse[1] = true;
#else
        tag[2] = NONE;
#endif
        live[0] = true; live[1] = true; live[2] = true;
        run killer();                      /* first: a process ends only after */
        run sender();                      /* those created after it have */
        run member(0, 0);
        run member(1, 0);
        run member(2, 1)
    };
    (_nr_pr == 2);                         /* all but the killer have ended */
    assert(inuse[1] && (taken[0] & NEED(0)) == NEED(0) && (taken[1] & NEED(1)) == NEED(1))
}
