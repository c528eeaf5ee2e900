"""What the command lines (sample.py, train.py, convert_torch_weights.py, the benches) share:
`--config.key.path=value` overrides next to the argparse flags, and one clear line for any
error (`--debug` shows the traceback instead)."""

import argparse
import atexit
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

PREFIX = "--config."
DEBUG_FLAG = "--debug"
T = TypeVar("T")


def parse_with_overrides(parser: argparse.ArgumentParser, argv: Sequence[str],
                         example: str = "sampling.steps=20") -> tuple[argparse.Namespace, list[str]]:
    """(flags, config overrides as 'key.path=value'); any other unknown argument is a usage error."""
    args, rest = parser.parse_known_args(list(argv))
    bad = [a for a in rest if not a.startswith(PREFIX)]
    if bad:
        parser.error(f"unknown arguments {bad}; config overrides look like {PREFIX}{example}")
    return args, [a.removeprefix(PREFIX) for a in rest]


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """Documents --debug (run_command takes it out of the arguments before parsing)."""
    parser.add_argument(DEBUG_FLAG, action="store_true", help="on an error, show the Python traceback instead of one line")


# raised by our own checks with a message that says what to do; OSErrors name what failed and
# where, MemoryErrors are rewritten with advice (sample.py) or say how much was asked for (numpy)
USER_ERRORS = (ValueError, KeyError, OSError, MemoryError, TypeError)


def error_line(program: str, error: BaseException) -> str:
    """One line: the message of a user error, or the type and message of anything else, with
    the hint to run again with --debug."""
    message = " ".join(str(error.args[0] if isinstance(error, KeyError) and error.args else error).split())
    if isinstance(error, USER_ERRORS) and message:
        return f"{program}: error: {message}"
    return f"{program}: error: {type(error).__name__}: {message or 'no message'} (run again with {DEBUG_FLAG} for the traceback)"


def run_command(main: Callable[[list[str]], T], argv: Sequence[str] | None, program: str) -> T:
    """main(argv without --debug); an exception ends the program with exit status 1 and one line
    on stderr (with --debug: the traceback). argparse's own usage errors (exit 2) pass through."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]
    if debug:
        return main(argv)
    try:
        return main(argv)
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as error:  # noqa: BLE001 - the one place every error becomes one line
        print(error_line(program, error), file=sys.stderr)
        raise SystemExit(1) from None


def exit_at_once() -> NoReturn:
    """Ends a command whose work is done and written (status 0): stdout and stderr flushed and
    the exit handlers run (JAX's, logging's), then the process leaves without Python's teardown
    of the interpreter, which frees every compiled program, array and module one by one: 0.4 s
    of the tiny default's ~3.5 s sample.py run, of no use to a finished process. Only for
    commands with no writes still under way in other threads."""
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(0)
