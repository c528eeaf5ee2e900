"""The command lines' shared parts: overrides, config checks, one error line with --debug."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from configs import load_config
from configs.command_line import error_line, parse_with_overrides, run_command

ROOT = Path(__file__).parents[2]


def test_overrides_are_split_from_flags_and_other_unknowns_refused(capsys):
    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("--seed", type=int)
    args, overrides = parse_with_overrides(parser, ["--seed", "3", "--config.sampling.steps=4"])
    assert args.seed == 3 and overrides == ["sampling.steps=4"]
    with pytest.raises(SystemExit):
        parse_with_overrides(parser, ["--sede", "3"])
    assert "unknown arguments ['--sede', '3']" in capsys.readouterr().err


def test_an_override_of_the_wrong_type_says_which_type():
    with pytest.raises(ValueError, match=r"sampling.steps=abc: 'abc' is not an int \(the default is 10\)"):
        load_config("configs/tiny.py", ["sampling.steps=abc"])


def test_a_python_file_without_get_config_is_refused(tmp_path):
    other = tmp_path / "notes.py"
    other.write_text("x = 1\n")
    with pytest.raises(ValueError, match="is not a config file"):
        load_config(other)


def test_errors_end_in_one_line_and_debug_shows_the_traceback(capsys):
    def failing(argv):
        raise RuntimeError("boom\nsecond line")

    with pytest.raises(SystemExit) as exit_info:
        run_command(failing, [], "prog")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err == "prog: error: RuntimeError: boom second line (run again with --debug for the traceback)\n"
    with pytest.raises(RuntimeError):
        run_command(failing, ["--debug"], "prog")
    assert error_line("p", FileNotFoundError("no such folder x; convert it first")) == "p: error: no such folder x; convert it first"


@pytest.mark.parametrize("script", ["train.py", "convert_torch_weights.py"])
def test_the_command_lines_report_a_bad_config_in_one_line(script, tmp_path):
    notes = tmp_path / "notes.py"
    notes.write_text("x = 1\n")
    command = {"train.py": ["train", "--data", str(tmp_path), "--workdir", str(tmp_path / "w")],
               "convert_torch_weights.py": ["self-check"]}[script]
    result = subprocess.run([sys.executable, script, *command, "--config", str(notes)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{script}: error: {notes} is not a config file (it defines no get_config()); pass one of {ROOT / 'configs'}/*.py"]


def test_exit_at_once_flushes_output_and_runs_the_exit_handlers(tmp_path):
    """sample.py ends with it: the buffered output and every exit handler's work come out, the
    status is 0, and Python's slow teardown of the interpreter is skipped."""
    marker = tmp_path / "handler_ran"
    script = (f"import atexit, pathlib, sys\nfrom configs.command_line import exit_at_once\n"
              f"atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text('yes'))\n"
              "print('line on stdout'); print('line on stderr', file=sys.stderr)\nexit_at_once()\nprint('never')\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "line on stdout\n" and result.stderr == "line on stderr\n"
    assert marker.read_text() == "yes"
