"""Shared command-line conventions of every medseg tool: help texts that show every default, and uniform errors.

A user error (bad argument, bad config key, missing or corrupt file...) ends the tool with exactly one line on stderr,
``<tool>: error: <file or key>: <what was expected>, got <what was found>`` and exit code 2, never a traceback; the
traceback is shown only with ``--verbose``/``--debug``. Library code raises ``ValueError``/``OSError`` subclasses with
such messages (see ``../shared/STYLE.md`` section 9); the entry points wrap their body in :func:`run_cli`.

Exit codes: 0 success, 1 the tool ran but failed (an exception with an ``exit_code`` attribute such as
:class:`CommandFailed`, e.g. nothing was evaluated or training diverged; also unexpected internal errors), 2 user
error, 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

#: Actions whose value is implied by the flag itself (no default worth printing).
_FLAG_ACTIONS = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction, argparse._VersionAction,
                 argparse._StoreConstAction, argparse._CountAction)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``(default: X)`` after every option's help, keeping the description's own line breaks.

    Unlike :class:`argparse.ArgumentDefaultsHelpFormatter` it says nothing for required options, for flags
    (``store_true`` ...), for a default of None (its meaning, e.g. "all found", belongs in the help text in words) and
    for options whose help already states the default (a help text containing ``default`` is taken to explain it).
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            action.required
            or isinstance(action, _FLAG_ACTIONS)
            or action.default is argparse.SUPPRESS
            or action.default is None
            or "default" in text.lower()
            or not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))
        ):
            return text
        default = action.default
        if isinstance(default, (list, tuple)):
            shown = " ".join(str(v) for v in default) if default else "none"
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})"


#: Exceptions that describe bad input: reported as one line, exit code 2.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)
EXIT_USER_ERROR = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class UnsupportedInput(NotImplementedError, ValueError):
    """A value that the published code refuses with ``NotImplementedError`` (e.g. ``--data_setting 41``, a dataset
    other than ACDC): still a ``NotImplementedError`` for callers written against the original, and a ``ValueError``
    so that :func:`run_cli` reports it as a user error (exit code 2). ``NotImplementedError`` as such is not a user
    error: it also marks real gaps in the code."""


class CommandFailed(Exception):
    """The tool ran but did not achieve its purpose (reported as one line with ``exit_code``, default 1)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _OneLineErrorParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line: ``<prog>: error: <message> (see <prog> --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


#: The parser every medseg tool builds (the name tools use; tests find tools by it).
ArgumentParser = _OneLineErrorParser


def one_line(message: object) -> str:
    """``message`` as a single line (newlines and runs of blanks collapsed)."""
    return " ".join(str(message).split())


def describe(err: BaseException) -> str:
    """The one-line text of an exception; ``KeyError`` loses its quotes, an empty message becomes the type name."""
    text = err.args[0] if isinstance(err, KeyError) and err.args else err
    return one_line(text) or type(err).__name__


def report_error(tool: str, err: BaseException, show_traceback: bool) -> None:
    """Print the traceback (only if asked) and then the one error line."""
    if show_traceback:
        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
    print(f"{tool}: error: {describe(err)}", file=sys.stderr)


def run_cli(tool: str, body: Callable[[], int], show_traceback: bool = False, debug_flag: str = "--verbose") -> int:
    """Run the body of a command and turn every exception into one error line and an exit code.

    Args:
        tool: name printed in front of the message (the console-script or file name).
        body: the command; returns its exit code.
        show_traceback: print the traceback before the error line (``--verbose``/``--debug``).
        debug_flag: the tool's flag that shows tracebacks (named in the message of unexpected errors).

    Returns:
        The body's exit code, 2 for a user error, ``CommandFailed.exit_code``, 1 for an unexpected error, 130 for
        Ctrl-C.
    """
    try:
        return body()
    except KeyboardInterrupt:
        print(f"{tool}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except USER_ERRORS as err:
        report_error(tool, err, show_traceback)
        return int(getattr(err, "exit_code", EXIT_USER_ERROR))
    except Exception as err:  # noqa: BLE001 - still one line; the traceback behind the debug flag
        if isinstance(getattr(err, "exit_code", None), int):  # an expected failure (CommandFailed, TrainingDiverged)
            report_error(tool, err, show_traceback)
            return int(err.exit_code)  # type: ignore[attr-defined]
        if show_traceback:
            traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
        print(f"{tool}: error: unexpected {type(err).__name__}: {describe(err)} (run again with {debug_flag} for the "
              "traceback and report it)", file=sys.stderr)
        return EXIT_FAILED
