/*
 * lifecycle.pml -- the lifecycle of receiver groups around the messages: joins (J1-J3),
 * clean closes (X1-X4), removals (R1-R4: remove_group, the last close of a non-durable
 * group, a sender releasing a dead non-durable group), an entry reused by a new group
 * with a new epoch; with a crash of any member or of the administrator at every step.
 *
 * Step labels are those of docs/protocol.md, section "Receiver groups".
 *
 * Shared memory                          model
 *   header write_cursor W                 W
 *   slot payload                          slot[s]       (c + 1 while message c is in it)
 *   header read_cursor (the floor F)      flr
 *   "every group has left" (LEFTB_FLOOR) allgone    (set by R2: no group was left in use)
 *   header groups_gen (seqlock)           gen
 *   header sender_waiting                 sw
 *   groups lock (OFD lock byte)           glk           (holder + 1, 0 free)
 *   group entry e: group_next             nxt[e]
 *                  group_epoch            ep[e]
 *                  group_flags            inuse[e], dur[e]
 *                  group_name             nm[e]
 *   member place q: OFD lock byte         owner[q]      (process + 1, 0 free)
 *                   place_group (tag)     tag[q]        (TAG(e) = epoch * 4 + e + 1, 0 none)
 *                   hold_start, hold_end  hs[q], he[q]
 *
 * Processes: one sender publishing M messages into a ring of CAP slots; two member
 * processes (member 0 always joins group "a"; member 1 joins "a" or "b", chosen at each
 * join); an administrator that calls remove_group() once (ADMIN: 0 never, 1 on "a",
 * 2 on "a" or "b"); a killer; a watchdog.  Two group entries and two member places (max_receivers = 2).  No group
 * exists at the start.  A member joins (creating its group if it is not in use), takes
 * messages, and at any point between two calls either closes (X) or goes on; a member
 * process that closed or died may join again (up to LIVES joins in all).  Groups are
 * non-durable; -DBDUR makes "b" durable.
 *
 * The sender's calls (SKIND: 1 a blocking plain send, 2 try_send or send(timeout=0)
 * called again and again, 3 a cywhip.asyncio send; 0, the default: any of the three,
 * chosen once per run):
 *   blocking   on a full ring: releases dead non-durable groups (R), then sleeps in
 *              slices; after each slice it looks again.
 *   polling    each call looks, and (fixed F3) releases dead non-durable groups.
 *   asyncio    announces its sleep (sender_waiting = 1), looks, (fixed F3) releases,
 *              then sleeps until a waker clears sender_waiting, or (fixed) until a slice
 *              ends.
 * A sleep in slices is a blocking guard on "a look now would change something" (LOOK):
 * a look that finds nothing changes nothing, so the slices in between are not states
 * of their own.  A sleep without slices is a guard on sender_waiting == 0 alone: a
 * lost wake-up leaves the sender asleep for ever.  The wakers: a member after its T,
 * a creator after J1 (and a join repairing an odd groups_gen), R4.
 *
 * The fixed steps (docs/protocol.md), and the old ones of a54aea3 as mutants, one per
 * defect they had (each must fail):
 *   OLD_LEAVE      F1: X3 acts on whatever group now uses the entry, and R1 does not
 *                  check the entry's tag: a closer whose group was removed meanwhile
 *                  removes the group that reused its entry (fixed: X3 and R1 act only if
 *                  the entry still carries the closer's tag).
 *   OLD_RELEASE    F3: only a blocking send releases a dead non-durable group; try_send
 *                  and the asyncio sender never do (fixed: every call that finds the
 *                  ring full).
 *   OLD_ASYNC_GEN  F6: an asyncio sender that could not compute its bound (groups_gen
 *                  odd, the groups lock held by a live creator) sleeps without a slice,
 *                  and no sender repairs an odd groups_gen (fixed: it sleeps in slices,
 *                  and repairs groups_gen itself when the groups lock is free).
 *   OLD_FLOOR      F9: once the last group is removed, the senders' bound is the floor
 *                  (where that group had got to): they stop CAP messages later (fixed:
 *                  once every group has left, a sender moves the floor up, F below).
 *   OLD            all four, and ASYNC_UNSLICED: the steps of a54aea3.
 * Mutants of the fixed steps (each must fail: what the fixes must not leave out):
 *   FM_NO_STORE    F9 with a sender that, every group gone, takes max(F, W) as its bound
 *                  without moving the floor: a group that joins starts at the old floor,
 *                  behind what the sender goes on writing.
 *   FM_NO_G2       a sender that moved the floor takes the bound without reloading
 *                  groups_gen: a creator that made groups_gen odd, read the floor and made
 *                  its group between the sender's look at the entries and its CAS.
 *   FM_G2_BEFORE_CAS  the sender reloads groups_gen before its CAS: a creator that makes
 *                  groups_gen odd and reads the floor between the reload and the CAS
 *                  starts behind the moved floor.
 *   FM_FLOOR_FIRST the creator reads the floor before it makes groups_gen odd: a sender
 *                  then moves the floor, reloads groups_gen unchanged, and writes over the
 *                  new group's start.
 * Mutants of LEFTB_FLOOR, the other scheme of F9 (each must fail):
 *   START_OLDEST   F9 with a group that joins after every group left starting at "the
 *                  oldest message still in the ring", W - CAP: the sender may be writing
 *                  message W over it at that moment, having looked before the join.
 *   START_NO_FLOOR F9 with that group starting at W + 1 - CAP, without the floor: a
 *                  sender that read its bound from the last group's position before R3
 *                  may still write up to CAP messages past that position, over the new
 *                  group's first messages.
 *   LEFT_ROOM_CAP  F9 with a sender that, every group gone, takes the whole ring as
 *                  free (bound W): it writes CAP messages without looking again, over the
 *                  messages a group that joins meanwhile starts at.
 *   ASYNC_UNSLICED the asyncio sender sleeps without slices (as at a54aea3);
 *   ASYNC_SLICE_NOB  or in slices only when its bound could not be computed (F6 fixed
 *                  alone): the death of a live member that holds it back, or of a closer
 *                  between R2 and R3, wakes nobody, and nobody releases the group.
 * Variants that must pass (LEFTB_FLOOR on the ring of 2 by default, the rest check.sh --full):
 *   LEFTB_FLOOR    F9 without moving the floor: every group gone, the bound is
 *                  LEFTB = max(F, W + 1 - CAP), recomputed at each look, and a group that
 *                  joins starts at LEFTB (below).
 *   R_NO_CHECK     only X3 checks the tag; X_NO_CHECK  only R1 checks it: either alone
 *                  is enough for F1.
 *   LEFT_NEWEST    F9 with LEFTB_FLOOR's steps the other way: every group gone, a sender
 *                  takes the ring as free (bound max(F, W), the floor not moved) and a
 *                  group that joins starts at max(F, W): it
 *                  keeps no older message, and senders look once per ring, not per message.
 *
 * The senders' bound with no group in use, and a new group's start with none (J1), as the
 * product does it (the default, FLOOR_MOVES; cywhip/_ring.pyx ring_groups_floor and
 * _groups_left_floor, cywhip/_region.pyx _find_group):
 *   no group was ever created (every entry's epoch 0): the floor F (0 on a new channel),
 *   not moved: the senders wait for the first group;
 *   groups have been (an epoch is not 0): F, the sender's step inside the sequence lock of
 *   its bound: load groups_gen (g1); look at the entries: none in use, load the floor;
 *   load the epochs and W and move the floor up to W by compare-and-swap (unless it is
 *   there already); the bound is the floor so moved; reload groups_gen (g2), read again if
 *   it changed.  The sender then writes up to W + CAP - 1 without looking again.  A group
 *   that joins starts at the floor as its creator reads it after making groups_gen odd
 *   (no W term): a move before that read is in the floor it reads, a move after it is
 *   followed by the mover's reload of groups_gen, which then differs.  R2 sets the floor
 *   to the last group's position, as before.
 * The other scheme (LEFTB_FLOOR), which must pass too:
 *   no group was ever created (allgone clear): the floor F (0 on a new channel);
 *   every group has left (allgone set by R2): LEFTB = max(F, W + 1 - CAP).  A sender
 *   then writes one message per look (the slot of message W - CAP, which no group that
 *   joins after its look starts at), and a group that joins starts at LEFTB: past every
 *   bound a sender may still hold (one read from the last group, at most F; one read
 *   with every group gone, at most its own W + 1 - CAP).

 * Properties:
 *   (a) a member copies only the message it claimed: its slot holds it (not overwritten),
 *       and a claim finds at most CAP messages published past the group's claim cursor;
 *       a bound the sender reads is never more than CAP behind W (the product would take
 *       the cursors for corrupt);
 *   (b) a live member's group is never removed: at every copy the member's entry is in
 *       use with the member's tag, and R3 asserts that no live member (not closing) has
 *       the tag of the group it removes;
 *   (c) the sender never overwrites a message a group in use still needs (at every slot
 *       write), a message is taken at most once per group (no crash between a copy and
 *       its T in this model: the two are one step), and every group in use at the end,
 *       or removed, took every message from its start to its position;
 *   (d) nobody waits for nothing: when no process can move (the watchdog's `timeout`),
 *       the sender has published everything or may wait by the semantics (a durable
 *       group in use holds it back, or no group was ever created on the channel), and
 *       every live member has finished or waits for messages the sender may hold back;
 *       a process blocked anywhere but its waits is an invalid end state; the -DNP run
 *       (no progress labels) finds no cycle at all.
 *
 * Steps.  A step is one atomic action; the model joins into one step only actions whose
 * intermediate states nobody else can tell apart or act on:
 *   - A claim (C1-C7) and a copy with its T are one step each: their interleavings and
 *     a death inside them are groups.pml's; here a member claims 1 or 2 messages (any
 *     size, as the members hint allows) and takes them one at a time.
 *   - J1's search of the entries and its first increment of groups_gen are one step (the
 *     search reads what only the groups lock's holder writes); the start S (its loads
 *     come after that increment), the stores of next, epoch, name and durability and the
 *     flags are one step (nobody reads an entry before its flags); the second increment
 *     and the wake are one.  J2, J3 and the release of the groups lock are one step.  A
 *     join that finds groups_gen odd makes it even and wakes the senders in the step that
 *     takes the groups lock.  A member's T and its load of sender_waiting are one step,
 *     its wake (the exchange) another.
 *   - R1 and R2 are one step; the clearing of the places, R3 and R4 one.  X4 releases
 *     the groups lock and the place's lock in one step.
 *   - The sender's bound is a seqlock read (claims are one step, so next and the holds are
 *     one read).  FLOOR_MOVES: four steps: the load of groups_gen (g1); the look at the
 *     entries (the positions, or none in use and the floor); F: the load of the epochs and
 *     of W and the compare-and-swap loop of the floor (one step: the product's loop retries
 *     until the floor is at W or past it; whatever else moves the floor in between, R2 of a
 *     group the look did not see, was created after the look and changed groups_gen); the
 *     reload of groups_gen (g2).  So a creator can make groups_gen odd and read the floor between the sender's
 *     look and its CAS, and between its CAS and its reload.  The epochs are loaded with the
 *     CAS, not with the look: between the two they change only by a creation, which changes
 *     groups_gen too.  LEFTB_FLOOR and OLD_FLOOR: two steps: groups_gen and every
 *     position (or the bound with none in use), then groups_gen again.
 *   - A sender's release (R) tests the entries and takes the groups lock in one step,
 *     then rechecks the entry's flags and tag under the lock (R1).
 *
 * Not modelled: several senders (the bound of many senders, from the claim cursor, is
 * argued the same way; the floor moved by many senders, to the claim cursor or the oldest
 * live claim, likewise); durability mismatches and a full table of entries (errors at
 * J1); the members hint; the claim lock and deaths inside a claim (groups.pml); a death
 * between a copy and its T; a close that gives up on the groups lock after 5 s (to the
 * others, a closer that died after X1); the sender's crash; remove_stale; epochs
 * wrapping around; memory ordering (sequentially consistent interleavings).
 */

