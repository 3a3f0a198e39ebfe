/*
 * bytes_many_groups.pml -- receiver groups on a byte ring of many senders (docs/protocol.md,
 * "Receiver groups on a byte ring of many senders"): the claims of many senders under the
 * claim bit (bytes_many.pml: S0, M1-M6, T0-T2 as the code does them) meet the claims of the
 * members of named groups under each group's claim lock (bytes_groups.pml: C1-C7, B6, T, L, A,
 * D, J2-J3), with a crash of any sender and of any member before or after every step, new
 * senders (S0) and new members (J2, J3, A) coming back.
 *
 * Shared memory                          model (positions in units of 8 bytes)
 *   header write_cursor (the claim word)  claim, cown (position, owner: OWNER(place, gen))
 *   the ring                              cell[u]
 *   record header (16 bytes)              unit h: LK(length, kind); unit h + 1: seq = h + 1
 *   payload units                         FORGE(position): the worst a user may send, the
 *                                         value a header's seq one lap later would have
 *   sender place: intent, dead claim      ipos[p], ilen[p]; dpos[p], dlen[p] (pairs, read
 *                                         whole: the code's whole-read protocol)
 *   sender place lock                     alive[p]
 *   group entry g: group_next, group_lock nxt[g], lk[g] (member place + 1, 0 free)
 *   member place q: lock, place_group,    owner[q] (member + 1, 0 free), tag[q],
 *     place_hold_start, place_hold_end    hs[q] (first unit not taken + 1, 0 none), he[q]
 *
 * Processes: NS = 2 senders (place 0 sends NM0 messages, place 1 NM, over all their
 * incarnations; 1 each by default) of 5 or 12 bytes (each picks one; -DFIXED: place 0 sends 5,
 * 5, 12 bytes, place 1 12) into a ring of CAP = 7 units (56 bytes: records of 24 and 32 bytes,
 * paddings of 8 bytes, implicit, and of 24); members 0 and 1 sharing group 0, member 2 alone
 * in group 1 (-DONE_SHARER: member 1 absent, group 0 of one member); both groups in use from
 * the start (a group created mid-run, removal, close and the floor are groups.pml's and
 * lifecycle.pml's and do not depend on the records); a killer.
 *
 * The ring after earlier laps: the cursors start at START (4 units: a record of 32 bytes there
 * needs a padding record and wraps), and every unit holds the worst payload an earlier lap
 * could leave, the value the seq word of a header of this lap would have at that unit (cell[a
 * mod CAP] = a).  So two messages reach every case a later lap has: a stale word that reads as
 * a seq where a claim's header goes, with no second lap to search (payloads written in the
 * run are FORGE(position), the same for the next lap).
 *
 * Steps joined (nobody can tell them apart, or another model checks them split): the padding
 * record's header and seq (a reader loads the seq first); the payload, the header and the seq
 * of a message (a torn copy and a header before its seq are bytes.pml's and bytes_many.pml's:
 * here what matters is the seq word before the claim is committed); a member's header load with
 * its payload copy and the delivery (ghost); C1, C2 with C3 and C4's loads (C4 reloads
 * group_next and the claim cursor under the lock); each seq load with its header load in the
 * walk; S0's, M1's, T0-T2's, C5's, C6's, C7's, T's, L's, A's, D's and J's steps are those of
 * bytes_many.pml and bytes_groups.pml, each a step of its own.

 * What is new (the steps G1-G6 of docs/protocol.md):
 *   G1  the senders' room is counted from the groups' bound (the smallest group position:
 *       group_next, or a hold's start - 1), not from read_cursor; the model takes the true
 *       bound at M1's compare-and-swap (reading it in two steps is bytes_groups.pml's).
 *   G2  Z: the sender holding the claim bit at c, with room checked against that bound, stores
 *       0 to the seq word of every header its claim will hold (the padding's at c + 1 if pad
 *       >= 2; the message's at c + pad + 1), after M2 and before M3.  Nobody zeroes what he
 *       consumed (the one receiver's R5 is gone: no single member knows when every group has
 *       passed).
 *   G3  a member loads the claim cursor w first (C2, again under the claim lock in C4), and
 *       loads a seq word only at a position below w: a seq word at or past w may hold a
 *       payload of an earlier lap that nobody zeroed.
 *   G4  C4's walk from n = group_next: a record whose seq is published (an implicit padding
 *       of 8 bytes stepped over first) is checked and taken (a padding stepped over, claimed
 *       only with the message after it); the first not published ends the walk.  Nothing
 *       taken and a hole: under the claim lock, the claim covering n (every sender place's
 *       intent: its lock held, live, wait; free, loaded again, unchanged: dead; its dead
 *       claim: dead); none live: seq again (published meanwhile: look again), else C6 alone:
 *       group_next = the dead claim's end, then C7.  A live claimer: C7, then wait for a
 *       change (seq published, its lock freed, its intent changed, group_next moved).
 *   G5  S0d waits until the groups' bound (every group) has passed the place's dead claim
 *       before S0e overwrites it: the one receiver's read_cursor becomes the bound, so a dead
 *       claim stays visible until every group has stepped over it.
 *   G6  the rest as in bytes_many.pml (senders) and bytes_groups.pml (members).
 *
 * Properties (ghosts: hpos, mid, upos, pub, taken, lastc, allow, pend):
 *   (a) no torn or stale message: a header is read (walk or B6) only where one was written for
 *       that position in this lap (hpos), every payload unit copied is of the message whose
 *       header was read (mid); the checks of the walk and of B6 never fail;
 *   (b) each group takes every published message exactly once, a second take only after the
 *       death of a member between its copy and its T; at the end every group took every
 *       published message; no unpublished message is taken;
 *   (c) each sender's order in each group: claims (C6) of a group take each place's messages
 *       in increasing order, none twice;
 *   (d) a hole is always covered by a dead claim if no live one covers it, and by one claim
 *       only (two claims with different ends: assert); a step over it never passes the claim
 *       cursor;
 *   (e) a sender never writes a unit that some group has not passed (upos: the position the
 *       unit was last written for);
 *   (f) nobody stuck: no invalid end state; with -DNP and pan -l, no cycle at all.
 *
 * Mutants (each must fail):
 *   NO_SZERO      the sender zeroes nothing: a payload of the last lap read as a seq.
 *   ZERO_AFTER_M3 Z after M3: a member that loaded the claim cursor reads the stale word.
 *   ZERO_FIRST    Z of the first header only: the message after a padding has a stale seq.
 *   SEQ_FIRST     a member trusts a published-looking seq at or past the claim cursor (as the
 *                 one receiver's R1 does, which loads seq before the claim word): a stale word
 *                 read as a header's seq.
 *   S0D_ANY_GROUP S0d waits only for the group furthest on (as if it were the one receiver):
 *                 a dead claim overwritten before the other group stepped over it.
 *   S0D_NO_WAIT   S0d does not wait at all.
 *   ROOM_ONE_GROUP the senders' room from group 0's position alone.
 *
 * Sizes: CAP units (7), NM0 and NM messages (1, 1), MAXCRASH crashes (1) of the processes in
 * KILLABLE (31: bit 0, 1: sender place 0, 1; bit 2, 3, 4: member 0, 1, 2), MAXINC senders per
 * place (2).
 *
 * WHAT SPIN FINDS (docs/models/check.sh bytes_many_groups runs these; cc -DSAFETY -DNOCLAIM
 * -DCOLLAPSE; CPU time of the search):
 *   no crash, both sharing members                      errors: 0, 22.3 M states, 1.17 GB, 68 s
 *   -DONE_SHARER, 1 crash of either sender               errors: 0, 16.3 M, 825 MB, 34 s
 *   -DONE_SHARER, 1 crash of any member                  errors: 0, 16.4 M, 880 MB, 47 s
 *   -DONE_SHARER -DFIXED, place 0 dying twice, a third sender on it (S0d), place 1 idle
 *     (-DNM0=3 -DNM=0 -DMAXCRASH=2 -DKILLABLE=1 -DMAXINC=3)  errors: 0, 28.1 M, 1.27 GB, 77 s
 *   -DONE_SHARER, 1 crash of either sender, cc -DNP, pan -l   no cycle, 32.5 M, 2.4 GB, 154 s
 *   -DONE_SHARER, 1 crash of any member, cc -DNP, pan -l      no cycle, 32.8 M, 2.4 GB, 157 s
 *   1 crash of any process, both sharing members, cc -DBITSTATE, pan -w32
 *                                                        errors: 0, 493 M states, hash factor
 *                                                        8.7, 520 MB, 1081 s
 *   every mutant above                                   an error, as required (7 to 1.7 M
 *                                                        states, < 480 MB)
 */

