"""README.md and ``--help`` say the same thing, and the README's commands run as written.

Everything checked is read from the README, so a flag, key or command added to it later is
checked too: each ``rdmd`` command in its bash blocks is parsed by the real argparse parser
(flags exist, values have their types, required arguments are there), its ``--set`` keys and
``--config`` files are valid config for that command, the paths it reads exist or are written
by an earlier README command (``my_*`` names the reader's own data), and the venv is active
(or named) wherever a bare ``rdmd``/``python``/``torchrun`` runs. The config defaults the
README states are the dataclasses' defaults, and the dedicated flags' help states them too.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from rdmd import costs
from rdmd.cli import build_parser
from rdmd.config import (
    KIND_DEFAULTS,
    DistillConfig,
    TeacherConfig,
    build_config,
    parse_overrides,
    read_config_file,
)
from rdmd.errors import RdmdError

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CONFIG_OF = {"train-teacher": TeacherConfig, "distill": DistillConfig}
VENV_PROGRAMS = ("rdmd", "python", "torchrun", "pip", "pytest")  # python3 makes the venv
ACTIVATE = "source .venv/bin/activate"
#: arguments that name something to read: it must exist, or be written earlier in the README
READS = ("model", "teacher", "input", "translated", "domain_classifier", "config")
#: arguments that name something written
WRITES = ("out", "output", "json")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    ap = build_parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _bash_blocks() -> list[tuple[int, str]]:
    """(offset in the README, text) of each bash code block."""
    return [(m.start(), m.group(1)) for m in re.finditer(r"```bash\n(.*?)```", README, re.S)]


def _commands(block: str) -> list[list[str]]:
    """Each command of a block as tokens: continuation lines joined, comments dropped, split
    at ``&&``, ``;`` and ``|``."""
    out: list[list[str]] = []
    for line in block.replace("\\\n", " ").splitlines():
        cmd: list[str] = []
        for tok in shlex.split(line, comments=True):
            if tok in ("&&", ";", "|", "||"):
                out.append(cmd)
                cmd = []
            else:
                cmd.append(tok)
        out.append(cmd)
    return [c for c in out if c]


def _rdmd_args(cmd: list[str]) -> list[str] | None:
    """The arguments of an ``rdmd`` command (bare, from the venv, or ``-m rdmd.cli`` under
    python or torchrun); ``None`` for any other program."""
    if Path(cmd[0]).name == "rdmd":
        return cmd[1:]
    if "-m" in cmd and cmd[cmd.index("-m") + 1:cmd.index("-m") + 2] == ["rdmd.cli"]:
        return cmd[cmd.index("-m") + 2:]
    return None


def _all_commands() -> list[tuple[int, list[str]]]:
    return [(off, c) for off, block in _bash_blocks() for c in _commands(block)]


def _rdmd_commands() -> list[tuple[int, list[str]]]:
    return [(off, args) for off, c in _all_commands() if (args := _rdmd_args(c)) is not None]


def _parse(args: list[str], capsys: pytest.CaptureFixture[str]) -> argparse.Namespace:
    try:
        return build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"README command `rdmd {shlex.join(args)}` does not parse: "
                    f"{capsys.readouterr().err.strip().splitlines()[-1]}")


def test_the_readme_has_rdmd_commands() -> None:
    cmds = {a[0] for _, a in _rdmd_commands()}
    assert {"train-teacher", "distill", "translate", "evaluate"} <= cmds


def test_every_readme_command_parses(capsys: pytest.CaptureFixture[str]) -> None:
    for _, args in _rdmd_commands():
        _parse(args, capsys)


def test_readme_set_keys_and_config_files_are_valid(capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    for _, args in _rdmd_commands():
        ns = _parse(args, capsys)
        cls = CONFIG_OF.get(ns.command)
        conf = getattr(ns, "config", None)
        if conf is not None:
            assert (ROOT / conf).is_file(), f"`rdmd {shlex.join(args)}`: no file {conf}"
        if cls is None:
            continue
        try:
            build_config(cls, read_config_file(ROOT / conf) if conf else {},
                         parse_overrides(ns.set))
        except RdmdError as e:
            pytest.fail(f"`rdmd {shlex.join(args)}`: {e}")


def test_set_keys_in_the_prose_exist() -> None:
    keys = {f for cls in CONFIG_OF.values() for f in cls.__dataclass_fields__}
    named = set(re.findall(r"--set (\w+)=", README)) - {"key"}  # `--set key=value`: generic
    assert named, "the README shows no --set example"
    assert named <= keys, f"--set keys the config does not have: {sorted(named - keys)}"


def test_flags_in_the_prose_exist() -> None:
    flags = {o for p in _subparsers().values() for a in p._actions for o in a.option_strings}
    named = set(re.findall(r"`(--[a-z][a-z0-9-]*)", README))
    assert named, "the README names no flag"
    assert named <= flags, f"flags no sub-command has: {sorted(named - flags)}"


def test_what_readme_commands_read_exists_or_was_written_before(
        capsys: pytest.CaptureFixture[str]) -> None:
    written: set[str] = set()
    for _, cmd in _all_commands():
        args = _rdmd_args(cmd)
        if args is None:  # a helper line, e.g. python -c "... np.save('x.npy', ...)"
            written |= set(re.findall(r"['\"]([\w./-]+\.npy)['\"]", " ".join(cmd)))
            continue
        ns = _parse(args, capsys)
        for key in READS:
            value = getattr(ns, key, None)
            if value is None or Path(value).parts[0].startswith("my_"):
                continue
            path = value.rstrip("/")
            ok = (ROOT / path).exists() or any(path == w or path.startswith(w + "/")
                                                for w in written)
            assert ok, f"`rdmd {shlex.join(args)}` reads {value}, which nothing before writes"
        written |= {getattr(ns, k).rstrip("/") for k in WRITES if getattr(ns, k, None)}
        if ns.command == "demo":
            written.add(ns.out)


def test_bare_commands_come_after_the_venv_is_activated() -> None:
    """Set-up names ``.venv/bin/...``; every bare ``rdmd``, ``python``, ``torchrun`` runs
    after the README says to activate the venv."""
    first = README.find(ACTIVATE)
    for off, cmd in _all_commands():
        if cmd[0] in VENV_PROGRAMS:
            assert 0 <= first < off, (f"`{shlex.join(cmd)}` runs outside the venv: activate it "
                                      f"before (`{ACTIVATE}`) or write .venv/bin/{cmd[0]}")


# -- the config keys the README documents -------------------------------------------------------

def _paragraph(start: str, end: str) -> str:
    i = README.index(start)
    return README[i:README.index(end, i)]


def _default(cls: type, key: str) -> Any:
    value = getattr(cls(), key)
    if value is None:
        value = KIND_DEFAULTS[cls.__name__]["vector"].get(key)
    return value


def _same(readme: str, value: Any) -> bool | None:
    """Whether the README's value equals ``value``; ``None`` when the README states none."""
    readme = readme.strip("`")
    if isinstance(value, bool):
        return readme == str(value).lower() if readme in ("true", "false") else None
    if isinstance(value, int | float):
        try:
            return float(readme) == float(value)
        except ValueError:
            return None
    if isinstance(value, str):
        return readme == value if re.fullmatch(r"[\w.:-]+", readme) else None
    return None