#ifndef M
#define M 3             /* messages the sender publishes */
#endif
#ifndef CAP
#define CAP 2           /* ring capacity */
#endif
#ifndef MAXCRASH
#define MAXCRASH 1      /* crashes in one run */
#endif
#ifndef KILLABLE
#define KILLABLE 7      /* bit i: process i may crash (0, 1: members; 2: the administrator) */
#endif
#ifndef LIVES
#define LIVES 1         /* joins of one member process */
#endif
#ifndef ADMIN
#define ADMIN 1         /* the administrator removes: 0 nothing (it does not run), 1 "a", 2 "a" or "b" */
#endif
#ifndef SKIND
#define SKIND 0         /* the sender's calls: 0 any, 1 blocking, 2 polling, 3 asyncio */
#endif

#ifdef OLD
#define OLD_LEAVE
#define OLD_RELEASE
#define OLD_ASYNC_GEN
#define OLD_FLOOR
#define ASYNC_UNSLICED
#endif

/* F9: the floor moved by the senders (FLOOR_MOVES, the product's steps), unless the old
 * steps (OLD_FLOOR) or the other scheme, a bound recomputed at each look (LEFTB_FLOOR, and
 * its variants and mutants), are chosen */
#if defined(LEFT_NEWEST) || defined(LEFT_ROOM_CAP) || defined(START_OLDEST) || defined(START_NO_FLOOR)
#ifndef LEFTB_FLOOR
#define LEFTB_FLOOR
#endif
#endif
#if !defined(LEFTB_FLOOR) && !defined(OLD_FLOOR) && !defined(FLOOR_MOVES)
#define FLOOR_MOVES
#endif
#if defined(FLOOR_MOVES) && (defined(LEFTB_FLOOR) || defined(OLD_FLOOR))
#error "FLOOR_MOVES excludes LEFTB_FLOOR and OLD_FLOOR"
#endif

