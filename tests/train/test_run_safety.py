"""Training never loses work: divergence, the output folder's lock, resume's settings rule, --out problems."""
import errno
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from refvit import cli
from refvit.errors import UserError
from refvit.models import _registry, list_models
from refvit.train import NonFiniteLossError, load_checkpoint
from refvit.train import loop as loop_module
from refvit.train import out_dir as out_dir_module
from refvit.train.out_dir import LOCK_NAME, hold_output_folder
from tests.train.test_fit import break_second_checkpoint_write, make_run, run_fit
from tests.train.tiny_model import tiny_net

TINY = "tinynet_test"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def tiny_registered(monkeypatch):
    monkeypatch.setitem(_registry._MODELS, TINY, _registry.ModelInfo(TINY, "testfamily", tiny_net, 16, "test net"))
    list_models()


@pytest.fixture(scope="module")
def shapes():
    from refvit.data import make_shapes

    return make_shapes(40, size=16, seed=0), make_shapes(12, size=16, seed=1)


def tiny_argv(out, *extra):
    return ["train", "--model", TINY, "--dataset", "shapes", "--epochs", "2", "--batch-size", "16",
            "--limit-batches", "2", "--backend", "numpy", "--out", str(out), "--quiet", *extra]


def one_line_error(capsys, argv):
    """The error line of a command that must fail with status 2 (after any finished epochs' lines)."""
    assert cli.main(argv) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("epoch ")]
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def files_of(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def dead_pid():
    """A pid no process has (a finished child's)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -- divergence ------------------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("error::RuntimeWarning")  # the error line is all: no NumPy overflow warnings
def test_the_issues_diverging_command_stops_before_writing_and_keeps_epoch_1(tmp_path, capsys):
    out = tmp_path / "diverge"
    line = one_line_error(capsys, ["train", "--lr", "1e3", "--warmup-epochs", "0", "--epochs", "8",
                                   "--limit-batches", "1", "--batch-size", "32", "--backend", "numpy",
                                   "--out", str(out), "--quiet"])
    assert line.startswith("refvit train: error: training diverged in epoch 2: "), line
    assert "not finite (first: " in line and f"the checkpoint of epoch 1 is kept in {out}" in line
    state = load_checkpoint(out / "checkpoint.npz")
    assert state["epoch"] == 1
    assert all(np.isfinite(value).all() for value in state["model"].values())
    assert all(np.isfinite(value).all() for slots in state["optimizer"]["state"].values()
               for value in slots.values() if isinstance(value, np.ndarray))
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 1
    assert (out / "log.csv").read_text().count("\n") == 2
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "log.csv", "metrics.json"]  # lock released, no temp file


def _poison_after_step(monkeypatch, optimizer, at_step, poison):
    original = type(optimizer).step
    steps = []

    def step(self):
        original(self)
        steps.append(1)
        if len(steps) == at_step:
            poison(self)

    monkeypatch.setattr(type(optimizer), "step", step)


def test_a_nonfinite_weight_after_the_last_step_of_an_epoch_is_caught_before_the_checkpoint(
        shapes, tmp_path, monkeypatch):
    run = make_run(shapes)
    batches = len(run[1])
    model, optimizer = run[0], run[3]
    _poison_after_step(monkeypatch, optimizer, 2 * batches,  # the last step of epoch 2: its loss was finite
                       lambda _: model.head.weight.data.__setitem__((0, 0), np.inf))
    with pytest.raises(NonFiniteLossError) as caught:
        run_fit(run, tmp_path)
    assert str(caught.value) == (
        f"training diverged in epoch 2: 1 of {len(model.state_dict())} weight tensors are not finite (first: "
        f"head.weight); the checkpoint of epoch 1 is kept in {tmp_path / 'checkpoint.npz'} (try a lower learning "
        f"rate or gradient clipping)")
    assert load_checkpoint(tmp_path / "checkpoint.npz")["epoch"] == 1
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs"] == 1


def test_a_nonfinite_optimizer_state_is_caught(shapes, tmp_path, monkeypatch):
    run = make_run(shapes)
    model, optimizer = run[0], run[3]

    def poison(opt):
        opt.state[id(model.stem.weight)]["exp_avg_sq"][0, 0, 0, 0] = np.nan

    _poison_after_step(monkeypatch, optimizer, len(run[1]), poison)  # the last step of epoch 1
    with pytest.raises(NonFiniteLossError, match=r"training diverged in epoch 1: 1 of \d+ optimizer state arrays "
                                                 r"are not finite \(first: exp_avg_sq of stem.weight\); no "
                                                 r"checkpoint was written yet"):
        run_fit(run, tmp_path)
    assert sorted(os.listdir(tmp_path)) == []


def test_a_nonfinite_evaluation_loss_is_caught(shapes, tmp_path):
    run = make_run(shapes)
    run[0].poison_after = len(run[1])  # every training forward of epoch 1 is finite, the first test batch is not
    with pytest.raises(NonFiniteLossError, match="training diverged in epoch 1: the evaluation loss is nan; no "
                                                 "checkpoint was written yet"):
        run_fit(run, tmp_path)


def test_divergence_is_a_user_error():
    assert issubclass(NonFiniteLossError, UserError) and issubclass(NonFiniteLossError, RuntimeError)


# -- the output folder's lock ----------------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from refvit.train.out_dir import hold_output_folder
    with hold_output_folder(sys.argv[1]):
        print("holding", flush=True)
        time.sleep(60)
""")