#define NS 2
#ifndef NM
#define NM 1
#endif
#ifndef NM0
#define NM0 NM
#endif
#define NMP (p == 0 -> NM0 : NM)
#ifndef CAP
#define CAP 7           /* 56 bytes: message_length = 56 / 2 - 16 = 12 */
#endif
#ifndef MAXCRASH
#define MAXCRASH 1
#endif
#ifndef KILLABLE
#define KILLABLE 31
#endif
#ifndef MAXINC
#define MAXINC 2
#endif
#define ML (CAP * 8 / 2 - 16)
#ifndef START
#define START 4         /* where the cursors start (a record of 32 bytes there needs a padding) */
#endif
#ifndef LEN1
#define LEN1 5
#endif
#define UNITS(n) (((n) + 7) / 8)
#define LK(len, kind) (128 + (len) * 2 + (kind))
#define LKLEN(v) (((v) - 128) / 2)
#define LKKIND(v) (((v) - 128) % 2)
#define FORGE(pos) ((pos) + CAP)
#define BIT(i) (1 << (i))
#define MIN(a, b) ((a) < (b) -> (a) : (b))
#define MAX(a, b) ((a) > (b) -> (a) : (b))

#define OWNER(pl, g) ((pl) + 1 + 4 * (g))
#define OGEN(o) ((o) / 4)
#define OPLACE(o) ((o) % 4 - 1)
#define ME OWNER(p, inc)

