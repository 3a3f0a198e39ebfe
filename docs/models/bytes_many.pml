/*
 * bytes_many.pml -- the NEXT STEP of byte channels, not yet built: many senders on a byte
 * ring (docs/protocol.md, "Byte channels", "Next step, not yet built: many senders on a byte
 * ring"), with a crash of any sender before or after every step and a new sender on a dead
 * place.  The receiver does not crash here (as in many_senders.pml); the waiting words are
 * not modelled (a wait is a blocking guard on what the wake-up would announce: waiting.pml
 * and bytes.pml check the handshake).
 *
 * Shared memory                          model (positions in units of 8 bytes)
 *   header write_cursor (claim cursor)   claim
 *   header read_cursor                   rd
 *   the ring                             cell[u]: what a load of that 8-byte word returns
 *   record header (16 bytes)             unit h: LK(length, kind); unit h + 1: seq = h + 1
 *                                        (the word published last)
 *   payload units                        FORGE(position): the worst payload a user may send,
 *                                        the value a header's seq one lap later would have
 *   place intent (position + 1, length) ipos[p], ilen[p]     (stored and read as one pair:
 *   place dead claim                     dpos[p], dlen[p]      position 0 first, the length,
 *                                                              then the position; read
 *                                                              position, length, position)
 *   place lock                           alive[p]
 *
 * Ghosts: hpos[u] (the position + 1 a header unit at u was written for in this lap), mid[u]
 * (the message a payload or header unit belongs to), pub/got bit sets per place.
 *
 * The steps (the sketch's): M0 a new sender finding its predecessor's intent set voids it if
 * the claim cursor has not passed its position (never claimed), else moves it into the dead
 * claim (waiting until the receiver passed the previous dead claim, if any); then it clears
 * its intent.  M1 load the claim cursor c; i = c mod CAP; rec = 2 + units(n); pad = CAP - i if
 * i + rec > CAP; wait for room; M2 store the intent (c + 1, pad + rec); M3 CAS the claim
 * cursor c -> c + pad + rec (a failure withdraws the intent and starts again); M4 the padding
 * record if pad >= 2 (a pad of 1 unit has no header: nobody starts a record 8 bytes before the
 * end), its seq last; M5 the payload, the header's length and kind, then seq (publish); M6
 * clear the intent.  The receiver at r: steps over an implicit pad of 1 unit; loads seq (the
 * header's second unit); r + 1: reads the header and the record (checks asserted), steps;
 * otherwise loads the claim cursor: r, empty; past r, a hole: a claim covering r in a place's
 * intent (live: wait) or in its dead claim (dead: step over its whole length); if none alive
 * covers r, seq again (published meanwhile), else step over.  Before each release the
 * receiver zeroes the units it consumed or stepped over.
 *
 * Properties: no torn or stale record (a header read only where one was written for that
 * position in this lap; every payload unit of the message read; the receiver's checks never
 * fail), every published message delivered exactly once in its place's order, no unpublished
 * message delivered, a hole always covered by a claim (assert(dead)), nobody stuck (no invalid
 * end state).
 *
 * REREAD: the receiver, having found a claim covering r whose claimer's lock is free, loads the
 * intent again and steps over it only if it is unchanged (else it scans again).  Without it
 * (the default here), a stale snapshot of a loser's intent (its CAS at r failed: it withdrew,
 * claimed further, published and closed cleanly, its lock free) is taken for a dead claim
 * covering r, with the loser's length: the receiver lands inside a record (1 crash).
 *
 * WHAT SPIN FINDS (the sketch is not sound yet; docs/protocol.md, "Next step"):
 *   spin -DREREAD -DMAXCRASH=0 -a; cc -DSAFETY -DNOCLAIM -DCOLLAPSE   errors: 0 (2.4 M states)
 *   each mutant below with -DREREAD -DMAXCRASH=0                      an error, as required
 *   spin -DMAXCRASH=1 -a (without REREAD)                             assert(dead): the stale
 *                                                                     snapshot above
 *   spin -DREREAD -a (2 crashes), cc -DBITSTATE, ./pan -w32          assert(dead) at depth
 *     313: a sender's intent stored (position 6, 6 units) and its death before its CAS; M0 of
 *     the next sender on its place moved it into the dead claim; that sender claimed position 6
 *     for 5 units and died: two dead claims cover 6 with 6 and 5 units, and the receiver
 *     cannot tell which was made.  M0 now voids an intent the claim cursor has not passed;
 *     the same two deaths on two places remain (the same run again, 83.5 M states, 232 s):
 *     assert(dead) at depth 210: sender 1 stores its intent (position 3, 4 units) and dies
 *     before its CAS; sender 0 claims position 3 for 3 units and dies after its CAS; the
 *     receiver, both locks free, steps over 4 units, to 7, past the claim cursor (6).  An
 *     intent does not say whether its CAS succeeded, and with bytes the lengths differ.
 *     The proposed fix (a claim bit in the claim word) is not modelled yet.
 *
 * Mutants (each must fail, checked with -DREREAD -DMAXCRASH=0):
 *   NO_ZERO        the receiver does not zero what it consumed: a payload of the last lap
 *                  read as a header's seq while the claimer has not written it.
 *   EXACT_INTENT   the receiver looks for an intent starting at r only (not covering r): a
 *                  live claimer that published its padding, not yet its record, is missed.
 *   NO_LOCK_TEST   the receiver steps over a claim without testing its claimer's lock.
 *   INTENT_AFTER_CAS  M3 before M2: a live claim invisible to the receiver's scan.
 *   M0_ERASES      (needs crashes) a new sender clears a dead intent without keeping it.
 */

