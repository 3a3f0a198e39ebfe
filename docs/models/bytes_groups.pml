/*
 * bytes_groups.pml -- receiver groups on a byte ring of one sender (docs/protocol.md,
 * "Receiver groups on a byte ring"): records of 8-byte units with a padding record at the
 * ring's end (bytes.pml), claimed by the members of named groups under each group's claim
 * lock (groups.pml: C1-C7, T, L, A, D, J2-J3), with a crash of any member before or after
 * every step and a new member coming back in its place.
 *
 * Shared memory                               model (positions in units of 8 bytes)
 *   header write_cursor                        wc
 *   the ring: CAP units of 8 bytes             cell[u]: a record header HDR(length, kind)
 *                                              (one unit, one store, one load), or a payload
 *                                              unit holding its message's number (1..NM)
 *   group entry g: group_next, group_lock      nxt[g], lk[g] (place + 1, 0 free)
 *   member place p: OFD lock byte              owner[p] (member + 1, 0 free)
 *                   place_group                tag[p] (group, or NONE)
 *                   place_hold_start           hs[p] (first unit not taken + 1, 0 nothing)
 *                   place_hold_end             he[p]
 *
 * Processes: the sender, publishing NM messages of LEN1 or LEN2 bytes (each message picks
 * one: records of 2 or 3 units) into a ring of CAP units (48 bytes: padding records of 1 and
 * 2 units happen); members 0 and 1 in group 0 (sharing its messages), member 2 in group 1
 * (alone: it gets every message again); a killer.  Three member places.  Both groups are in
 * use from the start: the creation of a group mid-run (J1, the sequence lock of the senders'
 * bound, the repair of an odd groups_gen) is the same on a byte ring as on slots and is left
 * to groups.pml and lifecycle.pml (the searches with 1 crash take 4 to 9 M states without
 * it); without it the sender needs no sequence lock, and joins (J2, J3, each one step under
 * the place's lock) no groups lock.
 *
 * The sender (B1-B4 with the groups' bound):
 *   B1  a record of rec units, pad = CAP - i if it would cross the end (i = write mod CAP),
 *       needs pad + rec free units; free = CAP - (write - bound).  Short of room, it reads the
 *       bound: every group's group_next in one step, then every place's hold_start - 1 (a
 *       place holding a claim of a group in use) in a second (groups.pml's argument: a claim
 *       handed out after the first step starts at or past what it read); still short, it
 *       sleeps until a take frees room (a blocking guard on the true bound) and reads again.
 *   B2  the padding header; B3 the payload units, each a store, then the header (one store);
 *   B4  store-release write_cursor: the padding is published only with the record after it.
 * The sender does not crash (bytes.pml crashes it, groups.pml does not), publishes after each
 * record, and its wake-ups are left out: waits are blocking guards (bytes.pml and fdwake.pml
 * check the wake-ups).
 *
 * A member (its place p, group g):
 *   C1, C2  something to claim: group_next != write_cursor (one read);
 *   C3      CAS group_lock from 0 to p + 1; C4 under it reload n = group_next and
 *           w = write_cursor (one step with C3: nobody tells C3 from the loads); then walk
 *           from pos = n, each header one load (a step): a padding (kind 1) is checked
 *           (length = CAP - pos mod CAP, length < w - pos) and stepped over; a message (kind
 *           0) is checked (rec <= w - pos, pos mod CAP + rec <= CAP) and taken, unless the
 *           claim holds one message and taking this one would make the claim longer than
 *           the group's byte limit (LIMIT units for group 0, which has other members; none
 *           for group 1, alone): then the walk stops before it.  Once the claim holds WANT
 *           messages the walk ends without loading the next header (the code may load it and
 *           then stop: a load of a published header under the claim lock, which changes
 *           nothing).  The claim is [n, e), e the end of the last message taken (a padding
 *           before a message not taken is left to the next claim).
 *   C5      hold_end = e, hold_start = n + 1 (a step); C6 group_next = e; C7 group_lock = 0.
 *   B6      within the claim, at r: load the header (a step); a padding: check its length
 *           (CAP - r mod CAP, and < e - r: a claim never ends on a padding) and step over it;
 *           a message: check it lies within the claim and the ring, copy its payload, each
 *           unit a load (a step: a torn copy shows);
 *   T       after a message: store-release hold_start = r + 1, or 0 once r == e; or (WANT > 1)
 *           go on to the next message of the claim and store it after several.
 *   L, A, D as in groups.pml: a member with nothing to claim takes a dead member's place that
 *           holds a claim of its group (or that group_lock names), settles group_lock (L),
 *           and goes on with the claim from hold_start - 1 to hold_end, which may begin at a
 *           padding record.
 *
 * A crash: the killer clears live[m] and drops member m's place lock in one step; the
 * member's `unless` escape ends that incarnation before its next step.  It comes back as a
 * new member of its group on any free place it may take (J2: a free place of its group, or
 * one holding nothing; J3: settles a group_lock naming it, as L): it must if no other member
 * of its group is alive, and may otherwise.  Up to MAXCRASH crashes per run (KILLABLE: which
 * members may crash).
 *
 * Properties (ghosts: gen, cmsg, plen, taken, allow, pend):
 *   (a) no torn or stale message: a header is read (by a claim's walk or by B6) only where a
 *       header was written for that very position (gen), so a padding only as a padding;
 *       every payload unit copied holds the number of the message whose header was read,
 *       and the header's length is the one that message was written with;
 *   (b) each group gets every message exactly once: a second take of a message by a group
 *       uses up an allowance, given by the death of a member after its copy of that message
 *       and before its T (the documented redelivery); a member that finishes asserts its
 *       group took every message, and init asserts it for both groups at the end; claims
 *       are walked in position order, so each group takes the messages in the sender's order
 *       but for that redelivery and the sharing between members;
 *   (c) the checks of C4's walk and of B6 (padding length, record within the claim or the
 *       published bytes, within the ring) never fail on a sound ring: each is asserted;
 *   (d) the sender never overwrites bytes a group still needs: at each store into the ring,
 *       the message whose record held that unit has been taken by every group (and the
 *       copies of (a) find their bytes unchanged); the bound read is never more than a ring
 *       behind write;
 *   (e) nobody stuck: the -DSAFETY search finds no invalid end state; the -DNP search (no
 *       progress labels) finds no cycle at all, so every run ends.
 *
 * Variants (each must pass): -DWANT=2 (claims of up to 2 messages, T after each or after
 * both; with LIMIT 3, only group 1's claims take 2), -DLIMIT=CAP (group 0 without a byte
 * limit), STALE_W_GUARD (C4 walks to the w of C2, claiming nothing if group_next is past it:
 * the guard of the slot groups' C4 makes the stale w safe, only older), -DNM=4, -DCAP=5
 * (a ring of 40 bytes: messages of 5 or 12 bytes, records of 16 and 24 bytes).
 *
 * Members 0 and 1 are alike (the same steps on places that differ only by their number), so
 * the checks crash member 0 (KILLABLE=1) for a crash of either, and member 2 (KILLABLE=4)
 * apart: the two searches together are one of 1 crash of any member, in less memory.
 *
 * Mutants (each must fail; check.sh requires it):
 *   PAD_END               the walk stopping before a message it does not take ends the claim
 *                         after the padding before it: a claim ending on a padding (WANT=2,
 *                         caught by B6's check that a padding is followed within the claim)
 *   SENDER_IGNORES_HOLDS  the sender's bound is the smallest group_next only (the room from
 *                         the old read_cursor, ignoring holds)
 *   STALE_W               C4 walks to the w of C2 without the guard (as u64: w - pos wraps)
 *   T_PAST                T, with messages of the claim left, stores hold_start at the last
 *                         unit of the claim, past the records not yet taken (WANT=2,
 *                         LIMIT=CAP: the sender overwrites them)
 *   PAD_ALONE             B4 after B2 too: a padding published before the record after it
 *   ROOM_NO_PAD           B1 counts the record but not the padding before it
 *   HOLD_AT_MESSAGE       C5 stores hold_start at the claim's first message, past a padding
 *                         that begins it, while the member reads from n: the sender may
 *                         overwrite the padding header before the member reads it (NM=4)
 *   NEXT_BEFORE_HOLD      C6 before C5
 *   NO_LOCK               claims without the claim lock
 *   RESOLVE_ALWAYS_ADOPT, RESOLVE_NEVER_ADOPT   L without its test of C6
 *   UNLOCK_PLACE_FIRST    L unlocks the dead place before it releases group_lock
 *   NO_DETECT             a member with nothing to claim never looks for dead places
 *
 * Steps.  Only actions nobody else can tell apart are joined into one step: C1 and C2 (one
 * read); C3 and C4's loads of group_next and write_cursor; each header load with the checks
 * and decisions on its value (private); the walk's end (a private test) with C5's two stores
 * (nobody reads hold_end while hold_start is 0); the sender's choice of a length with B1's
 * arithmetic; the last payload unit's load with the delivery (a ghost); testing a place lock and taking it, with what follows under it until a
 * store others read (L, A, D, J2, J3).  Each payload unit, C6, C7 and T are steps of their own.
 *
 * Not modelled: creation of a group mid-run (above), removal (R), clean close (X), the floor
 * (F), epochs, the members hint (LIMIT stands for it); several senders (bytes_many.pml has no
 * groups); the sender's crash; waiting words; memory ordering (sequentially consistent
 * interleavings: the release/acquire pairs are argued, not checked).
 */