#define NE 2            /* group entries */
#define NPL 2           /* member places */
#define NMEM 2          /* member processes */
#define ADM (NMEM + 1)  /* the administrator, as a holder of the groups lock */
#define SND (NMEM + 2)  /* the sender, as a holder of the groups lock */
#define INF 255
#define MIN(a, b) ((a) < (b) -> (a) : (b))
#define BIT(i) (1 << (i))

#define BLOCK 1
#define POLL 2
#define ASYNC 3

byte W;                 /* write_cursor */
byte slot[CAP];
byte flr;               /* the floor (read_cursor) */
bool allgone;              /* (fixed F9) every group has left: R2 removed the last one */
byte gen;               /* groups_gen */
byte glk;               /* groups lock */
bit sw;                 /* sender_waiting */
bool inuse[NE];
bool dur[NE];
byte nm[NE];
byte ep[NE];
byte nxt[NE];
byte owner[NPL];
byte tag[NPL];
byte hs[NPL];
byte he[NPL];
bool live[NMEM + 1];    /* process alive (members, the administrator) */

/* ghosts */
byte crashes;
byte taken[NE];         /* bit x: the group in entry e took message x */
byte gstart[NE];        /* the first message it needs */
bool everg;             /* a group was created (its flags stored) */
byte mt[NMEM];          /* the tag member m is a live member of (not closing), 0 none */
bool act[NMEM];         /* member m is in its run of calls */
bool fin[NMEM];         /* member m finished: its group has every message */
/* what failed, for the reports: set just before the assertion that tests it */
bool removes_a_live_group, lost_messages, overwrites_a_needed_message, claims_past_the_ring;
bool group_removed_under_a_live_member, sender_waits_for_nothing, member_waits_for_nothing;
bool bound_behind_the_ring;
bool inlife[NMEM + 1];  /* process m between the start of a join (of remove_group) and its end */

