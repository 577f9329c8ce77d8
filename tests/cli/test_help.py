"""Every command-line tool explains every option, shows its default and explains each choice."""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: every file that builds an argument parser is a tool (found, so a new tool is covered without editing this test)
TOOLS = sorted(
    path.relative_to(REPO).as_posix()
    for folder in ("medseg", "scripts", "benchmarks")
    for path in (REPO / folder).rglob("*.py")
    if "ArgumentParser(" in path.read_text(encoding="utf-8")
)
FLAGS = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction, argparse._StoreConstAction,
         argparse._VersionAction, argparse._CountAction)


class _Captured(BaseException):
    """Raised from ``parse_known_args`` to hand the tool's parser to the test (BaseException: nothing catches it)."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__()
        self.parser = parser


def _capture_parser(relative: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser a tool builds when it starts (its ``main`` is called; parsing is intercepted)."""

    def intercept(self, args=None, namespace=None):
        raise _Captured(self)

    path = REPO / relative
    module_name = "_cli_help_" + re.sub(r"\W", "_", relative)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, module_name, module)
    monkeypatch.syspath_prepend(str(path.parent))
    spec.loader.exec_module(module)
    assert hasattr(module, "main"), f"{relative}: a tool should have main(argv)"
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", intercept)
    monkeypatch.setattr(sys, "argv", [str(path)])
    takes_argv = bool(inspect.signature(module.main).parameters)
    with pytest.raises(_Captured) as captured:
        module.main([]) if takes_argv else module.main()
    return captured.value.parser


def test_tools_are_found():
    assert {"medseg/cli/train.py", "medseg/cli/test.py",
            "medseg/cli/predict.py", "medseg/phantom/make.py"} <= set(TOOLS)


@pytest.mark.parametrize("tool", TOOLS)
def test_help_explains_every_option_its_default_and_choices(tool, monkeypatch):
    parser = _capture_parser(tool, monkeypatch)
    formatter = parser._get_formatter()
    groups = parser._mutually_exclusive_groups
    one_of_required = {id(a) for group in groups if group.required for a in group._group_actions}
    problems = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        if not action.help or action.help is argparse.SUPPRESS:
            problems.append(f"{name}: no help text")
            continue
        shown = formatter._expand_help(action)
        if action.choices is not None:
            missing = [str(c) for c in action.choices
                       if not re.search(rf"(?<![\w-]){re.escape(str(c))}(?![\w-])", shown)]
            if missing:
                problems.append(f"{name}: help does not explain the choices {missing}")
        if action.required or id(action) in one_of_required or isinstance(action, FLAGS):
            continue
        if not action.option_strings:
            continue
        if "default" not in shown.lower():
            problems.append(f"{name}: help does not show the default")
        elif "(default: None)" in shown:
            problems.append(f"{name}: default None shown as such; say in words what happens by default")
    assert not problems, f"{tool}:\n" + "\n".join(problems)