#define NG 2
#define NPL 3
#define NMEM 3
#define NONE NG
#define GRP(mm) ((mm) < 2 -> 0 : 1)

byte claim, cown;
byte cell[CAP];
byte ipos[NS], ilen[NS];
byte dpos[NS], dlen[NS];
bool alive[NS];
byte nxt[NG], lk[NG];
byte owner[NPL], tag[NPL], hs[NPL], he[NPL];
bool live[NMEM];

/* ghosts */
byte hpos[CAP];         /* position + 1 the header at this unit was written for (this lap) */
byte mid[CAP];          /* the message (place * 8 + number) of a unit, 0: padding or zero */
byte upos[CAP];         /* position + 1 this unit was last written for */
byte pub[NS];           /* bit n: message n of place p published */
byte taken[NG * NS];    /* bit n: group g took message n of place p */
byte lastc[NG * NS];    /* the last message of place p group g claimed (C6) */
byte allow[NG * 8];     /* second takes of (g, p * 4 + n) allowed by deaths */
byte pend[NMEM];        /* bit p * 4 + n: copied by member m, its T not done */
bool fin[NMEM];
byte crashes, nfinished;

/* A group's position: group_next, or a hold of its places (start - 1); the bound: every group */
#define HP(q, gg) ((tag[q] == (gg) && hs[q] != 0) -> hs[q] - 1 : 255)
#define GPOS(gg) MIN(nxt[gg], MIN(HP(0, gg), MIN(HP(1, gg), HP(2, gg))))
#define BOUND MIN(GPOS(0), GPOS(1))
#ifdef ROOM_ONE_GROUP
#define RBOUND GPOS(0)          /* mutant: the room from one group's position */
#else
#define RBOUND BOUND
#endif

/* (e) unit u may be written for position at: it holds this lap's, or every group has passed
 * what it held */