#define TAG(e) (ep[e] * 4 + (e) + 1)
#define HOLDAT(q, t) ((hs[q] != 0 && tag[q] == (t)) -> hs[q] - 1 : INF)
/* a group's position: its claim cursor, or an older claim still held by a place of its tag */
#define POS(e, t) MIN(nxt[e], MIN(HOLDAT(0, t), HOLDAT(1, t)))
#define TPOS(e) (inuse[e] -> POS(e, TAG(e)) : INF)
#define ANY (inuse[0] || inuse[1])
/* the senders' bound with no group in use */
#define MAX(a, b) ((a) > (b) -> (a) : (b))
/* every group gone: the floor, or the oldest message whose slot the sender's next write
 * does not take, whichever is later */
#define LEFTB MAX(flr, W + 1 - CAP)
#if defined(OLD_FLOOR)
#define NOGROUP flr
#elif defined(FLOOR_MOVES)
/* groups have been (an entry's epoch is not 0): a look moves the floor up to W */
#define NOGROUP ((ep[0] != 0 || ep[1] != 0) -> MAX(flr, W) : flr)
#elif defined(LEFT_NEWEST)
#define NOGROUP (allgone -> MAX(flr, W) : flr)
#elif defined(LEFT_ROOM_CAP)
#define NOGROUP (allgone -> MAX(flr, W) : flr)
#else
#define NOGROUP (allgone -> LEFTB : flr)
#endif
/* the bound as the sender would read it now */
#define TRUEB (ANY -> MIN(TPOS(0), TPOS(1)) : NOGROUP)
#define ROOM (W < TRUEB + CAP)
/* a place of tag t, other than own, held by a live process */
#define LIVEAT(q, t, own) ((q) != (own) && tag[q] == (t) && owner[q] != 0)
#define LIVEPL(t, own) (LIVEAT(0, t, own) || LIVEAT(1, t, own))
/* a non-durable group in use, with no live member, that holds the sender back at b */
#define CAND(e, b) (inuse[e] && !dur[e] && TPOS(e) == (b) && !LIVEPL(TAG(e), NPL))

#ifdef BDUR
#define DURABLE(g) ((g) == 1)
#else
#define DURABLE(g) false
#endif

#define WAKE if :: sw == 1 -> sw = 0 :: else -> skip fi

/* R1-R4 (group_remove) on entry e for tag t, under the groups lock, by a closer on place
 * own (NPL: none).  ok: whether it removed.  R1 tests the place locks of the places of
 * the tag (the closer's own place aside); R2: no other group in use, the floor becomes
 * its position (and, fixed F9, every group has left); then its places are cleared and
 * its flags (R3); R4 wakes the senders. */
