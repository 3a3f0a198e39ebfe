/*
 * Waking an end that waits on a file descriptor (fileno(), the asyncio face): docs/protocol.md,
 * "Waiting on a file descriptor".
 *
 * One waker (a sender publishing N messages: each publish stores its cursor, then, if the
 * waiting word is not 0, exchanges it to 0; if the value it took had a futex sleeper's bits it
 * FUTEX_WAKEs, if it had CW_WAIT_FD it sends one byte to the socket named after the waiter's
 * place and that place's starts, read at that moment).  One fd waiter: a user's loop that
 * takes what is there (try_recv), and otherwise arms (ring_fd_arm: drain the socket; unless
 * armed already, announce with CW_WAIT_FD, look again) and waits in select() until its
 * socket holds a byte.  With -DSHARED the word is shared with a second waiter that sleeps in
 * the kernel (a member of another group, each of which must see every message), and the
 * waiters announce with tokens (CW_WAIT_FD joined by a compare-and-swap).
 *
 * Crashes: the fd waiter may die at any step (up to MAXCRASH times); its socket goes with it
 * (a byte sent there is refused), and a new end takes its place: starts + 1, a new name, a
 * socket that starts readable (fileno()).  The word the dead end left is as it was.  The
 * waker may die at any step too (up to WCRASH times); a new sender takes its place and, on
 * attaching, wakes every waiter whatever the word says (ring_attach: its predecessor may
 * have died between a publish and its wake-up), then publishes what is left.
 *
 * Sequentially consistent memory: the fences of the handshake make these accesses so (see
 * protocol.md).  A select() blocked for ever while the waiter has not seen every message and
 * the waker has finished is an invalid end state.
 *
 *   spin -a fdwake.pml && cc -O2 -DSAFETY -o pan pan.c && ./pan      errors: 0
 * Mutants (each must fail): -DNO_RECHECK (no look after announcing), -DDRAIN_LATE (the
 * socket drained after the look, eating a wake-up sent in between), -DNO_FD_WAKE (a waker
 * that only FUTEX_WAKEs: an end of layout version 4), -DNO_REPAIR (a restarted sender does not
 * wake on attaching: a sender that died between its publish and its wake-up loses it).
 */
#ifndef N
#define N 2
#endif
#ifndef MAXCRASH
#define MAXCRASH 1
#endif
#ifndef WCRASH
#define WCRASH 1
#endif
#define INC (MAXCRASH + 1)
#define FD 128              /* CW_WAIT_FD: the top bit of the word (of a byte here) */
#define QMAX 2              /* the socket's queue: a send to a full one is refused with EAGAIN */

byte pub = 0;               /* messages published (the write cursor) */
byte word = 0;              /* the waiting word */
byte tokens = 1;            /* next token (SHARED): distinct from all before, below FD */
byte starts = 0;            /* the fd waiter's place: how many ends have held it */
bool bound[INC];            /* incarnation k's socket exists */
byte sock[INC];             /* bytes in incarnation k's socket */
byte seen[2];               /* messages each waiter has taken (its cursor) */
bool asleep = false;        /* SHARED: the futex sleeper is queued in the kernel */
bool waker_done = false;

/* A crash of the waker here, if it may still crash: a new sender takes its place. */
#define WCRASHPOINT if :: crashes < WCRASH -> crashes++; goto restart :: true fi

/* A publish's wake-up: exchange to 0, then FUTEX_WAKE and the wake byte as the value says. */
inline wake(old, k) {
    atomic { old = word; word = 0 };
    WCRASHPOINT;
    if
    :: (old & (FD - 1)) != 0 -> asleep = false       /* FUTEX_WAKE */
    :: else -> skip
    fi;
    WCRASHPOINT;
#ifndef NO_FD_WAKE
    if
    :: (old & FD) != 0 -> send(k)
    :: else -> skip
    fi
#endif
}