#define FREE(u, at) assert(upos[u] == 0 || upos[u] == (at) + 1 || BOUND >= upos[u])
#define WRITE(u, val, at, m) FREE(u, at); cell[u] = (val); upos[u] = (at) + 1; mid[u] = (m)

#define DEAD(o) (!alive[OPLACE(o)] || (OPLACE(o) == p && OGEN(o) != inc))

/* T2 as the code does it: every place's intent for c cleared */
#define T2 \
    do \
    :: atomic { q < NS && ipos[q] == c + 1 -> skip }; \
       atomic { ipos[q] = 0; ilen[q] = 0; q++ } \
    :: atomic { q < NS && ipos[q] != c + 1 -> q++ } \
    :: atomic { q >= NS -> q = 0 }; break \
    od

#define NEED \
    i = c % CAP; \
    if \
    :: i + rec > CAP -> pad = CAP - i \
    :: else -> pad = 0 \
    fi; \
    need = pad + rec

/* Z: the seq word of a header the claim will hold */
#define ZERO(u) atomic { WRITE((u) % CAP, 0, u, 0); hpos[(u) % CAP] = 0 }

proctype sender(byte p)
{
    byte c, o, n, i, rec, pad, need, ln, k, r0, inc, q;
    bool sfin;
start:
    atomic { inc++; alive[p] = true };
    {
        /* S0 (without the bit), S0d waiting for every group (G5) */
        atomic { c = ipos[p]; o = ilen[p] };               /* S0a */
        if
        :: c != 0 ->
            if
            :: atomic { claim == c - 1 -> skip }           /* S0b: void */
            :: atomic { claim != c - 1 -> skip };
               if
               :: atomic { ipos[p] == c && ilen[p] == o -> skip };  /* S0c: committed */
                  if
                  :: atomic { dpos[p] == c && dlen[p] == o -> skip }  /* S0d: kept already */
                  :: else ->
#if defined(S0D_NO_WAIT)
                     skip;
#elif defined(S0D_ANY_GROUP)
                     (dpos[p] == 0 || MAX(GPOS(0), GPOS(1)) >= dpos[p] - 1 + dlen[p]);
#else
                     (dpos[p] == 0 || BOUND >= dpos[p] - 1 + dlen[p]);   /* S0d: every group */
#endif
                     atomic { dpos[p] = c; dlen[p] = o }   /* S0e */
                  fi
               :: else -> skip
               fi
            fi;
            atomic { ipos[p] = 0; ilen[p] = 0; c = 0; o = 0 }   /* S0f */
        :: else -> skip
        fi;
        do
        :: atomic { n < NMP ->
            n++;
#ifdef FIXED
            ln = (p == 0 && n < 3 -> LEN1 : ML);   /* place 0: 5, 5, 12 bytes; place 1: 12 */
#else
            if
            :: ln = LEN1
            :: ln = ML
            fi;
#endif
            rec = 2 + UNITS(ln) };
            do
            :: atomic {                                 /* M1: load the word */
                   c = claim; o = cown;
                   if
                   :: o == 0 -> NEED
                   :: else -> skip
                   fi
               };
               if
               :: o == 0 ->
                   /* M1b room against the groups' bound (G1), then CAS (c, 0) -> (c, me) */
                   if
                   :: atomic { claim == c && cown == 0 && c + need - RBOUND <= CAP -> cown = ME }; break
                   :: atomic { claim != c || cown != 0 -> c = 0; i = 0; pad = 0; need = 0 }
                   fi
               :: else ->
                   /* T0 as the code: the word changed: M1 again; an owner seen dead: T1 */
                   if
                   :: atomic { (claim != c || cown != o) -> c = 0; o = 0 }
                   :: atomic { DEAD(o) -> skip };
                      if
                      :: atomic { claim == c && cown == o -> cown = ME };   /* T1 */
                         T2;
                         atomic { NEED; o = 0 };               /* keep it: claim at c */
                         break
                      :: else -> atomic { c = 0; o = 0 }
                      fi
                   fi
               fi
            od;
            /* room, the bit held (after a takeover it is waited for here) */
            atomic { (c + need - RBOUND <= CAP) -> ipos[p] = c + 1; ilen[p] = need };   /* M2 */
#if !defined(NO_SZERO) && !defined(ZERO_AFTER_M3)
            /* Z (G2): the seq words of the claim's headers, before M3 */
            if
            :: pad >= 2 -> ZERO(c + 1)
            :: else -> skip
            fi;
#ifndef ZERO_FIRST
            ZERO(c + pad + 1);
#else
            if
            :: pad < 2 -> ZERO(c + pad + 1)
            :: else -> skip
            fi;
#endif
#endif
            atomic { claim = c + need; cown = 0 };      /* M3 (release) */
#ifdef ZERO_AFTER_M3
            if
            :: pad >= 2 -> ZERO(c + 1)
            :: else -> skip
            fi;
            ZERO(c + pad + 1);
#endif
            /* M4 the padding record (its header, then its seq: one step, as nobody reads the
             * header before the seq) */
            if
            :: pad >= 2 ->
                atomic { WRITE(i, LK(pad * 8, 1), c, 0); hpos[i] = c + 1;
                         WRITE((i + 1) % CAP, c + 1, c + 1, 0); r0 = c + pad; k = 2 }
            :: else -> atomic { r0 = c + pad; k = 2 }
            fi;
            /* M5 the payload, the header's length and kind, then its seq: one step (a torn
             * copy, a header read before its seq, are bytes.pml's and bytes_many.pml's) */
            atomic {
                do
                :: k < rec ->
                    WRITE((r0 + k) % CAP, FORGE(r0 + k), r0 + k, p * 8 + n); hpos[(r0 + k) % CAP] = 0;
                    k++
                :: else -> k = 0; break
                od;
                WRITE(r0 % CAP, LK(ln, 0), r0, p * 8 + n); hpos[r0 % CAP] = r0 + 1;
                     WRITE((r0 + 1) % CAP, r0 + 1, r0 + 1, p * 8 + n); pub[p] = pub[p] | BIT(n) };
            atomic {                                        /* M6 */
                ipos[p] = 0; ilen[p] = 0;
                c = 0; o = 0; i = 0; rec = 0; pad = 0; need = 0; ln = 0; k = 0; r0 = 0
            }
        :: atomic { n >= NMP -> sfin = true; nfinished++; alive[p] = false };   /* clean close */
           break
        od
    } unless { !alive[p] };
    if
    :: sfin -> goto end
    :: else -> skip
    fi;
    atomic {
        c = 0; o = 0; i = 0; rec = 0; pad = 0; need = 0; ln = 0; k = 0; r0 = 0; q = 0;
        if
        :: inc < MAXINC && n < NMP -> skip
        :: else -> nfinished++; goto end
        fi
    };
    goto start;
end:
    skip
}