#ifdef R_NO_CHECK
#define RTAGOK(e, t) true
#elif defined(OLD_LEAVE)
#define RTAGOK(e, t) true
#else
#define RTAGOK(e, t) (inuse[e] && TAG(e) == (t))
#endif
#if defined(OLD_FLOOR) || defined(FLOOR_MOVES)
#define SETLEFT skip
#else
#define SETLEFT allgone = true
#endif
#define NEEDED(e, pos) ((BIT(pos) - 1) & ~(BIT(gstart[e]) - 1) & (BIT(M) - 1))
#define CLEARPL(q, t, own) \
    if \
    :: (q) == (own) || (tag[q] == (t) && owner[q] == 0) -> hs[q] = 0; tag[q] = 0 \
    :: else -> skip \
    fi

inline group_remove(e, t, own, ok)
{
    atomic {
        ok = false;
        if
        :: RTAGOK(e, t) && !LIVEPL(t, own) ->                          /* R1 */
            if
            :: !inuse[1 - e] -> flr = POS(e, t); SETLEFT               /* R2 */
            :: else -> skip
            fi;
            ok = true
        :: else -> skip
        fi
    }
    if
    :: ok ->
        atomic {
            /* (b) no live member of the group it removes */
            removes_a_live_group = (live[0] && mt[0] == TAG(e)) || (live[1] && mt[1] == TAG(e));
            assert(!removes_a_live_group);
            /* (c) the group took every message up to its position */
            lost_messages = inuse[e] && TAG(e) == t &&
                            (taken[e] & NEEDED(e, POS(e, t))) != NEEDED(e, POS(e, t));
            assert(!lost_messages);
            CLEARPL(0, t, own); CLEARPL(1, t, own);
            inuse[e] = false;                                          /* R3 */
            nm[e] = 0; dur[e] = false; taken[e] = 0; gstart[e] = 0;    /* (unread) */
            WAKE                                                       /* R4 */
        }
    :: else -> skip
    fi
}

/* the sender's look would change something: room (a bound it can read: groups_gen even,
 * or odd with its creator dead), a dead non-durable group to release (with REL), or
 * (fixed F6) an odd groups_gen to repair */
#define CANREAD (gen % 2 == 0 || glk == 0)
#define REMOVABLE (glk == 0 && !ROOM && (CAND(0, TRUEB) || CAND(1, TRUEB)))
#ifdef OLD_ASYNC_GEN
#define REPAIRABLE false
#else
#define REPAIRABLE (gen % 2 == 1 && glk == 0)
#endif
#define LOOK(rel) ((CANREAD && ROOM) || ((rel) && CANREAD && REMOVABLE) || REPAIRABLE)

