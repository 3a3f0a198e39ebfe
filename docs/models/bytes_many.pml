/*
 * bytes_many.pml -- many senders on a byte ring, claims under a claim bit (docs/protocol.md,
 * "Byte channels", "Many senders on a byte ring"), with a crash of any sender before or after
 * every step and a new sender on a dead place.  The receiver does not crash here (as in
 * many_senders.pml); the waiting words are not modelled (a wait is a blocking guard on what the
 * wake-up would announce: waiting.pml and bytes.pml check the handshake).
 *
 * Shared memory                          model (positions in units of 8 bytes)
 *   header write_cursor (the claim word: claim, cown     (one word, stored, loaded and CASed
 *     position / 8 << 8 | owner)                          whole; cown 0: free, else the owner
 *                                                         OWNER(place, generation))
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
 *   place generation                     inc (the sender's own count of the place's senders);
 *                                        CODE_GEN: gen[p], the place's counter as S0 counts
 *                                        it, modulo GENMOD (2; the code: 2^11), and the
 *                                        sender's mygen
 *
 * Ghosts: hpos[u] (the position + 1 a header unit at u was written for in this lap), mid[u]
 * (the message a payload or header unit belongs to), pub/got bit sets per place.
 *
 * The steps (docs/protocol.md, "Many senders on a byte ring", numbers them):
 *   S0 a new sender on a dead place (its generation one more than its predecessor's): S0a load
 *      the intent the predecessor left, (c0 + 1, length); none: done.  S0b load the word's
 *      position w: w == c0, never committed (its owner died holding the bit): void.  w > c0:
 *      S0c load the intent again; changed, a takeover cleared it (void); unchanged, it is
 *      committed: S0d unless the dead claim holds it already, wait until the receiver passed
 *      the dead claim, if any; S0e copy it into the dead claim.  S0f clear the intent.  (S0
 *      does not take the bit: S0_UNDER_BIT.)
 *   M1 load the word (c, owner).  Free: i = c mod CAP; rec = 2 + units(n); pad = CAP - i if
 *      i + rec > CAP; need = pad + rec; wait for room (c + need - rd <= CAP); CAS (c, 0) ->
 *      (c, me); a failure starts M1 again.
 *   T0 owned: spin until the word changes (M1 again) or its owner is dead (its place's lock
 *      free, or an earlier sender of my own place; CODE_GEN: or its place's lock held and the
 *      place's generation not the owner's); T1 CAS (c, owner) -> (c, me) (a failure:
 *      M1 again); T2 clear the owner place's intent if it is for c (void: never committed);
 *      keep the bit: need at c, the room waited for with the bit held.
 *   M2 store the intent (c + 1, need) in the place.
 *   M3 store the word (c + need, 0) (release): the claim is committed, the bit free.
 *   M4 the padding record if pad >= 2 (a pad of 1 unit has no header: nobody starts a record
 *      8 bytes before the end), its seq last; M5 the payload, the header's length and kind,
 *      then seq (publish); M6 clear the intent.
 *   The receiver at r: steps over an implicit pad of 1 unit; loads seq (the header's second
 *   unit); r + 1: reads the header and the record (checks asserted), steps; otherwise loads the
 *   word's position: r, empty, whatever the owner (a claim at r not committed: nothing to read,
 *   no intent to trust); past r, a hole: a claim covering r in a place's intent (its lock held:
 *   wait; free: load the intent again, unchanged: dead, else scan again) or in its dead claim
 *   (dead); if none alive covers r, seq again (published meanwhile), else step over the dead
 *   claim's whole length.  Before each release the receiver zeroes the units it consumed or
 *   stepped over.
 *
 * Properties: no torn or stale record (a header read only where one was written for that
 * position in this lap; every payload unit of the message read; the receiver's checks never
 * fail), every published message delivered exactly once in its place's order, no unpublished
 * message delivered, a hole always covered by a claim (assert(dead)) and by one claim only
 * (two claims covering r with different ends: assert), a step over a dead claim never past the
 * claim cursor, nobody stuck (no invalid end state; with -DNP and pan -l no cycle at all: every
 * run ends, with everything published delivered).
 *
 * Mutants (each must fail):
 *   SKETCH         the earlier sketch: no claim bit; the intent stored before a CAS of the
 *                  position, withdrawn if the CAS fails; a new sender voids an intent the
 *                  position has not passed, else moves it into the dead claim.  Finding 2: two
 *                  dead intents at one position (2 crashes).
 *   NO_REREAD      the receiver steps over a claim whose claimer's lock is free without
 *                  loading the intent again.  With SKETCH: finding 1 (1 crash).  With the claim
 *                  bit it passes: no intent is stored but by the owner of the bit, so no
 *                  stale intent of a loser exists, and the load of seq after the scan catches
 *                  a claimer that published and closed.
 *   TAKE_NO_CLEAR  T2 left out: the dead owner's void intent beside the taker's, both at c
 *                  with different lengths (2 crashes).
 *   TAKE_RELEASE   a taker frees the bit again (store (c, 0)) and starts M1 again: the same
 *                  owner can then hold (c, owner) twice, and a sender whose T0 saw it free-
 *                  then-taken CASes it away from a live owner (ABA), clearing its intent.
 *   CODE_T0        (not a mutant) T0 as the code does it: a word seen changed sends the sender
 *                  to M1; only an owner seen dead (the lock test) is taken over (T1's CAS, a
 *                  step later).  With it TAKE_RELEASE passes, and so does TAKE_EITHER (a taker
 *                  keeps the bit or frees it, T3, at every takeover: the code frees it when it
 *                  finds no room).
 *   CODE_T2        (not a mutant) T2 as the code does it: for every place in turn, load its
 *                  intent and clear it if it is for c (each load and each store a step).  The
 *                  model's T2 (the owner's place only) fails with 3 crashes (-DMAXCRASH=3
 *                  -DNM0=2 -DNM=1): place 1 claims 0 (its intent (0, 24 bytes)) and dies
 *                  holding the bit; place 0 takes the bit over (T1) and dies before T2; place
 *                  0's new sender takes it over from its own dead predecessor, clears place 0's
 *                  intent only, claims 0 for 32 bytes (M2, M3) and dies; the receiver at 0
 *                  finds two dead claims there, ending at 24 and 32.  With 2 messages per place
 *                  (-DMAXCRASH=3) place 1's new sender also keeps the void intent as a dead
 *                  claim (S0b, S0c, S0e).  CODE_T2 passes, and so does CODE_T0 CODE_T2
 *                  TAKE_EITHER (the code as it is).
 *   CODE_GEN       (not a mutant) T0's generation test as the code does it (_owner_dead, with
 *                  the count of S0 in ring_attach).  Each place has a generation counter, kept
 *                  modulo GENMOD (2: the code's 2^11, the 2,048 senders that come and go on a
 *                  place while another sender is preempted made 2, so that the wraparound is
 *                  reached with 3 senders on a place, MAXINC=3); the owner in the word is
 *                  (place, generation modulo GENMOD).  S0 loads the word, then (a step) counts
 *                  the generation one more, or two more if the word's owner would be its own (a
 *                  dead predecessor GENMOD generations back, holding the bit).  M1: the word's
 *                  owner is this very sender: the code's ChannelCorruptError (assert).  T0:
 *                  the owner of my place: dead (nothing loaded); else the lock test, and, held,
 *                  the load of the place's generation, each a step (a crash, or anything else,
 *                  between them): not the owner's, dead; the owner's, alive: wait (the code's
 *                  slices, ring_bytes_owner_gone) until the word changes, the lock is free or the
 *                  generation moves, then M1 again.  Without it (the model's own test, a flag
 *                  that a new sender sets again) a dead owner whose place has a new sender
 *                  looks alive until that sender claims.
 *   IDLE_NEW       (not a mutant) a new sender may take a dead place even with nothing left to
 *                  send, and then keep it for ever, idle (an end state, its lock held).  With
 *                  CODE_T0 CODE_T2 TAKE_EITHER and without CODE_GEN the other sender waits for
 *                  ever for the dead owner of the idle sender's place (1 crash: an invalid end
 *                  state); with CODE_GEN it passes.
 *   GEN_NO_SKIP    (with CODE_GEN) S0 counts one more even when the word's owner is then this
 *                  sender (a dead predecessor GENMOD generations back holding the bit): the new
 *                  sender finds itself in the word (-DMAXCRASH=2 -DKILLABLE=1 -DMAXINC=3).
 *                  GENMOD=1 (every generation names the dead predecessor: nothing to skip to)
 *                  the same with 1 crash.
 *   GEN_GE         (with CODE_GEN) the owner dead when the place's generation is its own or
 *                  above: a live owner taken over (no crash).
 *   GEN_GT         (with CODE_GEN) the generations compared as numbers, not for equality
 *                  (dead when the place's is above the owner's): after the wraparound (2 senders
 *                  on a place, GENMOD=2) a dead owner looks alive; with IDLE_NEW the other
 *                  sender waits for ever (1 crash).
 *   S0_UNDER_BIT   S0 as first proposed: take the bit (a takeover freeing it again), decide,
 *                  free it: the same ABA.
 *   NO_GEN         the owner is the place alone (no generation): a new sender takes its dead
 *                  predecessor's bit over with a CAS that changes nothing, and a sender whose
 *                  lock test saw the predecessor dead takes it from the new one (ABA).
 *   M3_FIRST       M3 before M2: a committed claim not yet in any intent.
 *   SCAN_OWNED     the receiver at r == w with the word owned scans the intents: it finds no
 *                  claim covering r (the owner has not stored its intent), or a void one.
 *   NO_ZERO        the receiver does not zero what it consumed: a payload of the last lap read
 *                  as a header's seq while the claimer has not written it.
 *   EXACT_INTENT   the receiver looks for an intent starting at r only (not covering r): a live
 *                  claimer that published its padding, not yet its record, is missed.
 *   NO_LOCK_TEST   the receiver steps over a claim without testing its claimer's lock.
 *   S0_ERASES      a new sender clears a committed intent of its predecessor without keeping
 *                  it in the dead claim.
 *   S0_WAIT_ALWAYS S0d waits for the receiver to pass the dead claim even when it holds the
 *                  very claim being moved (a second sender died between S0e and S0f): the
 *                  third waits for the receiver, which waits for the intent to change (its
 *                  place's lock is held): an invalid end state.
 *
 * Sizes: NS senders (2), NM messages per place (2; place 0: NM0), CAP units (8: 64 bytes),
 * messages of LEN1 (5) or message_length (16) bytes, MAXCRASH crashes (2) of the places in the
 * KILLABLE mask (3: both), MAXINC senders per place (2), GENMOD (2) with CODE_GEN.
 *
 * WHAT SPIN FINDS (docs/models/check.sh bytes_many runs these; cc -DSAFETY -DNOCLAIM -DCOLLAPSE):
 *   -DMAXCRASH=1                                  errors: 0, 16.4 M states, 825 MB
 *   -DMAXCRASH=1, cc -DNP, pan -l                 no cycle, 32.7 M states, 2.4 GB
 *   (2 crashes), cc -DBITSTATE, pan -w34          errors: 0, 110.4 M states, hash factor 156
 *   (2 crashes), cc -DNP -DBITSTATE, pan -l -w34  no cycle, 220.7 M states, hash factor 52
 *   -DMAXCRASH=2 -DNM=1 (safety; termination)     errors: 0, 1.8 M; no cycle, 3.7 M
 *   -DMAXCRASH=2 -DKILLABLE=1 -DMAXINC=3 -DNM0=3 -DNM=1   errors: 0, 39.0 M states, 2.3 GB
 *   every mutant above                            an error, as required
 *   -DCODE_T2 (-DCODE_T0 -DCODE_T2 -DTAKE_EITHER, the code as it is):
 *     -DMAXCRASH=1                                errors: 0, 16.4 M states (15.4 M), 805 MB
 *     -DMAXCRASH=1, cc -DNP, pan -l               no cycle, 32.8 M (30.7 M), 2.4 GB
 *     -DMAXCRASH=2 -DNM=1 (safety; termination)   errors: 0, 1.8 M; no cycle, 3.7 M (3.6 M)
 *     -DMAXCRASH=2 -DKILLABLE=1 -DMAXINC=3 -DNM0=3 -DNM=0   errors: 0, 3.5 M
 *     -DMAXCRASH=2, pan -w27 (complete)           errors: 0, 111.0 M (108.5 M), 5.6 GB
 *     -DMAXCRASH=3 -DNM0=2 -DNM=1                 errors: 0, 38.9 M (38.7 M), 2.1 GB
 *     -DMAXCRASH=3 -DNM0=1 -DNM=2                 errors: 0, 38.9 M (38.6 M), 2.1 GB
 *     -DMAXCRASH=3 -DNM0=2 -DNM=1, cc -DNP, pan -l   no cycle, 77.9 M (77.3 M), 4.7 GB
 *     -DMAXCRASH=3, cc -DBITSTATE, pan -w34       errors: 0, 343.4 M (341.7 M), hash factor 50
 *   -DMAXCRASH=3 -DNM0=2 -DNM=1 (the model's T2)  an error: two dead claims at 0, 14.4 M
 *   -DMAXCRASH=3 (the model's T2), cc -DBITSTATE, pan -w33   the same (S0 keeping the void
 *                                                 intent), 69.7 M states
 *   -DCODE_T0 -DCODE_T2 -DTAKE_EITHER -DCODE_GEN (the code as it is, GENMOD=2):
 *     -DMAXCRASH=1                                errors: 0, 23.9 M states, 1.1 GB
 *     -DMAXCRASH=1, cc -DNP, pan -l               no cycle, 47.9 M, 3.2 GB
 *     -DMAXCRASH=2 -DNM=1 (safety; termination)   errors: 0, 3.3 M; no cycle, 6.5 M
 *     -DMAXCRASH=2 -DKILLABLE=1 -DMAXINC=3 -DNM0=3 -DNM=0   errors: 0, 6.9 M (S0's skip)
 *     -DMAXCRASH=3 -DNM0=2 -DNM=1                 errors: 0, 76.5 M, 3.5 GB
 *     -DMAXCRASH=3 -DNM0=1 -DNM=2                 errors: 0, 76.5 M, 3.6 GB
 *     -DIDLE_NEW -DMAXCRASH=1 -DNM=1              errors: 0, 1.5 M
 *     -DIDLE_NEW -DMAXCRASH=1                     errors: 0, 34.7 M, 2.1 GB
 *     -DIDLE_NEW -DMAXCRASH=2 -DNM=1 (safety; termination)   errors: 0, 11.6 M; no cycle,
 *                                                 23.3 M, 1.9 GB
 *     -DMAXCRASH=2 -DKILLABLE=1 -DMAXINC=3 -DNM0=3 -DNM=1   an error (the limit of GENMOD:
 *                                                 place 1's stale T1 after place 0's third
 *                                                 sender took the word over at generation 3 = 1),
 *                                                 14.0 M states; with -DGENMOD=3 errors: 0,
 *                                                 70.3 M states, 3.6 GB
 *     the mutants GEN_NO_SKIP, GENMOD=1, GEN_GE, GEN_GT; and without CODE_GEN, with IDLE_NEW
 *                                                 an error, as required
 *     -DMAXCRASH=2, cc -DBITSTATE, pan -w34       errors: 0, 178.6 M states, hash factor 96
 *   Not run: 2 crashes with 2 messages per place complete (about 9 GB), termination with 3
 *   crashes, the bitstate search of 3 crashes.
 * The exhaustive search of 2 crashes with 2 messages per place did not fit in 4 GB (82.6 M
 * states stored when it stopped).
 */