/* A claim (pos + 1, len) covers x if pos <= x < pos + len. */
#define COVERS(pos1, len, x) ((pos1) != 0 && (pos1) - 1 <= (x) && (x) < (pos1) - 1 + (len))
#define FOUND_DEAD(e) \
    assert(!dead || end1 == (e)); \
    dead = true; end1 = (e)

/* a second take of (place pl, message xx) by group gg uses up an allowance of a death */
#define TAKE(gg, pl, xx) \
    if \
    :: taken[(gg) * NS + (pl)] & BIT(xx) -> \
        assert(allow[(gg) * 8 + (pl) * 4 + (xx)] > 0); allow[(gg) * 8 + (pl) * 4 + (xx)]-- \
    :: else -> taken[(gg) * NS + (pl)] = taken[(gg) * NS + (pl)] | BIT(xx) \
    fi

#define HELD(q, gg) (tag[q] == (gg) && hs[q] != 0)
#define STOP(gg) (nfinished == NS && nxt[gg] == claim && lk[gg] == 0 && \
                  !HELD(0, gg) && !HELD(1, gg) && !HELD(2, gg))
#define DCAND(q) (owner[q] == 0 && (lk[g] == (q) + 1 || HELD(q, g)))
#define ADOPT(q) v = p; p = q; tag[v] = NONE; owner[v] = 0; v = 0; r = hs[q] - 1; e = he[q]
#define RELEASE(q) lk[g] = 0; owner[q] = 0

