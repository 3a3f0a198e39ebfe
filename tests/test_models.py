"""The SPIN models of docs/models (many senders, receiver groups, the lifecycle of groups, byte channels,
receiver groups on a byte ring, of one sender and of many, the wake-up of an end waiting on a file descriptor) pass their checks
and catch their mutants.

Runs docs/models/check.sh, one model per test, when `spin` and a C compiler are on PATH; skips otherwise.
"""
import os
import pathlib
import shutil
import subprocess

import pytest

CHECK = pathlib.Path(__file__).resolve().parent.parent / "docs" / "models" / "check.sh"


def _compiler():
    candidates = os.environ.get("CC", "").split()[:1] + ["cc", "gcc", "clang"]
    return next((name for name in candidates if shutil.which(name)), None)


def _check(model, timeout):
    if not CHECK.is_file():
        pytest.skip(f"{CHECK} is not in this tree (installed without the docs)")
    if shutil.which("spin") is None:
        pytest.skip("spin (the SPIN model checker) is not on PATH")
    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler (cc, gcc, clang) on PATH")
    proc = subprocess.run(["sh", str(CHECK), model], env={**os.environ, "CC": cc},
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 failed" in proc.stdout, proc.stdout


@pytest.mark.model
@pytest.mark.timeout(420)
def test_many_senders_model_passes_its_checks_and_catches_every_mutant():
    # about 25 s alone; the margin is for a machine busy with the other models and tests
    _check("many_senders", timeout=400)


@pytest.mark.model
@pytest.mark.timeout(420)
def test_groups_model_passes_its_checks_and_catches_every_mutant():
    # about 45 s alone; the margin is for a loaded machine
    _check("groups", timeout=400)


@pytest.mark.model
@pytest.mark.timeout(600)
def test_lifecycle_model_passes_its_checks_and_fails_on_the_old_steps_and_every_mutant():
    # about 100 s on 2 busy CPUs; the old steps of a54aea3 (findings 1, 3, 6, 9 of the lifecycle
    # review) are among the checks that must fail, and mutants of F (the floor moved once every
    # group has left) too
    _check("lifecycle", timeout=580)


@pytest.mark.model
@pytest.mark.timeout(420)
def test_bytes_model_passes_its_checks_and_catches_every_mutant():
    # about 60 s on 2 busy CPUs: byte channels (B1-B7) with a crash of either end at every step;
    # among the mutants, a new end that does not wake the other end when it takes its place
    _check("bytes", timeout=400)


@pytest.mark.model
@pytest.mark.timeout(600)
def test_bytes_groups_model_passes_its_checks_and_catches_every_mutant():
    # about 3 min on 2 busy CPUs: receiver groups on a byte ring of one sender, claims walking
    # records (a padding always with the message after it) under the claim lock, a crash of any
    # member at every step; among the mutants, a claim ending on a padding and a sender whose
    # room ignores the holds
    _check("bytes_groups", timeout=580)


@pytest.mark.model
@pytest.mark.timeout(900)
def test_bytes_many_groups_model_passes_its_checks_and_catches_every_mutant():
    # about 7 min on 2 busy CPUs: receiver groups on a byte ring of many senders, the senders
    # zeroing the seq words of their claim's headers, the groups stepping over dead claims kept
    # until every group has passed them, a crash of any sender or member at every step; among
    # the mutants, no zeroing, a zeroing after the claim is committed, and a dead claim
    # forgotten once the group furthest on has passed it
    _check("bytes_many_groups", timeout=880)


@pytest.mark.model
@pytest.mark.timeout(300)
def test_fdwake_model_passes_its_checks_and_catches_every_mutant():
    # a few seconds alone: no wake-up is lost to an end waiting on a file descriptor, alone on
    # its word or sharing it with a sleeper in the kernel, whatever step either side crashes
    # at; the mutants (no look after announcing, a drain after the look, a waker of layout 4,
    # no wake-up by a restarted sender) must fail
    _check("fdwake", timeout=280)