@pytest.mark.parametrize("cls,start,end", [
    (TeacherConfig, "Teacher (`rdmd.config.TeacherConfig`)", "Distillation (`"),
    (DistillConfig, "Distillation (`rdmd.config.DistillConfig`)", "Both loss terms"),
])
def test_config_keys_and_defaults_in_the_readme(cls: type, start: str, end: str) -> None:
    text = _paragraph(start, end)
    fields = set(cls.__dataclass_fields__)
    seen = 0
    for m in re.finditer(r"`([a-z][a-z0-9_]*)`(?:/`([a-z][a-z0-9_]*)`)?\s+([^\s,;]+)", text):
        names = [n for n in m.groups()[:2] if n]
        values = m.group(3).split("/") if len(names) == 2 else [m.group(3)]
        for name, value in zip(names, values, strict=False):
            if name not in fields:
                # a value of the key before (e.g. cost `l2`) is followed by prose, not a value
                assert _same(value, 0) is None, f"{cls.__name__} has no key {name!r}"
                continue
            same = _same(value, _default(cls, name))
            assert same is not False, (f"README: {name} {value}, but {cls.__name__} default "
                                       f"is {_default(cls, name)!r}")
            seen += same is True
    assert seen >= 8, f"only {seen} defaults found in the README's {cls.__name__} paragraph"


# -- help texts --------------------------------------------------------------------------------

def _help(command: str, dest: str) -> str:
    act = next(a for a in _subparsers()[command]._actions if a.dest == dest)
    return " ".join((act.help or "").split())


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def test_dedicated_flags_show_their_config_default() -> None:
    """The flags the README calls dedicated (``--steps``, ``--lam``...) state the default of
    their config key in ``--help``, and it is the config's."""
    para = _paragraph("the dedicated flags", ")")
    flags = re.findall(r"`--([a-z][a-z0-9-]*)`", para)
    assert "lam" in flags
    for command, cls in CONFIG_OF.items():
        for flag in flags:
            dest = flag.replace("-", "_")
            if dest not in cls.__dataclass_fields__ or all(
                    dest != a.dest for a in _subparsers()[command]._actions):
                continue
            default = _default(cls, dest)
            text = _help(command, dest)
            assert f"default {_fmt(default)}" in text, (
                f"rdmd {command} --{flag}: help {text!r} does not state the default "
                f"{_fmt(default)}")


def test_every_help_default_is_the_config_default() -> None:
    for command, cls in CONFIG_OF.items():
        for act in _subparsers()[command]._actions:
            if act.dest not in cls.__dataclass_fields__:
                continue
            for said in re.findall(r"default:? ([\w.+-]+)", act.help or ""):
                assert _same(said, _default(cls, act.dest)) is not False, (
                    f"rdmd {command} --{act.dest}: help says default {said}, config "
                    f"{_default(cls, act.dest)!r}")


def test_cost_help_lists_every_cost() -> None:
    unique = {}
    for name, fn in costs.COSTS.items():  # aliases (the same function) once
        unique.setdefault(fn, name)
    with pytest.raises(RdmdError) as e:
        costs.get_cost("no-such-cost")
    parametric = re.findall(r"(\w+):<", str(e.value))
    assert parametric, "costs.get_cost's message lists no parametric cost"
    text = _help("distill", "cost")
    for name in [*unique.values(), *(p + ":" for p in parametric)]:
        assert name in text, f"--cost help does not list {name}: {text!r}"


@pytest.mark.parametrize("command,dest", [("train-teacher", "target"), ("distill", "source"),
                                          ("distill", "target")])
def test_data_flags_say_they_take_folders(command: str, dest: str) -> None:
    assert "folder" in _help(command, dest)