#ifndef NS
#define NS 2
#endif
#ifndef NM
#define NM 2            /* messages per place, over all its senders */
#endif
#ifndef CAP
#define CAP 8           /* 64 bytes: message_length = 64 / 2 - 16 = 16 */
#endif
#ifndef MAXCRASH
#define MAXCRASH 2
#endif
#ifndef MAXINC
#define MAXINC 2
#endif
#define ML (CAP * 8 / 2 - 16)
#ifndef LEN1
#define LEN1 5
#endif
#define UNITS(n) (((n) + 7) / 8)
#define LK(len, kind) (128 + (len) * 2 + (kind))
#define LKLEN(v) (((v) - 128) / 2)
#define LKKIND(v) (((v) - 128) % 2)
#define FORGE(pos) ((pos) + CAP)
#define BIT(i) (1 << (i))

/* The receiver's release: zero the units consumed (NO_ZERO: not), then store read_cursor.
 * The zeroing is one step: nobody else touches those units before the release. */
#ifdef NO_ZERO
#define RELEASE rd = r
#else
#define RELEASE \
    atomic { \
        u = rd; \
        do \
        :: u < r -> cell[u % CAP] = 0; hpos[u % CAP] = 0; mid[u % CAP] = 0; u++ \
        :: else -> break \
        od; \
        u = 0 \
    }; \
    rd = r
#endif

byte claim, rd;
byte cell[CAP];
byte ipos[NS], ilen[NS];
byte dpos[NS], dlen[NS];
bool alive[NS];

/* ghosts */
byte hpos[CAP];
byte mid[CAP];
byte pub[NS], got[NS], last[NS];
byte crashes, nfinished;

