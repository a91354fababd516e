"""What the CLI tests share: run ``python -m fercore ARGV`` in-process, and read its one-line error."""
from __future__ import annotations

from fercore.cli import main


def cli(capsys, *argv) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``python -m fercore ARGV``, argparse's own errors included."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    """The single ``error: ...`` line a bad input must give, with no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]