#ifndef NS
#define NS 2
#endif
#ifndef NM
#define NM 2            /* messages per place, over all its senders */
#endif
#ifndef NM0
#define NM0 NM          /* messages of place 0 */
#endif
#define NMP (p == 0 -> NM0 : NM)
#ifndef KILLABLE
#define KILLABLE 3      /* bit q: place q may crash */
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

/* The owner in the claim word: the place + 1 and the generation of the place's sender.
 * CODE_GEN: the generation as the code counts it (the place's counter, modulo GENMOD). */
#ifndef GENMOD
#define GENMOD 2
#endif
#ifdef NO_GEN
#define OWNER(pl, g) ((pl) + 1)
#define OGEN(o) 0
#define MYGEN 0
#else
#define OWNER(pl, g) ((pl) + 1 + 4 * (g))
#define OGEN(o) ((o) / 4)
#ifdef CODE_GEN
#define MYGEN mygen
#else
#define MYGEN inc
#endif
#endif
#define OPLACE(o) ((o) % 4 - 1)
#define ME OWNER(p, MYGEN)

/* The receiver's release: zero the units consumed (NO_ZERO: not), then store read_cursor.
 * One step: nobody else touches those units before the release. */
#ifdef NO_ZERO
#define RELEASE atomic { rd = r; dead = false; q = 0; end1 = 0 }
#else
#define RELEASE \
    atomic { \
        u = rd; \
        do \
        :: u < r -> cell[u % CAP] = 0; hpos[u % CAP] = 0; mid[u % CAP] = 0; u++ \
        :: else -> break \
        od; \
        u = 0; \
        rd = r; dead = false; q = 0; end1 = 0 \
    }