proctype sender()
{
    byte b, v, g1, kind, e, t;
    bool nob, armed, rel, ok, mv, mvd;

    if
    :: SKIND == 0 || SKIND == BLOCK -> kind = BLOCK
    :: SKIND == 0 || SKIND == POLL -> kind = POLL
    :: SKIND == 0 || SKIND == ASYNC -> kind = ASYNC
    fi;
#ifdef OLD_RELEASE
    rel = (kind == BLOCK);
#else
    rel = true;
#endif
end_send:
    do
    :: atomic { W < M && W < b + CAP ->      /* room: write message W, publish it */
            /* (c) the message overwritten was taken by every group in use that needs it */
            overwrites_a_needed_message = W >= CAP &&
                (inuse[0] && W - CAP >= gstart[0] && !(taken[0] & BIT(W - CAP)) ||
                 inuse[1] && W - CAP >= gstart[1] && !(taken[1] & BIT(W - CAP)));
            assert(!overwrites_a_needed_message);
            slot[W % CAP] = W + 1;
            W++
        }
    :: W == M -> break
    :: atomic { W < M && W >= b + CAP && kind == ASYNC && !armed -> sw = 1; armed = true }
    :: W < M && W >= b + CAP && (kind != ASYNC || armed) ->
        /* the bound: a seqlock read */
        if
#ifdef FLOOR_MOVES
#ifdef FM_NO_G2
#define FM_G2SKIP mvd       /* a sender that moved the floor does not reload groups_gen */
#else
#define FM_G2SKIP false
#endif
        :: atomic { CANREAD && !REPAIRABLE -> g1 = gen; nob = false }   /* g1 */
            atomic {                                                    /* the entries */
                if
                :: ANY -> v = MIN(TPOS(0), TPOS(1))
                :: else -> v = flr; mv = true        /* none in use: the floor (m) */
                fi
            }
#ifdef FM_G2_BEFORE_CAS
            if
            :: atomic { gen == g1 -> skip }          /* g2, before the move */
            :: atomic { gen != g1 -> v = 0; g1 = 0; mv = false } -> goto again
            fi;
#endif
            if
            :: mv ->
                atomic {                             /* F: the epochs, W; CAS of the floor */
#ifndef FM_NO_STORE
                    if
                    :: (ep[0] != 0 || ep[1] != 0) && W > v && W - v <= CAP ->
                        if
                        :: flr >= W -> v = flr       /* moved as far by another */
                        :: else -> flr = W; v = W; mvd = true
                        fi
                    :: else -> skip                  /* no group ever made, nothing to move, or
                                                        cursors the caller finds impossible */
                    fi;
#else
                    if
                    :: (ep[0] != 0 || ep[1] != 0) && W > v -> v = MAX(flr, W)
                    :: else -> skip
                    fi;
#endif
                    mv = false
                }
            :: else -> skip
            fi;
#ifdef FM_G2_BEFORE_CAS
            atomic { bound_behind_the_ring = (W > v + CAP); assert(!bound_behind_the_ring);
                     b = v; v = 0; g1 = 0; mvd = false }
#else
            if
            :: atomic { gen == g1 || FM_G2SKIP ->    /* g2 */
                    bound_behind_the_ring = (W > v + CAP);   /* the product's corrupt check */
                    assert(!bound_behind_the_ring);
                    b = v; v = 0; g1 = 0; mvd = false }
            :: atomic { gen != g1 && !FM_G2SKIP -> v = 0; g1 = 0; mvd = false } -> goto again
            fi
#endif
#else
        :: atomic { CANREAD && !REPAIRABLE -> g1 = gen; v = TRUEB; nob = false }
            if
            :: atomic { gen == g1 ->
                    bound_behind_the_ring = (W > v + CAP);
                    assert(!bound_behind_the_ring);
                    b = v; v = 0; g1 = 0 }
            :: atomic { gen != g1 -> v = 0; g1 = 0 } -> goto again   /* changed: read again */
            fi
#endif
        :: atomic { gen % 2 == 1 && glk != 0 -> nob = true }          /* a live creator at work */
#ifndef OLD_ASYNC_GEN
        :: atomic { REPAIRABLE -> gen++ } -> goto again               /* its creator died */
#endif
        fi;
        if
        :: W < b + CAP && !nob ->               /* room */
            atomic { if :: armed -> sw = 0; armed = false :: else -> skip fi }
            goto again
        :: else -> skip
        fi;
        /* full: release a dead non-durable group holding it back (R) */
        if
        :: atomic { rel && glk == 0 && (CAND(0, b) || CAND(1, b)) -> glk = SND;
                    if :: CAND(0, b) -> e = 0 :: CAND(1, b) -> e = 1 fi; t = TAG(e) }
            if
            :: atomic { inuse[e] && !dur[e] && TAG(e) == t } -> group_remove(e, t, NPL, ok)
            :: else -> skip
            fi;
            atomic { glk = 0; e = 0; t = 0; ok = false };
            goto again
        :: else -> skip
        fi;
        /* sleep (the watchdog judges a sleep that never ends) */
end_sleep:
        if
        :: atomic { kind != ASYNC && LOOK(rel) }
#if defined(ASYNC_UNSLICED)
        :: atomic { kind == ASYNC && sw == 0 -> armed = false }
#elif defined(ASYNC_SLICE_NOB)
        :: atomic { kind == ASYNC && nob && (sw == 0 || LOOK(rel)) -> sw = 0; armed = false }
        :: atomic { kind == ASYNC && !nob && sw == 0 -> armed = false }
#elif defined(OLD_ASYNC_GEN)
        :: atomic { kind == ASYNC && nob && sw == 0 -> armed = false }
        :: atomic { kind == ASYNC && !nob && (sw == 0 || LOOK(rel)) -> sw = 0; armed = false }
#else
        :: atomic { kind == ASYNC && (sw == 0 || LOOK(rel)) -> sw = 0; armed = false }
#endif
        fi;
again:  nob = false
    od
}

/* (c) a second take of a message in one group is an error here */
#define TAKE(e, x) assert(!(taken[e] & BIT(x))); taken[e] = taken[e] | BIT(x)

/* (ghost) the member's group has everything: all claimed, no claim left anywhere */
#define STOP (W == M && hs[p] == 0 && inuse[e] && TAG(e) == t && POS(e, t) == M)

/* J1: the start of a new group: the smallest position of the groups in use; with none,
 * the floor, or (fixed F9) once every group has left, the oldest message no sender may
 * still overwrite without looking again */
