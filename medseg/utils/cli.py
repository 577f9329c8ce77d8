"""Shared command-line conventions: help texts that show every default."""

from __future__ import annotations

import argparse

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