/* sendto(the name of the fd waiter's place, with its starts read now), non-blocking. */
inline send(k) {
    atomic {
        k = starts;
        if
        :: bound[k] && sock[k] < QMAX -> sock[k]++
        :: else -> skip                               /* ECONNREFUSED, or EAGAIN: readable */
        fi
    }
}

active proctype waker() {
    byte old, k, crashes = 0;
    do
    :: pub < N ->
        pub++;                                        /* store the cursor */
        WCRASHPOINT;
        wake(old, k)
    :: pub == N -> break
    od;
    goto done;
restart:
    /* A new sender on the place (ring_attach): the dead one may have died between a publish
       and its wake-up, so it wakes every waiter, whatever the word says. */
#ifndef NO_REPAIR
    atomic { word = 0; asleep = false };
    send(k);
#endif
    do
    :: pub < N -> pub++; wake(old, k)
    :: else -> break
    od;
done:
    waker_done = true
}

/* A crash of the fd waiter here, if it may still crash. */
#define CRASHPOINT if :: crashes < MAXCRASH -> goto crash :: true fi

/* The user's loop on the descriptor of the fd waiter, incarnation after incarnation. */
active proctype fdwaiter() {
    byte k, expect, crashes = 0;
    bool armed;
new_end:
    atomic {
        k = starts;
        bound[k] = true;
        sock[k] = 1;                                  /* fileno(): readable at first */
        armed = false
    };
    do
    :: seen[0] == N -> break
    :: else ->
        CRASHPOINT;
        if
        :: seen[0] < pub -> seen[0] = pub             /* try_recv() takes */
        :: else ->
            /* a miss: ring_fd_arm() */
#ifndef DRAIN_LATE
            sock[k] = 0;                              /* drain */
            CRASHPOINT;
#endif
            if
            :: armed && word == expect -> skip        /* armed already: no waker came since */
            :: else ->
                armed = false;
#ifdef SHARED
                atomic {                              /* announce: join with the bit, or a new token */
                    if
                    :: word == 0 -> word = tokens | FD; tokens++
                    :: else -> word = word | FD
                    fi;
                    expect = word
                };
#else
                word = FD; expect = FD;               /* announce: alone on the word */
#endif
                CRASHPOINT;
                if
#ifndef NO_RECHECK
                :: seen[0] < pub ->                   /* the look: found, go on */
#ifndef SHARED
                    word = 0;
#endif
                    skip
#endif
                :: else -> armed = true
                fi
            fi;
#ifdef DRAIN_LATE
            sock[k] = 0;
#endif
            CRASHPOINT;
            if
            :: armed ->
                if
                :: sock[k] > 0                        /* select(): until readable */
                :: crashes < MAXCRASH -> goto crash
                fi
            :: else -> skip
            fi
        fi
    od;
    goto end_done;
crash:
    atomic {
        crashes++;
        bound[k] = false;                             /* its socket goes: bytes and name */
        sock[k] = 0;
        starts++                                      /* a new end on the place */
    };
    goto new_end;
end_done:
    skip
}

#ifdef SHARED
/* A member of another group sleeping in the kernel on the same word (waiting.pml's sharer). */
active proctype sleeper() {
    byte expect;
    do
    :: seen[1] == N -> break
    :: else ->
        if
        :: seen[1] < pub -> seen[1] = pub
        :: else ->
            atomic {
                if
                :: word == 0 -> word = tokens; tokens++
                :: else -> skip
                fi;
                expect = word
            };
            if
            :: seen[1] < pub -> seen[1] = pub
            :: else ->
                atomic {
                    if
                    :: word == expect -> asleep = true
                    :: else -> skip
                    fi
                };
                !asleep
            fi
        fi
    od
}
#endif

/* Every run ends with every message seen by every waiter. */
active proctype check() {
    waker_done;
    (seen[0] == N
#ifdef SHARED
     && seen[1] == N
#endif
    );
}
