"""The `gcstudy` command as a user meets it: its version, and a reader that goes away."""

import signal
import subprocess
import sys
from pathlib import Path

import gcstudy

REPO = Path(__file__).resolve().parents[1]
GCSTUDY = [sys.executable, "-m", "gcstudy.cli"]


def test_version_names_the_package_version():
    result = subprocess.run([*GCSTUDY, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"gcstudy {gcstudy.__version__}\n"


def test_a_closed_pipe_ends_the_listing_without_a_traceback():
    """`gcstudy runs ... | head`: the reader closes its end before gcstudy writes (here at
    once, so that the write always fails); gcstudy stops as a program that the pipe's
    signal ended, with nothing on stderr but its own summary lines."""
    child = subprocess.Popen(
        [*GCSTUDY, "runs", "--configfile", str(REPO / "config" / "config.yaml")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    child.stdout.close()
    stderr = child.stderr.read()
    assert child.wait(timeout=120) == 128 + signal.SIGPIPE, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