#endif

byte claim, cown, rd;
byte cell[CAP];
byte ipos[NS], ilen[NS];
byte dpos[NS], dlen[NS];
bool alive[NS];
#ifdef CODE_GEN
byte gen[NS];           /* place generation, modulo GENMOD (the code compares it so) */
#endif

/* ghosts */
byte hpos[CAP];
byte mid[CAP];
byte pub[NS], got[NS], last[NS];
byte crashes, nfinished;

/* The owner o of the word is dead: its place's lock is free, or it is an earlier sender of my
 * own place (whose lock I hold now).  CODE_GEN (one step here; with CODE_T0 the lock test and
 * the load of the generation are two): or its place's lock is held and the place's generation
 * is not the owner's (a later sender counted its own). */
/* CODE_GEN: the generation of the owner's place, its lock held, is the owner's (alive);
 * mutants: the generations compared as numbers, the owner alive only below (GEN_GE) or up to
 * (GEN_GT) the place's. */
#ifdef GEN_GE
#define GEN_ALIVE(o) (gen[OPLACE(o)] < OGEN(o))
#elif defined(GEN_GT)
#define GEN_ALIVE(o) (gen[OPLACE(o)] <= OGEN(o))
#else
#define GEN_ALIVE(o) (OWNER(OPLACE(o), gen[OPLACE(o)]) == (o))
#endif
#ifdef NO_GEN
#define DEAD(o) (!alive[OPLACE(o)] || OPLACE(o) == p)
#elif defined(CODE_GEN)
#define DEAD(o) (!alive[OPLACE(o)] || OPLACE(o) == p || !GEN_ALIVE(o))
#else
#define DEAD(o) (!alive[OPLACE(o)] || (OPLACE(o) == p && OGEN(o) != MYGEN))
#endif

