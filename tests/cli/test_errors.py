"""How the ``refvit`` command reports errors: user mistakes in one line (exit 2), bugs with
their traceback and how to report them (exit 1)."""
import errno
import os
import subprocess
import sys

import numpy as np
import pytest

from refvit import UserError, UserTypeError, cli
from refvit.errors import user_message
from refvit.train.commands import common


def _run_with(monkeypatch, error, command="models"):
    """``refvit COMMAND`` whose run raises ``error``."""
    module = __import__(cli.COMMANDS[command][0], fromlist=["run_from_args"])

    def run_from_args(args):
        raise error

    monkeypatch.setattr(module, "run_from_args", run_from_args)
    return cli.main([command])


def test_user_error_types():
    assert issubclass(UserError, ValueError) and issubclass(UserTypeError, TypeError)
    assert issubclass(UserTypeError, UserError)


@pytest.mark.parametrize("error", [UserError("models: the folder x is empty"), UserTypeError("--x must be a number"),
                                   OSError(errno.ENOSPC, "No space left on device", "/runs/a/log.csv")])
def test_user_errors_are_one_line_exit_2(monkeypatch, capsys, error):
    assert _run_with(monkeypatch, error) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("refvit models: error: ") and "Traceback" not in err[0]
    assert not err[0].startswith("refvit models: error: models:")  # the command's name is not repeated


def test_os_errors_name_the_file():
    assert user_message(OSError(errno.EROFS, "Read-only file system", "/r/c.npz")) == \
        "/r/c.npz cannot be written: the file system is read-only"
    assert user_message(FileExistsError(errno.EEXIST, "File exists", "/r")) == "/r already exists"
    assert user_message(OSError(errno.EIO, "Input/output error", "/r")) is None  # not the user's to fix
    assert user_message(FileNotFoundError(errno.ENOENT, "No such file")) is None  # no file named


@pytest.mark.parametrize("error", [ValueError("models: looks like a check but raised deep inside"),
                                   KeyError("array0"), RuntimeError("kernel failed"), TypeError("bad call"),
                                   AttributeError("'NoneType' object has no attribute 'x'"),
                                   ZeroDivisionError("division by zero")])
def test_anything_else_is_a_bug_with_traceback_exit_1(monkeypatch, capsys, error):
    assert _run_with(monkeypatch, error) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and type(error).__name__ in err
    assert err.strip().splitlines()[-1].startswith("refvit models: this is a bug in refvit; please report it with "
                                                   "the command line and the traceback above")


def test_a_commands_own_check_is_a_user_error(capsys):
    assert cli.main(["check", "no_such_op"]) == 2  # check.py raises ValueError("check: ...") itself
    assert capsys.readouterr().err.startswith("refvit check: error: unknown op(s) no_such_op")


def test_a_check_raised_deeper_is_a_bug(monkeypatch, capsys):
    from refvit import check

    def deep(*args):
        return np.zeros(2).reshape(3)  # NumPy's ValueError, from a frame outside refvit.check

    monkeypatch.setattr(check, "run_from_args", lambda args: deep())
    assert cli.main(["check", "gelu"]) == 1
    assert "this is a bug in refvit" in capsys.readouterr().err


def test_argparse_errors_are_one_line(capsys):
    assert cli.main(["train", "--epochs", "x"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["refvit train: error: argument --epochs: invalid int value: 'x' (see refvit train --help)"]
    assert cli.main(["nope"]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1
    assert cli.main(["models", "--help"]) == 0


def test_keyboard_interrupt(monkeypatch, capsys):
    assert _run_with(monkeypatch, KeyboardInterrupt()) == 130
    assert capsys.readouterr().err == "refvit models: interrupted\n"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), -1.0, 0.0, True, "1", None])
def test_check_number_refuses_non_finite_and_wrong_types(value):
    with pytest.raises(UserError, match="train: '--lr' must be a number > 0.0; got"):
        common.check_number("train", "--lr", value, 0.0, strictly=True)


def test_check_number_accepts_huge_integers_and_finite_reals():
    assert common.check_number("train", "--epochs", 10**30, 1, integer=True) == 10**30
    assert common.check_number("train", "--lr", 1e300, 0.0, strictly=True) == 1e300


def test_check_backend_names_the_flag(monkeypatch):
    assert common.check_backend("eval", "numpy") == "numpy"
    with pytest.raises(UserError, match="eval: '--backend' must be one of numpy, cpu, cuda; got 'gpu'"):
        common.check_backend("eval", "gpu")
    monkeypatch.setattr("refvit.backend.cuda_available", lambda: False)
    with pytest.raises(UserError, match="eval: '--backend cuda' needs numba-cuda and a CUDA GPU, or the simulator"):
        common.check_backend("eval", "cuda")


def test_unknown_model_and_family_are_user_errors(capsys):
    with pytest.raises(UserError, match="train: unknown model 'nope'; available: "):
        common.check_model_name("train", "nope")
    assert cli.main(["models", "--family", "nope"]) == 2
    assert capsys.readouterr().err.startswith("refvit models: error: unknown family 'nope'; families: ")


def test_refvit_backend_variable_is_named(tmp_path):
    code = ("import numpy as np\nfrom refvit import ops\ntry:\n    ops.gelu.forward(np.ones(2))\n"
            "except ValueError as error:\n    print(type(error).__name__, error)\n")
    env = {**os.environ, "REFVIT_BACKEND": "gpu"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                            cwd=tmp_path)
    assert result.stdout.strip() == ("UserError the environment variable REFVIT_BACKEND='gpu' is not a backend; use "
                                     "numpy, cpu or cuda (it sets the default backend and is read when refvit is "
                                     "imported)"), result.stderr


def test_explicit_backend_overrides_a_bad_variable(monkeypatch):
    from refvit import backend

    monkeypatch.setattr(backend, "_ENVIRONMENT_VALUE", "gpu")
    with backend.use_backend("numpy"):
        assert backend.get_backend() == "numpy"
    token = backend._default.set("gpu")
    try:
        with pytest.raises(UserError, match="REFVIT_BACKEND='gpu'"):
            backend.get_backend()
    finally:
        backend._default.reset(token)


def test_help_of_every_command_is_one_status(capsys):
    for command in cli.COMMANDS:
        assert cli.main([command, "--help"]) == 0


def test_cuda_missing_is_a_user_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("refvit.backend.cuda_available", lambda: False)
    argv = ["train", "--backend", "cuda", "--epochs", "1", "--limit-batches", "1", "--out", str(tmp_path / "o"),
            "--quiet"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "'--backend cuda' needs numba-cuda" in err[0]


def test_a_builtin_error_from_inside_a_command_is_a_bug(monkeypatch, capsys):
    from refvit import backend

    def deep(args):
        backend.require_cuda("gelu")  # an op's check deep in a run: the run never asked for cuda, a bug

    monkeypatch.setattr("refvit.backend.cuda_available", lambda: False)
    monkeypatch.setattr(__import__("refvit.train.commands.models", fromlist=["x"]), "run_from_args", deep)
    assert cli.main(["models"]) == 1
    assert "this is a bug in refvit" in capsys.readouterr().err