/* L (from C3 or D) or A (from D), the member holding the lock of the dead place q */
inline resolve(q)
{
    if
    :: atomic { lk[g] == q + 1 && hs[q] != 0 && nxt[g] == he[q] -> ADOPT(q) }
        lk[g] = 0
    :: atomic { lk[g] == q + 1 && hs[q] != 0 && nxt[g] != he[q] -> hs[q] = 0 }
        RELEASE(q)
    :: atomic { lk[g] == q + 1 && hs[q] == 0 } ->
        RELEASE(q)
    :: atomic { lk[g] != q + 1 && HELD(q, g) -> ADOPT(q) }
    :: atomic { lk[g] != q + 1 && !HELD(q, g) -> owner[q] = 0 }
    fi
}

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

#define NOTHING (hs[p] == 0 && claim == nxt[g])

/* the implicit padding: no record starts 8 bytes before the end */
#define SKIP1(x) if :: CAP - (x) % CAP == 1 -> x++ :: else -> skip fi

proctype member(byte m; byte g)
{
    /* p: its place (NPL: none); r, e: where it reads in its claim, its end; n, w, pos, f:
     * C4's walk (f: the claimed message); q, end1, dead, lv, ip, il: a hole's resolution */
    byte p, n, w, pos, f, r, e, x, q, v, ln, kind, rec, k, end1, ip, il;
    bool t, dead, lv, hole;

    p = m;
start:
    {
        if
        :: p == NPL ->
            if
            J2(0)
            J2(1)
            J2(2)
            fi
        :: else -> skip
        fi;

        do
        /* B6 in its claim at r: the header (its seq published), one load */
        :: atomic { hs[p] != 0 && !t && r < e ->
                SKIP1(r);
                assert(r < e);
                v = cell[r % CAP];
                assert(cell[(r + 1) % CAP] == r + 1);
                assert(v >= 128 && hpos[r % CAP] == r + 1);        /* (a) */
                ln = LKLEN(v); kind = LKKIND(v); x = mid[r % CAP]; v = 0;
                if
                :: kind == 1 ->
                    assert(ln == (CAP - r % CAP) * 8 && ln / 8 < e - r);
                    r = r + ln / 8; ln = 0; kind = 0; x = 0
                :: else ->
                    rec = 2 + UNITS(ln);
                    assert(ln <= ML && rec <= e - r && r % CAP + rec <= CAP);
                    k = 2;
                    /* the payload, in the same step (a torn copy is bytes_many.pml's) */
                    do
                    :: k < rec -> assert(mid[(r + k) % CAP] == x && upos[(r + k) % CAP] == r + k + 1); k++
                    :: else -> break
                    od;
                    assert(x / 8 < NS && pub[x / 8] & BIT(x % 8));      /* (b) published */
                    TAKE(g, x / 8, x % 8); pend[m] = pend[m] | BIT((x / 8) * 4 + x % 8);
                    r = r + rec; k = 0; x = 0; ln = 0; kind = 0; rec = 0; t = true
                fi
            }
        /* T */
        :: atomic { t && r == e -> hs[p] = 0; pend[m] = 0; t = false; r = 0; e = 0 }
        :: atomic { t && r < e -> hs[p] = r + 1; pend[m] = 0; t = false }
        :: atomic { NOTHING && STOP(g) } -> break
        /* D */
        :: atomic { NOTHING && p != 0 && DCAND(0) -> owner[0] = m + 1; q = 0 } -> resolve(q); q = 0
        :: atomic { NOTHING && p != 1 && DCAND(1) -> owner[1] = m + 1; q = 1 } -> resolve(q); q = 0
        :: atomic { NOTHING && p != 2 && DCAND(2) -> owner[2] = m + 1; q = 2 } -> resolve(q); q = 0
        /* C3 fails: the holder's place lock free (dead): take it, L */
        :: atomic { hs[p] == 0 && claim != nxt[g] && lk[g] != 0 && owner[lk[g] - 1] == 0 ->
                    q = lk[g] - 1; owner[q] = m + 1 } ->
            resolve(q);
            q = 0
        /* C1, C2 and C3 (one step: C4 reloads what C1 and C2 load) */
#ifndef SEQ_FIRST
        :: atomic { hs[p] == 0 && claim != nxt[g] && lk[g] == 0 ->
#else
        :: atomic { hs[p] == 0 && (claim != nxt[g] || cell[(nxt[g] + 1) % CAP] == nxt[g] + 1) && lk[g] == 0 ->
#endif
                    lk[g] = p + 1;                                     /* C3 */
                    n = nxt[g]; w = claim; pos = n; e = n; f = 0 }     /* C4 (G3: w first) */
                /* C4: the walk, a seq word and its header a step, below w only */
                do
#ifndef SEQ_FIRST
                :: atomic { pos != w && f == 0 ->
                        SKIP1(pos);
                        assert(pos < w);
#else
                /* mutant: a seq published at pos is trusted past w too (the one receiver's
                 * R1, which loads seq before the claim word) */
                :: atomic { (pos != w || (pos < n + CAP && cell[(pos + 1) % CAP] == pos + 1)) && f == 0 ->
                        SKIP1(pos);
                        w = MAX(w, pos + 1);
#endif
                        if
                        :: cell[(pos + 1) % CAP] == pos + 1 ->          /* published */
                            v = cell[pos % CAP];
                            assert(v >= 128 && hpos[pos % CAP] == pos + 1);   /* (a) */
                            ln = LKLEN(v); kind = LKKIND(v);
                            if
                            :: kind == 1 ->
                                assert(ln == (CAP - pos % CAP) * 8 && ln / 8 < w - pos);
                                pos = pos + ln / 8
                            :: else ->
                                rec = 2 + UNITS(ln);
                                assert(ln <= ML && rec <= w - pos && pos % CAP + rec <= CAP);
                                f = mid[pos % CAP];
                                pos = pos + rec; e = pos
                            fi;
                            v = 0; ln = 0; kind = 0; rec = 0
                        :: else -> w = pos; hole = true                  /* a hole: the end */
                        fi
                    }
                /* a message taken: C5, C6, C7 */
                :: atomic { f != 0 ->
                        he[p] = e; hs[p] = n + 1; r = n; n = 0; pos = 0; w = 0 }   /* C5 */
                    atomic {                                                /* C6 */
                        nxt[g] = he[p];
                        assert(f % 8 > lastc[g * NS + f / 8]);             /* (c) order */
                        lastc[g * NS + f / 8] = f % 8; f = 0 }
                    lk[g] = 0;                                              /* C7 */
                    break
                /* nothing taken: n claimed meanwhile (w == n), or a hole at pos */
                :: atomic { f == 0 && pos == w && !hole -> e = 0; n = 0; pos = 0; w = 0; lk[g] = 0 }
                    break
                :: atomic { f == 0 && hole -> e = 0; hole = false }
                    /* G4: the claim covering n */
                    q = 0;
                    do
                    :: q < NS ->
                        atomic { ip = ipos[q]; il = ilen[q] };
                        if
                        :: COVERS(ip, il, n) ->
                            if
                            :: alive[q] -> lv = true; break
                            :: else ->
                                if
                                :: atomic { ipos[q] == ip && ilen[q] == il -> FOUND_DEAD(ip - 1 + il) }
                                :: else -> lv = true; break
                                fi
                            fi
                        :: else -> skip
                        fi;
                        atomic {
                            ip = dpos[q]; il = dlen[q];
                            if
                            :: COVERS(ip, il, n) -> FOUND_DEAD(ip - 1 + il)
                            :: else -> skip
                            fi;
                            ip = 0; il = 0;
                            q++
                        }
                    :: else -> break
                    od;
                    if
                    :: lv ->                                  /* live: C7, wait for a change */
                        lk[g] = 0;
                        (cell[(pos + 1) % CAP] == pos + 1 || !alive[q] ||
                         ipos[q] != ip || ilen[q] != il || nxt[g] != n);
                        atomic { lv = false; dead = false; q = 0; end1 = 0; ip = 0; il = 0;
                                 n = 0; pos = 0; w = 0 }
                    :: atomic { !lv && cell[(pos + 1) % CAP] == pos + 1 ->   /* published meanwhile */
                        dead = false; q = 0; end1 = 0; n = 0; pos = 0; w = 0; lk[g] = 0 }
                    :: atomic { !lv && cell[(pos + 1) % CAP] != pos + 1 ->
                        assert(dead);                     /* (d) covered by a claim */
                        assert(end1 <= claim && end1 > n);
                        nxt[g] = end1 };                  /* C6 alone */
                        atomic { lk[g] = 0; dead = false; q = 0; end1 = 0; n = 0; pos = 0; w = 0 }   /* C7 */
                    fi;
                    break
                od
        od;
        atomic {
            assert((pub[0] & ~taken[g * NS]) == 0 && (pub[1] & ~taken[g * NS + 1]) == 0);
            fin[m] = true
        }
        goto end
    } unless {
        atomic { !live[m] -> p = NPL; n = 0; w = 0; pos = 0; f = 0; r = 0; e = 0; x = 0;
                 q = 0; v = 0; ln = 0; kind = 0; rec = 0; k = 0; t = false; end1 = 0;
                 ip = 0; il = 0; dead = false; lv = false; hole = false }
    };
    if
    :: atomic { m < 2 && live[1 - m] } -> goto end
    :: live[m] = true; goto start
    fi;
end:
    skip
}

#define KILLS(q) :: atomic { crashes < MAXCRASH && (KILLABLE & BIT(q)) && alive[q] -> alive[q] = false; crashes++ }
#define KILLM(mm) \
    :: atomic { (KILLABLE & BIT(2 + mm)) && crashes < MAXCRASH && live[mm] && !fin[mm] -> \
                live[mm] = false; crashes++; \
                if :: owner[0] == mm + 1 -> owner[0] = 0 :: else fi; \
                if :: owner[1] == mm + 1 -> owner[1] = 0 :: else fi; \
                if :: owner[2] == mm + 1 -> owner[2] = 0 :: else fi; \
                b = 0; \
                do \
                :: b < 8 -> \
                    if :: pend[mm] & BIT(b) -> allow[GRP(mm) * 8 + b]++ :: else fi; b++ \
                :: else -> break \
                od; \
                b = 0; pend[mm] = 0 }

proctype killer()
{
    byte b;
end:
    do
    KILLS(0)
    KILLS(1)
    KILLM(0)
    KILLM(1)
    KILLM(2)
    od
}

init
{
    atomic {
        /* the ring after earlier laps, the cursors at START: every unit holds the worst
         * payload, the seq a header of this lap would store there (a header at a - 1 stores
         * a at unit a) */
        byte u;
        for (u : START + 1 .. START + CAP) {
            cell[u % CAP] = u
        }
        u = 0;
        claim = START; nxt[0] = START; nxt[1] = START;
        tag[0] = 0; owner[0] = 1;
        tag[1] = 0; owner[1] = 2;
        tag[2] = 1; owner[2] = 3;
        live[0] = true; live[1] = true; live[2] = true;
        run killer();
        run sender(0);
        run sender(1);
        run member(0, 0);
    #ifndef ONE_SHARER
    run member(1, 0);
#else
    live[1] = false; owner[1] = 0; tag[1] = NONE; fin[1] = true;
#endif
        run member(2, 1)
    };
    (_nr_pr == 2);
    assert((pub[0] & ~taken[0]) == 0 && (pub[1] & ~taken[1]) == 0);
    assert((pub[0] & ~taken[2]) == 0 && (pub[1] & ~taken[3]) == 0)
}