#ifndef CAP
#define CAP 6           /* ring units of 8 bytes: 48 bytes */
#endif
#define CAPB (CAP * 8)
#ifndef NM
#define NM 3            /* messages the sender publishes */
#endif
#ifndef WANT
#define WANT 1          /* most messages one claim takes */
#endif
#ifndef LIMIT
#define LIMIT 3         /* group 0's byte limit of a claim, in units (a record of 24 bytes) */
#endif
#ifndef MAXCRASH
#define MAXCRASH 1      /* crashes in one run */
#endif
#ifndef KILLABLE
#define KILLABLE 7      /* bit m set: member m may crash */
#endif
#define ML (CAPB / 2 - 8)   /* message_length */
#ifndef LEN1
#define LEN1 5
#endif
#ifndef LEN2
#define LEN2 ML
#endif

#define NG 2            /* groups */
#define NPL 3           /* member places */
#define NMEM 3          /* member processes */
#define NONE NG         /* the tag of a place of no group */
#define GRP(mm) ((mm) < 2 -> 0 : 1)
#define LIM(gg) ((gg) == 0 -> LIMIT : CAP)
#define MIN(a, b) ((a) < (b) -> (a) : (b))
#define BIT(i) (1 << (i))
#define ALL (BIT(NM) - 1)
#define UNITS(ln) (((ln) + 7) / 8)
#define HDR(ln, kind) (128 + (ln) * 2 + (kind))
#define HLEN(v) (((v) - 128) / 2)
#define HKIND(v) (((v) - 128) % 2)
#define U(d) (((d) + 256) % 256)     /* a difference of positions as an unsigned number */