#if defined(LEFT_NEWEST)
#define LEFTSTART MAX(flr, W)
#elif defined(START_OLDEST)
#define LEFTSTART (W >= CAP -> W - CAP : 0)
#elif defined(START_NO_FLOOR)
#define LEFTSTART (W + 1 >= CAP -> W + 1 - CAP : 0)
#else
#define LEFTSTART LEFTB
#endif
#if defined(FM_FLOOR_FIRST)
#define START (ANY -> MIN(TPOS(0), TPOS(1)) : n)     /* n: the floor read before J1 */
#elif defined(OLD_FLOOR) || defined(FLOOR_MOVES)
#define START (ANY -> MIN(TPOS(0), TPOS(1)) : flr)
#else
#define START (ANY -> MIN(TPOS(0), TPOS(1)) : (allgone -> LEFTSTART : flr))
#endif

/* J2, J3: a free place of its own group's, one holding nothing, or one of a group gone */
#define J2OK(q) (owner[q] == 0 && (tag[q] == t || hs[q] == 0 || \
                 !((inuse[0] && tag[q] == TAG(0)) || (inuse[1] && tag[q] == TAG(1)))))
#define J2TAKE(q) \
    owner[q] = m + 1; p = q; \
    if :: tag[q] != t -> hs[q] = 0; tag[q] = t :: else -> skip fi; \
    mt[m] = t; act[m] = true; glk = 0

/* D, A: nothing to claim; a free place of the group holding a claim: move into it */
#define ADOPT(q) \
    :: atomic { hs[p] == 0 && W == nxt[e] && (q) != p && owner[q] == 0 && tag[q] == t && \
                hs[q] != 0 -> owner[q] = m + 1; tag[p] = 0; owner[p] = 0; p = q }

#ifdef X_NO_CHECK
#define XTAGOK true
#elif defined(OLD_LEAVE)
#define XTAGOK true
#else
#define XTAGOK (inuse[e] && TAG(e) == t)
#endif

proctype member(byte m)
{
    byte g, e, t, p, x, k, n, lives;
    bool create, ok, wake;

join:
    {
        if                                   /* its group's name */
        :: g = 0
        :: m == 1 -> g = 1
        fi;
        lives++;
        atomic {                             /* the groups lock; an odd groups_gen repaired */
            glk == 0 -> glk = m + 1;
            if :: gen % 2 == 1 -> gen++; WAKE :: else -> skip fi
        }
#ifdef FM_FLOOR_FIRST
        n = flr;                             /* the floor, before groups_gen is made odd */
#endif
        atomic {                             /* J1: find the group, or an entry for it */
            create = false;
            if
            :: inuse[0] && nm[0] == g -> e = 0
            :: inuse[1] && nm[1] == g -> e = 1
            :: else ->
                if
                :: !inuse[0] -> e = 0
                :: else -> e = 1             /* two entries, at most one other name */
                fi;
                create = true;
                gen++                        /* odd */
            fi
        }
        if
        :: create ->
            atomic {                         /* S; next, epoch, name; flags */
                nxt[e] = START; ep[e]++; nm[e] = g; dur[e] = DURABLE(g);
                gstart[e] = nxt[e]; taken[e] = 0;
                inuse[e] = true; everg = true
            }
#ifdef FM_FLOOR_FIRST
            n = 0;
#endif
            atomic { gen++; WAKE; create = false }   /* even; the senders woken */
        :: else -> skip
        fi;
#ifdef FM_FLOOR_FIRST
        n = 0;
#endif
        t = TAG(e);
        if                                   /* J2, J3: a claim to finish first, then in order */
        :: atomic { J2OK(0) && (tag[0] == t && hs[0] != 0 || !(J2OK(1) && tag[1] == t && hs[1] != 0)) ->
                    J2TAKE(0) }
        :: atomic { J2OK(1) && (tag[1] == t && hs[1] != 0 || !J2OK(0)) -> J2TAKE(1) }
        :: atomic { !J2OK(0) && !J2OK(1) -> glk = 0 } -> goto gone   /* no place */
        fi;

end_run:
        do
        :: atomic { hs[p] != 0 ->            /* copy out the first message of the claim, T */
                x = hs[p] - 1;
                /* (a) not overwritten; (b) its group still in use, its own */
                assert(slot[x % CAP] == x + 1);
                group_removed_under_a_live_member = !(inuse[e] && TAG(e) == t);
                assert(!group_removed_under_a_live_member);
                TAKE(e, x);
                hs[p] = (x + 1 < he[p] -> x + 2 : 0);
                x = 0;
                wake = (sw == 1)             /* the publish order, then sender_waiting */
            }
            if
            :: atomic { wake -> WAKE; wake = false }   /* the sender woken */
            :: else -> skip
            fi
        :: atomic { hs[p] == 0 && W != nxt[e] ->   /* C1-C7: claim 1 or 2 */
                n = nxt[e];
                claims_past_the_ring = !(n < W && W - n <= CAP);   /* (a) */
                assert(!claims_past_the_ring);
                if :: k = 1 :: W - n >= 2 -> k = 2 fi;
                he[p] = n + k; hs[p] = n + 1; nxt[e] = n + k;
                n = 0; k = 0
            }
        ADOPT(0)
        ADOPT(1)
        :: atomic { STOP -> fin[m] = true; inlife[m] = false } -> goto end
        :: goto close                        /* closes, between two calls */
        od;
close:
        atomic {                             /* X1 */
            act[m] = false; mt[m] = 0;
            if
            :: tag[p] != t -> goto unmap
            :: else -> skip
            fi;
            if :: hs[p] == 0 -> tag[p] = 0 :: else -> skip fi
        }
        atomic { glk == 0 -> glk = m + 1 }   /* X2: the groups lock */
        if                                   /* X3: the last live member of a non-durable group */
        :: atomic { XTAGOK && !dur[e] && !LIVEPL(t, p) } -> group_remove(e, t, p, ok)
        :: else -> skip
        fi;
        atomic { glk = 0; owner[p] = 0; ok = false; goto gone }   /* X4, unmap */
unmap:
        atomic { owner[p] = 0; ok = false }
gone:
        atomic { inlife[m] = false; e = 0; t = 0; p = 0; g = 0 }
    } unless {
        atomic { !live[m] -> act[m] = false; mt[m] = 0; inlife[m] = false;
                 e = 0; t = 0; p = 0; g = 0; x = 0; k = 0; n = 0; create = false; ok = false; wake = false }
    };
    /* closed, dead or without a place: may join again */
    if
    :: atomic { lives < LIVES -> live[m] = true; inlife[m] = true } -> goto join
    :: else -> skip
    fi;
end:
    skip
}

