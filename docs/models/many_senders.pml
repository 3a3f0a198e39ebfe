/*
 * many_senders.pml -- the many-senders (fan-in) protocol of docs/protocol.md,
 * section "Many senders", with a crash of any sender before or after every step.
 *
 * Step labels (S1..S6, R1..R5) are those of docs/protocol.md.
 *
 * Shared memory                     model
 *   header claim_cursor             claim
 *   header read_cursor              rd
 *   slot sequence word              seqw[slot]      (c + 1 once message c is published)
 *   slot payload                    pa[slot], pb[slot]  (two separate writes: a torn
 *                                                        message has pa != pb)
 *   place intent word               rec_start[p], rec_busy[p]  (stored together:
 *                                   intent = rec_busy ? rec_start + 1 : 0)
 *   place lock byte (OFD lock)      alive[p]        (false from the instant of death)
 *
 * A crash: the killer process sets alive[p] = false (the kernel drops the lock at
 * the death), which at once sends sender p through its `unless` escape to `dead`:
 * the escape has priority over every statement of the body, so the process never
 * executes another step of that incarnation.  A dead place may be taken again by a
 * new sender (a new incarnation of the same proctype), which resets the record and
 * continues the place's numbering of messages.
 *
 * Properties (ghost variables pub/got/last are not part of the protocol):
 *   (a) no torn message:       assert at delivery: pa == pb, both nonzero
 *   (b) exactly once, order:   assert at delivery: id > last[p] (per-place order,
 *                              which also forbids a second delivery), and at the end:
 *                              every published (returned) message was delivered
 *   (b') no unfinished message seen: assert at delivery: the message was published
 *   (c) no double delivery:    as (b), id strictly increasing per place
 *   (d) nobody stuck:          the -DSAFETY run finds no invalid end state (a blocked
 *                              sender or receiver: every wait is a blocking guard);
 *                              the -DNP run (no progress labels) finds no cycle at
 *                              all, so every run ends, and ends validly.  ltl `done`
 *                              (check.sh --full, weak fairness): the receiver
 *                              eventually reads everything and stops.
 *
 * Mutants (each must FAIL; check.sh requires it):
 *   BROKEN_ORDER   claim with fetch-add, then record the claim (invisible claim window)
 *   NO_LOCK_CHECK  receiver skips a hole without testing the claimer's lock
 *   NO_RECHECK     receiver skips without re-reading the sequence word after its scan
 *   NO_RESET       a new sender on a dead place keeps the dead one's claim record
 *   EARLY_PUBLISH  the sequence word is stored between the two payload writes
 *   KEEP_STALE     a sender that lost the CAS keeps its stale intent while it waits
 *                  for space (the receiver then waits on it: deadlock on a full ring)
 */

#ifndef NS
#define NS 2            /* sender places (max_senders) */
#endif
#ifndef NM
#define NM 2            /* messages per place, over all its incarnations */
#endif
#ifndef CAP
#define CAP 2           /* ring capacity */
#endif
#ifndef MAXCRASH
#define MAXCRASH 2      /* crashes in one run */
#endif
#ifndef MAXINC
#define MAXINC 2        /* incarnations per place (1 = no new sender on a dead place) */
#endif

byte claim;             /* claim cursor: sequences ever claimed */
byte rd;                /* read_cursor */
byte seqw[CAP];         /* per-slot sequence word */
byte pa[CAP];           /* payload, first half  */
byte pb[CAP];           /* payload, second half */
byte rec_start[NS];     /* place claim record: start sequence ...   */
bool rec_busy[NS];      /* ... and state (false IDLE, true PENDING) */
bool alive[NS];         /* place lock held */

/* ghosts */
byte crashes;
byte pub[NS];           /* bit i: message i of place p was published (its send returned) */
byte got[NS];           /* bit i: message i of place p was delivered */
byte last[NS];          /* id of the last message delivered from place p */
byte nfinished;         /* places that will run no more senders */
bool rdone;             /* receiver has read everything and stopped */

#define BIT(i) (1 << (i))