byte wc;                /* write_cursor / 8 */
byte cell[CAP];         /* the ring */
byte nxt[NG];           /* group_next */
byte lk[NG];            /* group_lock */
byte owner[NPL];        /* place lock */
byte tag[NPL];          /* place_group */
byte hs[NPL];           /* place_hold_start */
byte he[NPL];           /* place_hold_end */
bool live[NMEM];

/* ghosts */
byte gen[CAP];          /* absolute position + 1 a header at this unit was written for; 0: payload */
byte cmsg[CAP];         /* the message whose record holds this unit (0: padding, or none yet);
                         * at a header, the message of that header */
byte plen[NM + 1];      /* the length message x was written with */
byte taken[NG];         /* bit x - 1: group g took message x */
byte allow[NG * NM];    /* second takes of (g, x) allowed by deaths */
byte pend[NMEM];        /* bits x - 1: messages member m copied, its T not done */
bool fin[NMEM];
bool sdone;             /* the sender published everything */
byte crashes;

#define HELD(q, gg) (tag[q] == (gg) && hs[q] != 0)
/* (ghost) group gg has everything: all claimed, no claim under way, no hold left */
#define STOP(gg) (sdone && nxt[gg] == wc && lk[gg] == 0 && \
                  !HELD(0, gg) && !HELD(1, gg) && !HELD(2, gg))
/* the true bound is at least t: the sender's wait for room */
#define HOK(q, t) (hs[q] == 0 || tag[q] == NONE || hs[q] - 1 >= (t))
#define GOK(t) (nxt[0] >= (t) && nxt[1] >= (t) && HOK(0, t) && HOK(1, t) && HOK(2, t))
#define SEEHOLD(q) \
    if \
    :: hs[q] != 0 && tag[q] != NONE -> v = MIN(v, hs[q] - 1) \
    :: else -> skip \
    fi