def test_a_second_run_into_a_held_folder_is_refused_then_a_killed_holders_lock_is_taken_over(
        tiny_registered, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": ROOT})
    try:
        assert holder.stdout.readline().strip() == "holding"
        line = one_line_error(capsys, tiny_argv(out))
        assert line.startswith(f"refvit train: error: --out {out} is in use by process {holder.pid} on "
                               f"{socket.gethostname()} since "), line
        assert line.endswith("wait for that run to finish, or choose another --out")
        assert sorted(os.listdir(out)) == [LOCK_NAME]  # nothing of the holder's was touched
    finally:
        holder.kill()  # SIGKILL: the lock stays behind, stale
        holder.wait()
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == holder.pid
    assert cli.main(tiny_argv(out)) == 0
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "log.csv", "metrics.json"]


def test_a_stale_lock_is_taken_over_and_killed_writes_temp_files_are_cleared(tiny_registered, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    pid = dead_pid()
    (out / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": 0}))
    (out / ".checkpoint.npz.k2j4_x9q.tmp").write_bytes(b"PK\x03\x04 half")
    (out / ".metrics.json.abcdefgh.tmp").write_bytes(b"{")
    (out / "notes.tmp").write_text("mine")  # not a temporary file of a write: left alone
    assert cli.main(tiny_argv(out)) == 0
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "log.csv", "metrics.json", "notes.tmp"]


def test_a_lock_from_another_host_is_refused_naming_the_file(tiny_registered, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": 4242, "host": "elsewhere.example", "started": 0}))
    line = one_line_error(capsys, tiny_argv(out))
    assert "is in use by process 4242 on elsewhere.example" in line
    assert f"remove its lock file {out / LOCK_NAME}" in line


def test_an_unreadable_lock_being_written_is_refused_and_an_old_one_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text("")
    with pytest.raises(UserError, match="is being taken by another process"):
        with hold_output_folder(tmp_path):
            pass
    os.utime(tmp_path / LOCK_NAME, (0, 0))  # written long ago by a process killed before it wrote its facts
    with hold_output_folder(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()


def test_the_lock_is_released_on_an_exception_and_on_keyboard_interrupt(shapes, tmp_path):
    batches = len(make_run(shapes)[1])
    with pytest.raises(KeyboardInterrupt):
        run_fit(make_run(shapes, stop_at=batches + 1), tmp_path / "a")
    assert sorted(os.listdir(tmp_path / "a")) == ["checkpoint.npz", "log.csv", "metrics.json"]
    run = make_run(shapes)
    run[0].poison_after = 0
    with pytest.raises(NonFiniteLossError):
        run_fit(run, tmp_path / "b")
    assert not (tmp_path / "b").exists()  # created by the run, left empty: removed


def test_holding_is_reentrant_in_one_process(tmp_path):
    with hold_output_folder(tmp_path):
        with hold_output_folder(tmp_path):
            assert (tmp_path / LOCK_NAME).exists()
        assert (tmp_path / LOCK_NAME).exists()
    assert not (tmp_path / LOCK_NAME).exists()


# -- --out problems, before any training -----------------------------------------------------------------------

def _no_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(loop_module, "_train_epoch", fail)


def test_out_naming_a_file_or_an_uncreatable_folder(tiny_registered, tmp_path, capsys, monkeypatch):
    _no_training(monkeypatch)
    (tmp_path / "file").write_text("x")
    assert one_line_error(capsys, tiny_argv(tmp_path / "file")) == \
        f"refvit train: error: --out {tmp_path / 'file'} is a file, not a folder; choose a folder for the run's files"
    line = one_line_error(capsys, tiny_argv(tmp_path / "file" / "run"))
    assert line.startswith(f"refvit train: error: --out {tmp_path / 'file' / 'run'} cannot be created: "), line
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("number, reason", [(errno.EROFS, "the file system is read-only"),
                                            (errno.EACCES, "cannot be accessed (permission denied)")])
def test_an_unwritable_existing_folder_is_refused_before_the_first_epoch(
        tiny_registered, tmp_path, capsys, monkeypatch, number, reason):
    _no_training(monkeypatch)
    original = os.open

    def refuse(path, flags, *args):
        if os.path.basename(path) == LOCK_NAME:
            raise OSError(number, os.strerror(number), path)
        return original(path, flags, *args)

    monkeypatch.setattr(out_dir_module.os, "open", refuse)
    assert one_line_error(capsys, tiny_argv(tmp_path)) == \
        f"refvit train: error: --out {tmp_path} cannot be written: {reason}"


def test_a_full_disk_during_a_checkpoint_write_keeps_the_previous_checkpoint(
        tiny_registered, tmp_path, capsys, monkeypatch):
    break_second_checkpoint_write(monkeypatch, OSError(errno.ENOSPC, "No space left on device"), b"PK\x03\x04 part")
    out = tmp_path / "run"
    line = one_line_error(capsys, tiny_argv(out))
    assert line.startswith("refvit train: error: epoch 2 could not be saved: "), line
    assert str(out / "checkpoint.npz") in line and "the disk is full" in line
    assert line.endswith(f"the checkpoint of epoch 1 is kept in {out / 'checkpoint.npz'}")
    assert load_checkpoint(out / "checkpoint.npz")["epoch"] == 1
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 1
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "log.csv", "metrics.json"]


# -- resume: the checkpoint's settings rule --------------------------------------------------------------------

def test_resume_refuses_changed_flags_with_the_list_of_differences(tiny_registered, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(tiny_argv(out, "--epochs", "1", "--lr", "0.002", "--seed", "0")) == 0
    capsys.readouterr()
    before = files_of(out)
    line = one_line_error(capsys, tiny_argv(out, "--epochs", "1", "--lr", "0.01", "--seed", "3", "--resume"))
    assert line == (f"refvit train: error: --resume: the run in {out} was started with --lr 0.002 and --seed 0; "
                    f"this command gives --lr 0.01 and --seed 3. Drop these flags to resume the run as it was, "
                    f"or choose another --out for a new run")
    for flags, shown in ((["--weight-decay", "0.1"], "--weight-decay 0.05"),
                         (["--warmup-epochs", "0"], "--warmup-epochs 1"),
                         (["--label-smoothing", "0.1"], "--label-smoothing 0"),
                         (["--clip-grad", "1"], "--clip-grad off"),
                         (["--dataset", "digits"], "--dataset shapes"),
                         (["--epochs", "5"], "--epochs 1"),
                         (["--limit-batches", "3"], "--limit-batches 2"),
                         (["--batch-size", "8"], "--batch-size 16")):
        argv = ["train", "--out", str(out), "--resume", "--quiet", *flags]
        line = one_line_error(capsys, argv)
        assert line.startswith(f"refvit train: error: --resume: the run in {out} was started with {shown}; "), line
    assert files_of(out) == before


def test_resume_takes_the_checkpoints_settings_and_ends_like_a_run_never_stopped(
        tiny_registered, tmp_path, capsys, monkeypatch):
    straight = tmp_path / "straight"
    settings = ["--lr", "0.005", "--weight-decay", "0.01", "--seed", "2", "--label-smoothing", "0.1",
                "--clip-grad", "0.5", "--warmup-epochs", "0.5"]
    assert cli.main(tiny_argv(straight, *settings)) == 0
    stopped = tmp_path / "stopped"
    calls = []
    original = loop_module.evaluate

    def interrupt_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(loop_module, "evaluate", interrupt_second)
    capsys.readouterr()
    assert cli.main(tiny_argv(stopped, *settings)) == 130
    err = [line for line in capsys.readouterr().err.splitlines() if "interrupted" in line]
    assert len(err) == 1 and f"Continue with: refvit train --out {stopped} --resume" in err[0]  # one line, not two
    monkeypatch.setattr(loop_module, "evaluate", original)

    assert cli.main(["train", "--out", str(stopped), "--resume", "--lr", "0.005", "--backend", "numpy"]) == 0
    captured = capsys.readouterr()
    assert f"resuming {stopped} after epoch 1 of 2" in captured.err
    got, expected = load_checkpoint(stopped / "checkpoint.npz"), load_checkpoint(straight / "checkpoint.npz")
    for name in expected["model"]:
        np.testing.assert_array_equal(got["model"][name], expected["model"][name], err_msg=name)
    metrics = json.loads((stopped / "metrics.json").read_text())
    assert metrics["lr"] == 0.005 and metrics["seed"] == 2 and metrics["weight_decay"] == 0.01
    assert metrics["settings"]["clip_grad"] == 0.5 and metrics["settings"]["warmup_epochs"] == 0.5

    assert cli.main(["train", "--out", str(stopped), "--resume"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == (f"the run in {stopped} is already complete (2 of 2 epochs); nothing to do. Its results "
                           f"are in {stopped / 'metrics.json'}")


def test_resume_of_an_empty_folder_and_a_new_run_over_an_old_one(tiny_registered, tmp_path, capsys):
    line = one_line_error(capsys, tiny_argv(tmp_path, "--resume"))
    assert line.startswith(f"refvit train: error: --resume: {tmp_path} holds no run to continue")
    assert cli.main(tiny_argv(tmp_path, "--epochs", "1")) == 0
    capsys.readouterr()
    line = one_line_error(capsys, tiny_argv(tmp_path))
    assert line == (f"refvit train: error: --out {tmp_path} already holds a run ({tmp_path / 'checkpoint.npz'}); "
                    f"continue it with --resume, or choose another --out")


# -- extending a run: a new run from a checkpoint's weights ----------------------------------------------------

def test_init_from_starts_a_new_run_from_a_checkpoints_weights(tiny_registered, tmp_path, capsys, monkeypatch):
    first = tmp_path / "first"
    assert cli.main(tiny_argv(first, "--epochs", "1")) == 0
    weights = load_checkpoint(first / "checkpoint.npz")["model"]
    capsys.readouterr()
    line = one_line_error(capsys, tiny_argv(first, "--resume", "--epochs", "3"))  # extending is not resuming
    assert "was started with --epochs 1; this command gives --epochs 3" in line

    seen = {}
    original = loop_module.fit

    def spy(model, *args, **kwargs):
        seen.update({name: np.array(value) for name, value in model.state_dict().items()})
        return original(model, *args, **kwargs)

    monkeypatch.setattr(loop_module, "fit", spy)
    argv = ["train", "--init-from", str(first / "checkpoint.npz"), "--dataset", "shapes", "--epochs", "1",
            "--batch-size", "16", "--limit-batches", "2", "--backend", "numpy", "--lr", "0.001",
            "--out", str(tmp_path / "second"), "--quiet"]
    assert cli.main(argv) == 0
    monkeypatch.setattr(loop_module, "fit", original)
    for name in weights:  # the new run starts from the first one's weights (its model too: no --model given)
        np.testing.assert_array_equal(seen[name], weights[name], err_msg=name)
    metrics = json.loads((tmp_path / "second" / "metrics.json").read_text())
    assert metrics["model"] == TINY and metrics["settings"]["init_from"] == str(first / "checkpoint.npz")
    assert metrics["epochs"] == 1 and metrics["lr"] == 0.001
    capsys.readouterr()
    assert cli.main(["train", "--out", str(tmp_path / "second"), "--resume"]) == 0
    assert "already complete" in capsys.readouterr().out


def test_init_from_errors(tiny_registered, tmp_path, capsys):
    first = tmp_path / "first"
    assert cli.main(tiny_argv(first, "--epochs", "1")) == 0
    capsys.readouterr()
    path = str(first / "checkpoint.npz")
    assert one_line_error(capsys, ["train", "--init-from", path]) == \
        "refvit train: error: --init-from starts a new run: give it a folder of its own with --out"
    assert one_line_error(capsys, ["train", "--init-from", str(tmp_path / "none.npz"), "--out", str(tmp_path / "n")]) \
        == f"refvit train: error: --init-from {tmp_path / 'none.npz'} does not exist"
    line = one_line_error(capsys, ["train", "--init-from", path, "--model", "dinat_nano", "--out",
                                   str(tmp_path / "m")])
    assert line == (f"refvit train: error: --init-from {path} holds {TINY} weights; this command gives --model "
                    f"dinat_nano. Drop --model or give --model {TINY}")
    data = tmp_path / "big"  # another image size is refused (another class count gets a new head)
    data.mkdir()
    np.savez(data / "a.npz", images=np.zeros((10, 32, 32, 3), np.float32), labels=np.arange(10) % 2)
    line = one_line_error(capsys, ["train", "--init-from", path, "--dataset", str(data), "--limit-batches", "1",
                                   "--backend", "numpy", "--out", str(tmp_path / "d")])
    assert line.startswith(f"refvit train: error: --init-from {path} holds weights for "), line
    assert f"--dataset {data} needs" in line
    assert not (tmp_path / "n").exists() and not (tmp_path / "m").exists() and not (tmp_path / "d").exists()
