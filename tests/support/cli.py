"""Run ``downbeat`` in process, as the console script would, for CLI tests."""

import signal

from metronome.cli import main


def run_main(argv, capsys):
    """Run ``downbeat ARGV`` in process; return ``(exit code, stdout, stderr)``.

    ``main`` sets SIGPIPE and SIGINT handlers for a console process; they are restored so the test process keeps
    Python's behaviour.
    """
    old = signal.getsignal(signal.SIGPIPE), signal.getsignal(signal.SIGINT)
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        signal.signal(signal.SIGPIPE, old[0])
        signal.signal(signal.SIGINT, old[1])
    out, err = capsys.readouterr()
    return code, out, err