/* (d) unit u may be written: the message its record held was taken by every group */
#define FREE(u) assert(cmsg[u] == 0 || \
    ((taken[0] & BIT(cmsg[u] - 1)) && (taken[1] & BIT(cmsg[u] - 1))))

#ifdef ROOM_NO_PAD
#define NEED (rec)
#else
#define NEED (rec + pad)
#endif
#define ROOM (CAP - (w - b) >= NEED)

proctype sender()
{
    byte w, b, i, rec, pad, ln, k, x, v;
    x = 1;
    do
    :: x > NM -> break
    :: else ->
        atomic {
            if
            :: ln = LEN1
            :: ln = LEN2
            fi;
            rec = 1 + UNITS(ln);
            i = w % CAP;
            pad = (i + rec > CAP -> CAP - i : 0)
        };
        /* B1 */
        do
        :: ROOM -> break
        :: else ->
#ifdef SENDER_IGNORES_HOLDS
            atomic { b = MIN(nxt[0], nxt[1]) };
#else
            atomic { v = MIN(nxt[0], nxt[1]) };                  /* every group's group_next */
            atomic { SEEHOLD(0); SEEHOLD(1); SEEHOLD(2); b = v; v = 0 }   /* every hold */
#endif
            assert(b <= w && w - b <= CAP);
            if
            :: ROOM -> break
            :: else -> GOK(w + NEED - CAP)   /* sleep until a take frees room */
            fi
        od;
        /* B2 */
        if
        :: pad > 0 ->
            atomic { FREE(i); cell[i] = HDR(pad * 8, 1); gen[i] = w + 1; cmsg[i] = 0 };
            w = w + pad
#ifdef PAD_ALONE
            ; wc = w                                              /* B4 for the padding alone */
#endif
        :: else -> skip
        fi;
        /* B3: the payload units, then the header */
        k = 1;
        do
        :: k < rec ->
            atomic { i = (w + k) % CAP; FREE(i); cell[i] = x; gen[i] = 0; cmsg[i] = x; k++ }
        :: else -> break
        od;
        atomic { i = w % CAP; FREE(i); cell[i] = HDR(ln, 0); gen[i] = w + 1; cmsg[i] = x;
                 plen[x] = ln; w = w + rec; x++; k = 0; i = 0; pad = 0; rec = 0; ln = 0 };
        wc = w                                                    /* B4 */
    od;
    sdone = true
}

/* a second take of message xx by group gg uses up an allowance of a death */
#define TAKE(gg, xx) \
    if \
    :: taken[gg] & BIT((xx) - 1) -> assert(allow[(gg) * NM + (xx) - 1] > 0); allow[(gg) * NM + (xx) - 1]-- \
    :: else -> taken[gg] = taken[gg] | BIT((xx) - 1) \
    fi

#ifdef NO_LOCK
#define UNLOCKG skip
#else
#define UNLOCKG lk[g] = 0
#endif

/* D: a place member m looks at: its lock free, holding for the group or named by lock_g */
#define DCAND(q) (owner[q] == 0 && (lk[g] == (q) + 1 || HELD(q, g)))

/* A: member m holds the lock of place q: it moves into q and goes on with q's claim; its old
 * place (holding nothing) is left with no group and unlocked */
#define ADOPT(q) v = p; p = q; tag[v] = NONE; owner[v] = 0; v = 0; r = hs[q] - 1; e = he[q]

#ifdef UNLOCK_PLACE_FIRST
#define RELEASE(q) owner[q] = 0; lk[g] = 0
#else
#define RELEASE(q) lk[g] = 0; owner[q] = 0
#endif

/* L (from C3 or D) or A (from D), member m holding the lock of the dead place q */
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

/* J2, J3 on place q (a free place of the group, or one holding nothing): take its lock,
 * settle a group_lock naming it (L), tag it, go on with the claim it holds */
#define J2(q) \
    :: atomic { owner[q] == 0 && (hs[q] == 0 || tag[q] == g) -> \
                owner[q] = m + 1; p = q; \
                if \
                :: tag[q] == g && lk[g] == (q) + 1 -> \
                    if \
                    :: hs[q] != 0 && nxt[g] != he[q] -> hs[q] = 0 \
                    :: else -> skip \
                    fi; \
                    lk[g] = 0 \
                :: tag[q] != g && tag[q] != NONE && lk[tag[q]] == (q) + 1 -> lk[tag[q]] = 0 \
                :: else -> skip \
                fi; \
                tag[q] = g; \
                if \
                :: hs[q] != 0 -> r = hs[q] - 1; e = he[q] \
                :: else -> skip \
                fi }