proctype sender(byte p)
{
    byte c, n, i, rec, pad, need, ln, k, r0, inc;
    bool fin;
start:
    inc++;
    alive[p] = true;
    {
        /* M0 */
        if
        :: ipos[p] != 0 ->
#ifdef M0_ERASES
            skip;
#else
            if
            :: claim <= ipos[p] - 1 -> skip       /* never claimed: nobody passed it, and its
                                                   * sender is dead: void */
            :: else ->
                (dpos[p] == 0 || rd >= dpos[p] - 1 + dlen[p]);   /* the last dead claim passed */
                atomic { dpos[p] = ipos[p]; dlen[p] = ilen[p] }
            fi;
#endif
            atomic { ipos[p] = 0; ilen[p] = 0 }
        :: else -> skip
        fi;
        do
        :: n < NM ->
            n++;
            if
            :: ln = LEN1
            :: ln = ML
            fi;
            rec = 2 + UNITS(ln);
            do
            :: atomic {                                   /* M1: the claim cursor, room */
                   c = claim; i = c % CAP;
                   if
                   :: i + rec > CAP -> pad = CAP - i
                   :: else -> pad = 0
                   fi;
                   need = pad + rec;
                   (c + need - rd <= CAP)
               };
#ifdef INTENT_AFTER_CAS
               if
               :: atomic { claim == c -> claim = c + need };
                  atomic { ipos[p] = c + 1; ilen[p] = need }; break
               :: atomic { claim != c -> c = 0 }
               fi
#else
               atomic { ipos[p] = c + 1; ilen[p] = need }  /* M2 */
               if
               :: atomic { claim == c -> claim = c + need }; break   /* M3 */
               :: atomic { claim != c -> c = 0 };
                  atomic { ipos[p] = 0; ilen[p] = 0 }
               fi
#endif
            od;
            /* M4 the padding record */
            if
            :: pad >= 2 ->
                atomic { cell[i] = LK(pad * 8, 1); hpos[i] = c + 1; mid[i] = 0 };
                atomic { cell[(i + 1) % CAP] = c + 1; mid[(i + 1) % CAP] = 0 }
            :: else -> skip
            fi;
            /* M5 the payload, length and kind, then seq */
            r0 = c + pad;
            k = 2;
            do
            :: k < rec ->
                atomic { cell[(r0 + k) % CAP] = FORGE(r0 + k); mid[(r0 + k) % CAP] = p * 8 + n };
                k++
            :: else -> break
            od;
            atomic { cell[r0 % CAP] = LK(ln, 0); hpos[r0 % CAP] = r0 + 1; mid[r0 % CAP] = p * 8 + n };
            atomic { cell[(r0 + 1) % CAP] = r0 + 1; mid[(r0 + 1) % CAP] = p * 8 + n; pub[p] = pub[p] | BIT(n) };
            atomic { ipos[p] = 0; ilen[p] = 0 };          /* M6 */
            atomic { c = 0; i = 0; rec = 0; pad = 0; need = 0; ln = 0; k = 0; r0 = 0 }
        :: else -> break
        od;
        atomic { fin = true; nfinished++; alive[p] = false }   /* clean close */
    } unless { !alive[p] };
    if
    :: fin -> goto end
    :: else -> skip
    fi;
    /* dead: a new sender takes the place, or nobody */
    atomic { c = 0; i = 0; rec = 0; pad = 0; need = 0; ln = 0; k = 0; r0 = 0 };
    if
    :: inc < MAXINC && n < NM -> goto start
    :: else -> nfinished++
    fi;
end:
    skip
}

/* Kills at most MAXCRASH senders, each at any moment: the lock goes with the life. */
#define KILL(q) :: atomic { crashes < MAXCRASH && alive[q] -> alive[q] = false; crashes++ }
proctype killer()
{
end:
    do
    KILL(0)
    KILL(1)
    od
}

/* A claim (pos + 1, len) covers r if pos <= r < pos + len. */
#define COVERS(pos1, len, x) ((pos1) != 0 && (pos1) - 1 <= (x) && (x) < (pos1) - 1 + (len))

