"""The one experiment API: every option is a field that the CLI and the app both offer; a model trained
from the app's Train job and one trained by ``mmlab train`` with the same settings are the same model."""
import dataclasses
import json
import shlex
from pathlib import Path

import pytest

from mmlab.config import ModelConfig, TrainConfig
from mmlab.errors import InputError
from mmlab.experiment import Experiment, command, from_args, from_options, options, to_argv


def tiny(**train):
    return Experiment(dataset="shapes", task="mask", data_options={"n": 96},
                      model=ModelConfig(fusion="cross_attention", dim=16, image_size=None),
                      train=TrainConfig(epochs=1, batch_size=32, threads=1, **train))


def _other_value(opt):
    """A value of the option's type other than its default (for the round-trip test)."""
    meta, kind = opt.field.metadata, str(opt.field.type)
    if meta.get("choices"):
        return next(c for c in meta["choices"] if c != opt.default)
    if kind == "bool":
        return not opt.default
    if kind == "dict":
        return {"k": 2}
    if kind == "tuple":
        return ("shape", "colour")
    if kind.startswith("int"):
        return int(meta.get("low") or 0) + 3
    if kind.startswith("float"):
        return 0.25
    return {"fusion": "concat", "dataset": "digits"}.get(opt.name, "cnn_cbam")


def test_every_option_is_a_cli_flag_that_round_trips():
    """A new option is one field: it gets a flag, and a non-default value survives flag -> experiment."""
    from mmlab.cli import parser

    p = parser()
    for opt in options():
        value = _other_value(opt)
        exp = from_options(**{opt.name: value})
        argv = to_argv(exp)
        assert argv, f"{opt.name}: a non-default value must show on the command line"
        assert from_args(p.parse_args(["train", *argv])) == exp, opt.name


def test_every_option_has_help_and_no_option_is_set_twice():
    names = [o.name for o in options()]
    assert len(names) == len(set(names))
    assert all(o.field.metadata.get("help") for o in options())
    derived = {f.name for f in dataclasses.fields(ModelConfig) if f.metadata.get("derived")}
    assert derived == {"targets", "mask", "contrastive", "generate"}
    assert not derived & {o.name for o in options() if o.where == "model"}


def test_experiment_json_round_trip_and_the_derived_command():
    exp = tiny(drop_text=0.5)
    assert Experiment.from_json(json.loads(json.dumps(exp.to_json()))) == exp
    line = command(exp, "mine")
    assert line.startswith("mmlab train ") and "--drop-text 0.5" in line and "--out checkpoints/mine" in line


def test_refused_before_anything_is_built():
    with pytest.raises(InputError, match="epochs"):
        from mmlab.experiment import check

        check(dataclasses.replace(tiny(), train=TrainConfig(epochs=0)))
    with pytest.raises(InputError, match="unknown training option"):
        from_options(evil=1)
    with pytest.raises(InputError, match="no masks"):
        from mmlab.experiment import preflight

        preflight(dataclasses.replace(tiny(), dataset="digits", data_options={}))


@pytest.mark.slow
def test_app_job_and_cli_make_the_same_checkpoint(tmp_path):
    """The app's Train job and ``mmlab train`` with the same settings: the same weights, the same manifest
    entry (but for the seconds it took)."""
    from mmlab import zoo
    from mmlab.cli import main
    from mmlab.jobs import TrainJob

    exp = tiny(drop_text=0.25, val_pairs=16)
    job = TrainJob(exp, "same", tmp_path / "app").start()
    job.join(timeout=300)
    assert job.state == "done", job.error
    argv = shlex.split(command(exp))[1:]
    assert main([*argv, "--out", str(tmp_path / "cli" / "same"), "--manifest", "--quiet"]) == 0
    app_entry, = zoo.read_manifest(tmp_path / "app")["checkpoints"]
    cli_entry, = zoo.read_manifest(tmp_path / "cli")["checkpoints"]
    for entry in (app_entry, cli_entry):
        entry.pop("train_seconds")
    assert app_entry == cli_entry
    assert (tmp_path / "app/same/model.safetensors").read_bytes() == (tmp_path / "cli/same/model.safetensors").read_bytes()
    app_cfg = json.loads((tmp_path / "app/same/config.json").read_text())
    cli_cfg = json.loads((tmp_path / "cli/same/config.json").read_text())
    for cfg in (app_cfg, cli_cfg):
        cfg.pop("train_seconds")
        for h in cfg["history"]:
            h.pop("seconds")
    assert app_cfg == cli_cfg and app_cfg["weights"] == "float16"


def test_two_jobs_asking_for_one_name_never_overwrite_each_other(tmp_path):
    from mmlab.jobs import TrainJob

    first = TrainJob(tiny(), "mine", tmp_path).start()
    second = TrainJob(tiny(), "mine", tmp_path).start()
    for job in (first, second):
        job.join(timeout=300)
        assert job.state == "done", job.error
    assert {first.saved_as, second.saved_as} == {"mine", "mine-2"}
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("manifest")) == ["mine", "mine-2"]


def test_a_job_whose_tab_went_away_stops_and_saves_nothing(tmp_path, monkeypatch):
    from mmlab import jobs

    monkeypatch.setattr(jobs, "HEARTBEAT_SECONDS", 0.2)
    job = jobs.TrainJob(dataclasses.replace(tiny(), train=TrainConfig(epochs=50, batch_size=16, threads=1)),
                        "gone", tmp_path).start()  # nobody calls touch(): the tab is closed
    job.join(timeout=120)
    assert job.state == "cancelled" and job.abandoned
    assert not (tmp_path / "gone").exists() and not (tmp_path / "gone.resume").exists()


def test_running_jobs_are_capped(tmp_path, monkeypatch):
    from mmlab import jobs

    monkeypatch.setattr(jobs, "MAX_RUNNING", 1)
    long = dataclasses.replace(tiny(), train=TrainConfig(epochs=50, batch_size=16, threads=1))
    first = jobs.TrainJob(long, "a", tmp_path).start()
    try:
        with pytest.raises(InputError, match="already running"):
            jobs.TrainJob(long, "b", tmp_path).start()
    finally:
        first.cancel()
        first.join(timeout=120)
    assert first.state == "cancelled"


def test_user_models_are_saved_outside_the_repository(monkeypatch):
    from mmlab import jobs

    monkeypatch.delenv("MMLAB_USER_CHECKPOINTS", raising=False)
    repo = Path(__file__).resolve().parents[2]
    assert repo not in jobs.user_root().resolve().parents