#define NOTHING (hs[p] == 0 && wc == nxt[g])

#ifdef HOLD_AT_MESSAGE
#define HSTART (f + 1)
#else
#define HSTART (n + 1)
#endif

proctype member(byte m; byte g)
{
    /* p: its place (NPL: none); r, e: where it reads in its claim, the claim's end;
     * n, w, pos, f, c: C4's walk (f: the claim's first message) */
    byte p, n, w, pos, f, c, r, e, x, q, v, ln, kind, rec, k;
    bool t;                                /* copies since its last T */

    p = m;
start:
    {
        if
        :: p == NPL ->                     /* join: J2, J3 */
            if
            J2(0)
            J2(1)
            J2(2)
            fi
        :: else -> skip
        fi;

        do
        /* B6 in its claim, at r: the header, one load */
        :: atomic { hs[p] != 0 && rec == 0 && r < e ->
                v = cell[r % CAP];
                assert(v >= 128 && gen[r % CAP] == r + 1);   /* (a) */
                ln = HLEN(v); kind = HKIND(v); x = cmsg[r % CAP]; v = 0;
                if
                :: kind == 1 ->            /* a padding: check it, step over it */
                    assert(ln == (CAP - r % CAP) * 8);
                    assert(ln / 8 < e - r);                          /* (c) */
                    r = r + ln / 8; ln = 0; kind = 0; x = 0
                :: else ->                 /* a message: check it */
                    rec = 1 + UNITS(ln);
                    assert(ln <= ML && rec <= e - r && r % CAP + rec <= CAP);   /* (c) */
                    assert(ln == plen[x]);
                    k = 1
                fi
            }
        /* the payload, one load per unit */
        :: atomic { rec != 0 && k < rec - 1 -> assert(cell[(r + k) % CAP] == x); k++ }      /* (a) not torn */
        :: atomic { rec != 0 && k == rec - 1 -> assert(cell[(r + k) % CAP] == x);           /* the last unit: delivered */
                TAKE(g, x); pend[m] = pend[m] | BIT(x - 1);
                r = r + rec; k = 0; x = 0; ln = 0; kind = 0; rec = 0; t = true
            }
        /* T, after this message or (WANT > 1, t still set at the next header) after several */
        :: atomic { t && r == e -> hs[p] = 0; pend[m] = 0; t = false }          /* all taken */
#ifdef T_PAST
        :: atomic { t && r < e -> hs[p] = e; pend[m] = 0; t = false }           /* past untaken records */
#else
        :: atomic { t && r < e -> hs[p] = r + 1; pend[m] = 0; t = false }
#endif
        :: atomic { NOTHING && STOP(g) } -> break     /* (ghost) the group has it all */
#ifndef NO_DETECT
        /* D: nothing to claim; a place whose lock is free, holding for the group or named
         * by group_lock: take its lock */
        :: atomic { NOTHING && p != 0 && DCAND(0) -> owner[0] = m + 1; q = 0 } -> resolve(q); q = 0
        :: atomic { NOTHING && p != 1 && DCAND(1) -> owner[1] = m + 1; q = 1 } -> resolve(q); q = 0
        :: atomic { NOTHING && p != 2 && DCAND(2) -> owner[2] = m + 1; q = 2 } -> resolve(q); q = 0
#endif
        /* C1, C2: something to claim */
#if defined(STALE_W) || defined(STALE_W_GUARD)
        :: atomic { hs[p] == 0 && wc != nxt[g] -> w = wc } ->
#else
        :: atomic { hs[p] == 0 && wc != nxt[g] } ->
#endif
            if
#ifdef NO_LOCK
            :: atomic { true ->
#else
            :: atomic { lk[g] == 0 -> lk[g] = p + 1;                   /* C3 */
#endif
#if defined(STALE_W) || defined(STALE_W_GUARD)
                    n = nxt[g];                                        /* C4 */
#else
                    n = nxt[g]; w = wc;                                /* C4 */
#endif
#ifdef STALE_W_GUARD
                    if
                    :: U(w - n) > CAP -> w = n                         /* past w: nothing */
                    :: else -> skip
                    fi;
#endif
                    pos = n; e = n; c = 0
                }
                /* C4: the walk from n, a header load a step */
                do
                :: atomic { pos != w && c < WANT ->
                        v = cell[pos % CAP];
                        assert(v >= 128 && gen[pos % CAP] == pos + 1);   /* (a) */
                        ln = HLEN(v); kind = HKIND(v); v = 0;
                        if
                        :: kind == 1 ->            /* padding: check, step over, go on */
                            assert(ln == (CAP - pos % CAP) * 8);
                            assert(ln / 8 < U(w - pos));                 /* (c) */
                            pos = pos + ln / 8
                        :: else ->
                            rec = 1 + UNITS(ln);
                            assert(ln <= ML && rec <= U(w - pos) && pos % CAP + rec <= CAP);   /* (c) */
                            if
                            :: c >= 1 && pos + rec - n > LIM(g) ->
#ifdef PAD_END
                                e = pos;           /* the claim ends after the padding */
#endif
                                w = pos            /* stop before it */
                            :: else ->
                                if
                                :: c == 0 -> f = pos
                                :: else -> skip
                                fi;
                                pos = pos + rec; e = pos; c++
                            fi
                        fi;
                        ln = 0; kind = 0; rec = 0
                    }
                /* the walk ends: the claim [n, e) */
#ifdef NEXT_BEFORE_HOLD
                :: atomic { (pos == w || c == WANT) && c != 0 -> nxt[g] = e; pos = 0; w = 0 }   /* C6 */
                    atomic { he[p] = e; hs[p] = HSTART; r = n; n = 0; f = 0; c = 0 }   /* C5 */
                    UNLOCKG;                                           /* C7 */
                    break
#else
                :: atomic { (pos == w || c == WANT) && c != 0 ->       /* C5 */
                        he[p] = e; hs[p] = HSTART; r = n; n = 0; f = 0; c = 0; pos = 0; w = 0 }
                    atomic { nxt[g] = he[p] }                          /* C6 */
                    UNLOCKG;                                           /* C7 */
                    break
#endif
                :: atomic { (pos == w || c == WANT) && c == 0 ->       /* nothing after all */
                        e = 0; n = 0; pos = 0; w = 0; UNLOCKG }
                    break
                od
#ifndef NO_LOCK
            /* C3 failed: the holder's place lock free (dead): take it, L */
            :: atomic { lk[g] != 0 && owner[lk[g] - 1] == 0 ->
                        q = lk[g] - 1; owner[q] = m + 1; w = 0 } ->
                resolve(q);
                q = 0
#endif
            fi
        od;
        atomic {
            assert((taken[g] & ALL) == ALL);   /* (b) the group took every message */
            fin[m] = true
        }
        goto end
    } unless {
        atomic { !live[m] -> p = NPL; n = 0; w = 0; pos = 0; f = 0; c = 0; r = 0; e = 0; x = 0;
                 q = 0; v = 0; ln = 0; kind = 0; rec = 0; k = 0; t = false }
    };
    /* dead: a new member of the same group joins; or, another member of the group alive,
     * perhaps none */
    if
    :: atomic { m < 2 && live[1 - m] } -> goto end
    :: live[m] = true; goto start
    fi;
end:
    skip
}

/* The death of member mm: the kernel drops its place lock; each copy without its T allows
 * a second take. */
#define ALLOW(mm, xx) \
    if :: pend[mm] & BIT((xx) - 1) -> allow[GRP(mm) * NM + (xx) - 1]++ :: else fi
#define KILL(mm) \
    :: atomic { (KILLABLE & BIT(mm)) && crashes < MAXCRASH && live[mm] && !fin[mm] -> \
                live[mm] = false; crashes++; \
                if :: owner[0] == mm + 1 -> owner[0] = 0 :: else fi; \
                if :: owner[1] == mm + 1 -> owner[1] = 0 :: else fi; \
                if :: owner[2] == mm + 1 -> owner[2] = 0 :: else fi; \
                ALLOW(mm, 1); ALLOW(mm, 2); ALLOW(mm, 3); pend[mm] = 0 }

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
        tag[2] = 1; owner[2] = 3;
        live[0] = true; live[1] = true; live[2] = true;
        run killer();
        run sender();
        run member(0, 0);
        run member(1, 0);
        run member(2, 1)
    };
    (_nr_pr == 2);                         /* all but the killer have ended */
    assert((taken[0] & ALL) == ALL && (taken[1] & ALL) == ALL)
}