proctype receiver()
{
    byte r, rs, s, v, ln, kind, rec, k, id, pl, q, end1, u, ip, il;
    bool live, dead;
    do
    :: /* the implicit padding: no record starts 8 bytes before the end */
       if
       :: CAP - r % CAP == 1 -> rs = r + 1
       :: else -> rs = r
       fi;
       s = cell[(rs + 1) % CAP];                 /* load seq (acquire) */
       if
       :: s == rs + 1 ->
           atomic {
               v = cell[rs % CAP];               /* the header's length and kind, once */
               assert(v >= 128 && hpos[rs % CAP] == rs + 1)   /* written for this position */
           };
           d_step { ln = LKLEN(v); kind = LKKIND(v); id = mid[rs % CAP] };
           if
           :: kind == 1 ->
               assert(ln == (CAP - rs % CAP) * 8);   /* the check of a padding record */
               r = rs + ln / 8
           :: else ->
               assert(ln <= ML);
               rec = 2 + UNITS(ln);
               assert(rs % CAP + rec <= CAP);
               assert(rs + rec <= claim);
               k = 2;
               do
               :: k < rec ->
                   atomic { v = cell[(rs + k) % CAP]; assert(mid[(rs + k) % CAP] == id) };  /* not torn */
                   k++
               :: else -> break
               od;
               atomic {
                   pl = id / 8; id = id % 8;
                   assert(pl < NS && id > 0 && id <= NM);
                   assert(pub[pl] & BIT(id));        /* published */
                   assert(id > last[pl]);            /* order, no duplicate */
                   last[pl] = id;
                   got[pl] = got[pl] | BIT(id);
                   id = 0; pl = 0; k = 0; v = 0
               };
               r = rs + rec
           fi;
           RELEASE
       :: else ->
           if
           :: claim == r ->                       /* load the claim cursor (acquire): empty */
               if
               :: nfinished == NS && claim == r -> break
               :: else -> (claim != r || nfinished == NS)
               fi
           :: claim != r ->                       /* a hole: who covers r? */
               q = 0;
               do
               :: q < NS ->
                   atomic { ip = ipos[q]; il = ilen[q] };   /* the intent pair, read whole */
#ifdef EXACT_INTENT
                   if
                   :: ip == r + 1 ->
#else
                   if
                   :: COVERS(ip, il, r) ->
#endif
#ifdef NO_LOCK_TEST
                       dead = true; end1 = ip - 1 + il
#else
                       if
                       :: alive[q] -> live = true; break
#ifdef REREAD
                       :: else ->                  /* the intent again: unchanged, or scan again */
                           if
                           :: atomic { ipos[q] == ip && ilen[q] == il -> dead = true; end1 = ip - 1 + il }
                           :: else -> live = true; break
                           fi
#else
                       :: else -> dead = true; end1 = ip - 1 + il
#endif
                       fi
#endif
                   :: else -> skip
                   fi;
                   atomic { ip = dpos[q]; il = dlen[q] };   /* the dead claim, read whole */
                   if
                   :: COVERS(ip, il, r) -> dead = true; end1 = ip - 1 + il
                   :: else -> skip
                   fi;
                   atomic { ip = 0; il = 0 };
                   q++
               :: else -> break
               od;
               if
               :: live ->                          /* a live claimer: wait for a change */
                   (cell[(rs + 1) % CAP] == rs + 1 || !alive[q] || !COVERS(ipos[q], ilen[q], r));
                   atomic { live = false; dead = false; q = 0; end1 = 0; ip = 0; il = 0 }
               :: !live && cell[(rs + 1) % CAP] == rs + 1 ->   /* published meanwhile */
                   atomic { dead = false; q = 0; end1 = 0 }
               :: !live && cell[(rs + 1) % CAP] != rs + 1 ->
                   assert(dead);                   /* a hole is always covered by a claim */
                   r = end1;
                   atomic { dead = false; q = 0; end1 = 0 };
                   RELEASE
               fi
           fi
       fi
    od;
    q = 0;
    do
    :: q < NS -> assert((pub[q] & ~got[q]) == 0); q++
    :: else -> break
    od
}

init
{
    atomic {
        byte i;
        for (i : 0 .. NS - 1) {
            run sender(i)
        }
        run receiver();
        run killer()
    }
}