/* remove_group(name): once, on "a" or "b" */
proctype admin()
{
    byte g, e, t;
    bool found, ok;
    {
        if :: g = 0 :: ADMIN == 2 -> g = 1 fi;
        atomic { glk == 0 -> glk = ADM }
        atomic {
            found = true;
            if
            :: inuse[0] && nm[0] == g -> e = 0
            :: inuse[1] && nm[1] == g -> e = 1
            :: else -> found = false
            fi;
            t = TAG(e)
        }
        if
        :: found -> group_remove(e, t, NPL, ok)
        :: else -> skip
        fi;
        atomic { glk = 0; inlife[NMEM] = false; e = 0; t = 0; g = 0; found = false; ok = false }
    } unless {
        atomic { !live[NMEM] -> inlife[NMEM] = false; e = 0; t = 0; g = 0; found = false; ok = false }
    }
}

/* The death of process mm: the kernel drops its locks (places, the groups lock). */
#define KILL(mm) \
    :: atomic { (KILLABLE & BIT(mm)) && crashes < MAXCRASH && live[mm] && inlife[mm] && \
                (mm == NMEM || !fin[mm]) -> \
                live[mm] = false; crashes++; \
                if :: owner[0] == mm + 1 -> owner[0] = 0 :: else fi; \
                if :: owner[1] == mm + 1 -> owner[1] = 0 :: else fi; \
                if :: glk == mm + 1 -> glk = 0 :: else fi }

proctype killer()
{
end:
    do
    KILL(0)
    KILL(1)
    KILL(2)
    od
}

/* (d) when no process can move: the sender is done or may wait by the semantics, every
 * live member has finished or waits for such a sender; every group in use has every
 * message from its start to its position */
#define SLEGIT (!everg || (inuse[0] && dur[0] && W >= TPOS(0) + CAP) || \
                         (inuse[1] && dur[1] && W >= TPOS(1) + CAP))
#define MEMOK(mm) (!live[mm] || !act[mm] || fin[mm] || (W < M && SLEGIT))
#define GROUPOK(e) (!inuse[e] || (taken[e] & NEEDED(e, TPOS(e))) == NEEDED(e, TPOS(e)))

proctype watchdog()
{
end:
    atomic {
        timeout ->
        sender_waits_for_nothing = !(W == M || SLEGIT);
        assert(!sender_waits_for_nothing);
        member_waits_for_nothing = !(MEMOK(0) && MEMOK(1));
        assert(!member_waits_for_nothing);
        lost_messages = !(GROUPOK(0) && GROUPOK(1));
        assert(!lost_messages)
    }
}

init
{
    atomic {
        live[0] = true; live[1] = true; live[NMEM] = true;
        inlife[0] = true; inlife[1] = true; inlife[NMEM] = true;
        run watchdog();
        run killer();
        run sender();
        run member(0);
        run member(1);
        if :: ADMIN -> run admin() :: else -> live[NMEM] = false fi
    }
}
