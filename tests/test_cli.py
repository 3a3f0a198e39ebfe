"""python -m cywhip: its help says what each command does and takes."""
import subprocess
import sys


def cli(*args):
    proc = subprocess.run([sys.executable, "-m", "cywhip", *args], capture_output=True, text=True,
                          timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def test_the_command_alone_lists_the_commands_instead_of_an_error():
    rc, out, err = cli()
    assert rc == 2 and err == "", err
    for command in ("demo", "channels", "remove-group", "bench"):
        assert command in out, out
    assert "error:" not in out + err


def test_help_is_plain_text_and_every_option_of_demo_says_what_it_does():
    rc, out, err = cli("--help")
    assert rc == 0 and "``" not in out, out
    rc, out, err = cli("demo", "--help")
    assert rc == 0
    assert "--count COUNT    messages per round" in out, out


def test_bench_only_lists_the_groups_it_accepts():
    rc, out, err = cli("bench", "--help")
    assert rc == 0, err
    text = " ".join(out.split())
    assert "the groups: single send/recv, 32 B;" in text and "Cython API, 32 B, nogil loops" in text, text