proctype sender(byte p)
{
    byte c, n, inc;

start:
    inc++;
    alive[p] = true;                      /* take the place's lock (F_OFD_SETLK) */
    {
#ifndef NO_RESET
        rec_busy[p] = false;              /* S0: reset the record before claiming */
#endif
        do
        :: n < NM ->
#ifdef BROKEN_ORDER
            /* naive: fetch-add, then record what was claimed */
            atomic { n++; (claim - rd < CAP) };   /* S1 wait for space */
            atomic { c = claim; claim++ };        /*    fetch-add */
            atomic { rec_start[p] = c; rec_busy[p] = true };   /* then record */
#else
            n++;                          /* this attempt sends message id n */
            /* S1's first load of read_cursor follows the claim load at once; a later
             * load could only see a larger read_cursor, which the blocking guard
             * waits for anyway. */
            do
            :: atomic { c = claim;        /* S1 load claim cursor, then */
                        (c - rd < CAP) }  /*    wait while full (load read_cursor, acquire) */
               atomic { rec_start[p] = c; rec_busy[p] = true };   /* S2 record intent */
               if
               :: atomic { claim == c -> claim = c + 1 }; break   /* S3 CAS claim c -> c+1 */
               :: atomic { claim != c -> c = 0 };                 /*    lost the race: */
#ifndef KEEP_STALE
                  rec_busy[p] = false     /*    withdraw the intent, then again */
#else
                  skip
#endif
               fi
            od;
#endif
            pa[c % CAP] = p * 16 + n;     /* S4 copy, first write  */
#ifdef EARLY_PUBLISH
            atomic { seqw[c % CAP] = c + 1; pub[p] = pub[p] | BIT(n) };
            pb[c % CAP] = p * 16 + n;
#else
            pb[c % CAP] = p * 16 + n;     /*    copy, second write */
            atomic { seqw[c % CAP] = c + 1; pub[p] = pub[p] | BIT(n) };  /* S5 publish (release) */
#endif
            atomic { rec_busy[p] = false; c = 0 }   /* S6 clear the record (release) */
        :: else -> break
        od;
        atomic { alive[p] = false; nfinished++ }    /* clean close: unlock */
        goto end
    } unless { !alive[p] };
dead:
    c = 0;
    if
    :: inc < MAXINC && n < NM -> goto start   /* a new sender takes the place */
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
#if NS > 2
    KILL(2)
#endif
    od
}

proctype receiver()
{
    byte r, s, a, b, q, pl, id;
    bool live;

    do
    :: s = r % CAP;
       if
       :: seqw[s] == r + 1 ->             /* R1 load the sequence word (acquire): published */
           a = pa[s];                     /* R2 copy out, first read  */
           b = pb[s];                     /*    copy out, second read */
           d_step {
               assert(a == b && a != 0);  /* (a) not torn */
               pl = a / 16; id = a % 16;
               assert(pl < NS && id > 0 && id <= NM);
               assert(pub[pl] & BIT(id)); /* (b') only published messages are seen */
               assert(id > last[pl]);     /* (b, c) per-place order, no duplicate */
               last[pl] = id;
               got[pl] = got[pl] | BIT(id);
               a = 0; b = 0; pl = 0; id = 0;
               r++;
               rd = r                     /* R3 store read_cursor (release) */
           }
       :: else ->
           if
           :: claim > r ->                /* R4 load claim cursor (acquire): a hole */
               q = 0;
               do
               :: q < NS ->
                   if
                   :: rec_busy[q] && rec_start[q] == r ->  /* load the record (acquire) */
#ifdef NO_LOCK_CHECK
                       q++
#else
                       if
                       :: alive[q] -> live = true; break   /* test its lock (F_OFD_GETLK) */
                       :: else -> q++
                       fi
#endif
                   :: else -> q++
                   fi
               :: else -> break
               od;
               if
               :: live ->                 /* a live claimer covers r: wait for it. Scanning
                                           * again gives the same answer until that claimer
                                           * publishes, dies or withdraws, so the model
                                           * waits for exactly that (the code re-scans). */
                   (seqw[s] == r + 1 || !alive[q] || !rec_busy[q] || rec_start[q] != r);
                   atomic { live = false; q = 0 }
#ifdef NO_RECHECK
               :: else ->
#else
               :: !live && seqw[s] == r + 1 -> q = 0   /* published meanwhile: read it */
               :: !live && seqw[s] != r + 1 ->          /* R5 skip: only dead claimers */
#endif
                   atomic { r++; rd = r; q = 0 }
               fi
           :: else ->                     /* empty: wait (futex) until something changes */
               if
               :: nfinished == NS && claim == r -> break   /* ghost: nothing more will come */
               :: else -> (seqw[s] == r + 1 || claim > r || nfinished == NS)
               fi
           fi
       fi
    od;
    /* (b) every message whose send returned was delivered */
    q = 0;
    do
    :: q < NS -> assert((pub[q] & ~got[q]) == 0); q++
    :: else -> break
    od;
    rdone = true
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

ltl done { <> rdone }
