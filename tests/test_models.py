"""The SPIN model of the many-senders protocol (docs/models) passes its checks and catches its mutants.

Runs docs/models/check.sh when `spin` and a C compiler are on PATH; skips otherwise.
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


@pytest.mark.model
@pytest.mark.timeout(120)
def test_many_senders_model_passes_its_checks_and_catches_every_mutant():
    if not CHECK.is_file():
        pytest.skip(f"{CHECK} is not in this tree (installed without the docs)")
    if shutil.which("spin") is None:
        pytest.skip("spin (the SPIN model checker) is not on PATH")
    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler (cc, gcc, clang) on PATH")
    proc = subprocess.run(["sh", str(CHECK)], env={**os.environ, "CC": cc},
                          capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 failed" in proc.stdout, proc.stdout