/* T2: load the owner place's intent; for c, clear it (void: never committed): a load, then a
 * store.  CODE_T2, as the code does it: for every place q in turn, load its intent; for c,
 * clear it (a load, then a store, each a step of its own; the code stores the position 0 and
 * leaves the length, which nobody reads while the position is 0: the model clears both, as
 * its S0f and M6 do). */
#ifdef TAKE_NO_CLEAR
#define T2 skip
#elif defined(CODE_T2)
#define T2 \
    do \
    :: atomic { q < NS && ipos[q] == c + 1 -> skip }; \
       atomic { ipos[q] = 0; ilen[q] = 0; q++ } \
    :: atomic { q < NS && ipos[q] != c + 1 -> q++ } \
    :: atomic { q >= NS -> q = 0 }; break \
    od
#else
#define T2 \
    if \
    :: atomic { ipos[OPLACE(o)] == c + 1 -> q = OPLACE(o) }; \
       atomic { ipos[q] = 0; ilen[q] = 0; q = 0 } \
    :: else -> skip \
    fi
#endif

/* need for a record of rec units at c: the padding to the end first if it does not fit */
#define NEED \
    i = c % CAP; \
    if \
    :: i + rec > CAP -> pad = CAP - i \
    :: else -> pad = 0 \
    fi; \
    need = pad + rec

proctype sender(byte p)
{
    byte c, o, n, i, rec, pad, need, ln, k, r0, inc, q;
#ifdef CODE_GEN
    byte mygen;
#endif
    bool fin;
start:
    atomic { inc++; alive[p] = true };
    {
#ifdef CODE_GEN
        /* S0's first step (ring_attach, the place's lock taken): load the claim word; then
         * count the place's generation, one more, or two more if the word's owner would be
         * this sender (a dead predecessor of the place GENMOD generations back holding the
         * bit).  The generation's load, the test and its store are one step: only the place's
         * sender stores it, the others load it. */
        atomic { o = cown };
        atomic {
            mygen = (gen[p] + 1) % GENMOD;
#ifndef GEN_NO_SKIP
            if
            :: OWNER(p, mygen) == o -> mygen = (mygen + 1) % GENMOD
            :: else -> skip
            fi;
#endif
            gen[p] = mygen; o = 0
        };
#endif
        /* S0 */
#ifdef SKETCH
        if
        :: ipos[p] != 0 ->
            if
            :: claim <= ipos[p] - 1 -> skip       /* never claimed: void */
            :: else ->
                (dpos[p] == 0 || rd >= dpos[p] - 1 + dlen[p]);   /* the last dead claim passed */
                atomic { dpos[p] = ipos[p]; dlen[p] = ilen[p] }
            fi;
            atomic { ipos[p] = 0; ilen[p] = 0 }
        :: else -> skip
        fi;
#elif defined(S0_UNDER_BIT)
        /* S0 as first proposed: take the bit (a takeover frees it again: T3), decide, free it */
        if
        :: ipos[p] != 0 ->
            (dpos[p] == 0 || rd >= dpos[p] - 1 + dlen[p]);
            do
            :: atomic { c = claim; o = cown };
               if
               :: o == 0 ->
                   if
                   :: atomic { claim == c && cown == 0 -> cown = ME }; break
                   :: else -> atomic { c = 0 }
                   fi
               :: else ->
                   (claim != c || cown != o || DEAD(o));
                   if
                   :: atomic { claim == c && cown == o -> cown = ME }; T2; atomic { cown = 0; c = 0; o = 0 }
                   :: else -> atomic { c = 0; o = 0 }
                   fi
#ifdef CODE_T0
                   fi
#endif
               fi
            od;
            atomic {
                if
                :: ipos[p] == c + 1 -> skip
                :: ipos[p] != 0 && ipos[p] < c + 1 -> dpos[p] = ipos[p]; dlen[p] = ilen[p]
                :: else -> skip
                fi
            };
            atomic { ipos[p] = 0; ilen[p] = 0 };
            atomic { cown = 0; c = 0; o = 0 }
        :: else -> skip
        fi;
#else
        /* S0 (without the bit): S0a load the intent the dead predecessor left (position c0);
         * none: done.  S0b load the word's position w: w == c0, the claim was never committed
         * (its owner died holding the bit): void.  w > c0: S0c load the intent again; changed,
         * a takeover cleared it (void); unchanged, it is committed: S0d unless the dead claim
         * holds it already (a predecessor died after S0e), wait until read_cursor passed the
         * dead claim, if any, then S0e copy it into the dead claim (release).  S0f clear the
         * intent (release). */
        atomic { c = ipos[p]; o = ilen[p] };               /* S0a (c: c0 + 1, o: its length) */
        if
        :: c != 0 ->
            if
            :: atomic { claim == c - 1 -> skip }           /* S0b: void */
            :: atomic { claim != c - 1 -> skip };
               if
               :: atomic { ipos[p] == c && ilen[p] == o -> skip };  /* S0c: committed */
                  if
#ifndef S0_WAIT_ALWAYS
                  :: atomic { dpos[p] == c && dlen[p] == o -> skip }  /* S0d: kept already */
#endif
                  :: else ->
                     (dpos[p] == 0 || rd >= dpos[p] - 1 + dlen[p]); /* S0d: the last one passed */
#ifndef S0_ERASES
                     atomic { dpos[p] = c; dlen[p] = o }   /* S0e */
#else
                     skip
#endif
                  fi
               :: else -> skip                              /* cleared by a takeover */
               fi
            fi;
            atomic { ipos[p] = 0; ilen[p] = 0; c = 0; o = 0 }   /* S0f */
        :: else -> skip
        fi;
#endif
        do
        :: atomic { n < NMP ->
            n++;
            if
            :: ln = LEN1
            :: ln = ML
            fi;
            rec = 2 + UNITS(ln) };
#ifdef SKETCH
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
               atomic { ipos[p] = c + 1; ilen[p] = need }  /* M2 */
               if
               :: atomic { claim == c -> claim = c + need }; break   /* M3 */
               :: atomic { claim != c -> c = 0 };
                  atomic { ipos[p] = 0; ilen[p] = 0 }
               fi
            od;
#else
m1:         do
            :: atomic {                                 /* M1: load the word */
                   c = claim; o = cown;
                   if
                   :: o == 0 -> NEED
#ifdef CODE_GEN
                   :: else -> assert(o != ME)   /* the code: ChannelCorruptError (no one else is me) */
#else
                   :: else -> skip
#endif
                   fi
               };
               if
               :: o == 0 ->
                   /* M1b wait for room, then CAS (c, 0) -> (c, me); rd only grows, so the wait
                    * and the CAS are one step here */
                   if
                   :: atomic { claim == c && cown == 0 && c + need - rd <= CAP -> cown = ME }; break
                   :: atomic { claim != c || cown != 0 -> c = 0; i = 0; pad = 0; need = 0 }
                   fi
               :: else ->
#ifdef CODE_T0
                   /* T0 as the code: the word changed: M1 again; else the lock test, and only
                    * an owner seen dead is taken over (T1's CAS, a step later) */
                   if
                   :: atomic { (claim != c || cown != o) -> c = 0; o = 0 }
#ifdef CODE_GEN
                   /* _owner_dead: my own place's, dead (nothing loaded); else the lock test,
                    * then, held, the load of the place's generation (a step each): not the
                    * owner's, dead; the owner's, alive: wait (ring_bytes_owner_gone's slices)
                    * until the word changes, the lock is free or the generation moves on, then
                    * M1 again */
                   :: skip ->
                      if
                      :: OPLACE(o) == p
                      :: else ->
                         if
                         :: atomic { !alive[OPLACE(o)] -> skip }     /* the lock free: dead */
                         :: atomic { alive[OPLACE(o)] -> skip };     /* held */
                            if
                            :: atomic { !GEN_ALIVE(o) -> skip }     /* a later one: dead */
                            :: atomic { GEN_ALIVE(o) -> skip };
                               (claim != c || cown != o || !alive[OPLACE(o)] || !GEN_ALIVE(o));
                               atomic { c = 0; o = 0 };
                               goto m1
                            fi
                         fi
                      fi;
#else
                   :: atomic { DEAD(o) -> skip };
#endif
                      if
                      :: atomic { claim == c && cown == o -> cown = ME };   /* T1 */
#else
                   /* T0 spin until the word changes or its owner is dead (the lock test) */
                   (claim != c || cown != o || DEAD(o));
                   if
                   :: atomic { claim == c && cown == o -> cown = ME };   /* T1 take it over */
#endif
                      T2;
#if defined(TAKE_EITHER)
                      if
                      :: atomic { NEED; o = 0 }; break      /* keep it: claim at c */
                      :: atomic { cown = 0; c = 0; o = 0 }  /* free it (no room), M1 again */
                      fi
#elif defined(TAKE_RELEASE)
                      atomic { cown = 0; c = 0; o = 0 }     /* T3 free it, M1 again: ABA */
#else
                      atomic { NEED; o = 0 };               /* keep it: claim at c */
                      break
#endif
                   :: else -> atomic { c = 0; o = 0 }
                   fi
#ifdef CODE_T0
                   fi
#endif
               fi
            od;
#ifdef M3_FIRST
            atomic { (c + need - rd <= CAP) -> claim = c + need; cown = 0 };      /* M3 */
            atomic { ipos[p] = c + 1; ilen[p] = need }; /* M2 */
#else
            /* (after a takeover, the room is waited for here, the bit held) */
            atomic { (c + need - rd <= CAP) -> ipos[p] = c + 1; ilen[p] = need }; /* M2 */
            atomic { claim = c + need; cown = 0 };      /* M3 (release) */
#endif
#endif
            /* M4 the padding record */
            if
            :: pad >= 2 ->
                atomic { cell[i] = LK(pad * 8, 1); hpos[i] = c + 1; mid[i] = 0 };
                atomic { cell[(i + 1) % CAP] = c + 1; mid[(i + 1) % CAP] = 0; r0 = c + pad; k = 2 }
            :: else -> atomic { r0 = c + pad; k = 2 }
            fi;
            /* M5 the payload, length and kind, then seq */
            do
            :: atomic { k < rec ->
                cell[(r0 + k) % CAP] = FORGE(r0 + k); mid[(r0 + k) % CAP] = p * 8 + n;
                k++ }
            :: atomic { k >= rec -> 
                cell[r0 % CAP] = LK(ln, 0); hpos[r0 % CAP] = r0 + 1; mid[r0 % CAP] = p * 8 + n;
                k = 0 };
               break
            od;
            atomic { cell[(r0 + 1) % CAP] = r0 + 1; mid[(r0 + 1) % CAP] = p * 8 + n; pub[p] = pub[p] | BIT(n) };
            atomic {                                        /* M6 */
                ipos[p] = 0; ilen[p] = 0;
                c = 0; o = 0; i = 0; rec = 0; pad = 0; need = 0; ln = 0; k = 0; r0 = 0
            }
        :: atomic { n >= NMP -> fin = true; nfinished++; alive[p] = false };   /* clean close */
           break
#ifdef IDLE_NEW
        /* a new sender with nothing to send that never closes: its lock held for ever */
        :: atomic { n >= NMP && inc > 1 -> fin = true; nfinished++ };
end_idle:  (false)
#endif
        od
    } unless { !alive[p] };
    if
    :: fin -> goto end
    :: else -> skip
    fi;
    /* dead: a new sender takes the place, or nobody */
    atomic {
        c = 0; o = 0; i = 0; rec = 0; pad = 0; need = 0; ln = 0; k = 0; r0 = 0; q = 0;
        if
#ifdef IDLE_NEW
        :: inc < MAXINC -> skip                 /* even with nothing left to send */
#else
        :: inc < MAXINC && n < NMP -> skip
#endif
        :: else -> nfinished++; goto end
        fi
    };
    goto start;
end:
    skip
}

/* Kills at most MAXCRASH senders, each at any moment: the lock goes with the life. */
#define KILL(q) :: atomic { crashes < MAXCRASH && (KILLABLE & BIT(q)) && alive[q] -> alive[q] = false; crashes++ }
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

/* A dead claim found covering r: one claim only covers r (two with different ends: which one
 * was made is unknown). */
#define FOUND_DEAD(e) \
    assert(!dead || end1 == (e)); \
    dead = true; end1 = (e)

proctype receiver()
{
    byte r, rs, s, v, ln, kind, rec, k, id, pl, q, end1, u, ip, il;
    bool live, dead;
    do
    :: atomic {
           /* the implicit padding: no record starts 8 bytes before the end */
           if
           :: CAP - r % CAP == 1 -> rs = r + 1
           :: else -> rs = r
           fi;
           s = cell[(rs + 1) % CAP]                  /* load seq (acquire) */
       };
       if
       :: s == rs + 1 ->
           atomic {
               s = 0;
               v = cell[rs % CAP];               /* the header's length and kind, once */
               assert(v >= 128 && hpos[rs % CAP] == rs + 1);   /* written for this position */
               ln = LKLEN(v); kind = LKKIND(v); id = mid[rs % CAP]; v = 0;
               if
               :: kind == 1 ->
                   assert(ln == (CAP - rs % CAP) * 8);   /* the check of a padding record */
                   r = rs + ln / 8; ln = 0; kind = 0; id = 0
               :: else ->
                   assert(ln <= ML);
                   rec = 2 + UNITS(ln);
                   assert(rs % CAP + rec <= CAP);
                   assert(rs + rec <= claim);            /* never past the claim cursor */
                   k = 2
               fi
           };
           do
           :: atomic { k > 0 && k < rec ->
                   v = cell[(rs + k) % CAP]; assert(mid[(rs + k) % CAP] == id);  /* not torn */
                   k++; v = 0 }
           :: atomic { k > 0 && k >= rec ->
                   pl = id / 8; id = id % 8;
                   assert(pl < NS && id > 0 && id <= (pl == 0 -> NM0 : NM));
                   assert(pub[pl] & BIT(id));        /* published */
                   assert(id > last[pl]);            /* order, no duplicate */
                   last[pl] = id;
                   got[pl] = got[pl] | BIT(id);
                   r = rs + rec;
                   id = 0; pl = 0; k = 0; ln = 0; kind = 0; rec = 0 };
               break
           :: k == 0 -> break
           od;
           RELEASE
       :: else ->
           s = 0;
           if
#ifdef SCAN_OWNED
           :: claim == r && cown == 0 ->
#else
           :: claim == r ->                       /* the word's position (acquire): empty */
#endif
               if
               :: nfinished == NS && claim == r -> break
               :: else -> (claim != r || nfinished == NS)
               fi
#ifdef SCAN_OWNED
           :: claim != r || cown != 0 ->          /* mutant: an owned word taken for a hole */
#else
           :: claim != r ->                       /* a hole: who covers r? */
#endif
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
                       FOUND_DEAD(ip - 1 + il)
#else
                       if
                       :: alive[q] -> live = true; break
#ifndef NO_REREAD
                       :: else ->                  /* the intent again: unchanged, or scan again */
                           if
                           :: atomic { ipos[q] == ip && ilen[q] == il -> FOUND_DEAD(ip - 1 + il) }
                           :: else -> live = true; break
                           fi
#else
                       :: else -> FOUND_DEAD(ip - 1 + il)
#endif
                       fi
#endif
                   :: else -> skip
                   fi;
                   atomic {
                       ip = dpos[q]; il = dlen[q];   /* the dead claim, read whole */
                       if
                       :: COVERS(ip, il, r) -> FOUND_DEAD(ip - 1 + il)
                       :: else -> skip
                       fi;
                       ip = 0; il = 0;
                       q++
                   }
               :: else -> break
               od;
               if
               :: live ->                          /* a live claimer: wait for a change */
                   (cell[(rs + 1) % CAP] == rs + 1 || !alive[q] || !COVERS(ipos[q], ilen[q], r));
                   atomic { live = false; dead = false; q = 0; end1 = 0; ip = 0; il = 0 }
               :: atomic { !live && cell[(rs + 1) % CAP] == rs + 1 ->   /* published meanwhile */
                   dead = false; q = 0; end1 = 0 }
               :: atomic { !live && cell[(rs + 1) % CAP] != rs + 1 ->
                   assert(dead);                   /* a hole is always covered by a claim */
                   assert(end1 <= claim);          /* never past the claim cursor */
                   r = end1 };
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
