"""The MLflow callback records each epoch of a trial once, also across restores and driver restarts."""

from types import SimpleNamespace

from study.tracking.callback import TrackingCallback
from study.tuning.plan import Point, PretrainJob, TrialConfig

POINT = Point("synthetic", "symmetric", 0.4, "random", "ce", 0)


def _trial(trial_id="t1", cfg: TrialConfig | None = None):
    cfg = cfg or TrialConfig(stage="lnl", id="c1", point=POINT, hparams={"lr": 0.1}, optuna_trial=3)
    return SimpleNamespace(trial_id=trial_id, num_failures=0, config=cfg.to_ray())


def _history(cb, trial, key="train_loss"):
    run_id = cb._run(trial)
    return [(m.step, m.value) for m in cb.tracker.client.get_metric_history(run_id, key)]


def test_an_epoch_recomputed_after_restore_is_logged_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cb = TrackingCallback(uri, "s", None, str(tmp_path / "art"))
    trial = _trial()
    for epoch in range(3):
        cb.on_trial_result(
            0, [], trial, {"epoch": epoch, "train_loss": 1.0 - epoch / 10, "node_id": "a", "start_epoch": 0}
        )
    # the node died after epoch 2 was reported but before its checkpoint was saved: the trial restarts
    # from the epoch-1 checkpoint and computes epoch 2 again
    cb.on_trial_recover(0, [], trial)
    for epoch in (2, 3):
        cb.on_trial_result(
            0, [], trial, {"epoch": epoch, "train_loss": 1.0 - epoch / 10, "node_id": "b", "start_epoch": 2}
        )
    assert [s for s, _ in _history(cb, trial)] == [0, 1, 2, 3]
    run = cb.tracker.client.get_run(cb._run(trial))
    assert run.data.tags["study.resumed_from_epoch"] == "2"
    assert run.data.tags["study.node_ids"] == "a,b"

    # a new driver (study resume) reads what the run already records instead of logging it again
    cb2 = TrackingCallback(uri, "s", None, str(tmp_path / "art"))
    for epoch in (3, 4):
        cb2.on_trial_result(0, [], trial, {"epoch": epoch, "train_loss": 0.5, "node_id": "b", "start_epoch": 3})
    assert [s for s, _ in _history(cb2, trial)] == [0, 1, 2, 3, 4]
    assert cb2.tracker.client.get_run(cb2._run(trial)).data.tags["study.resumed_from_epoch"] == "3"


def test_runs_take_tags_and_params_from_the_trial_config(tmp_path):
    cb = TrackingCallback(f"sqlite:///{tmp_path / 'mlflow.db'}", "s", None, str(tmp_path / "art"))
    lnl = cb.tracker.client.get_run(cb._run(_trial()))
    tags, params = lnl.data.tags, lnl.data.params
    assert tags["study.stage"] == "lnl" and tags["study.cell"] == "c1" and tags["mlflow.parentRunId"]
    assert {a: tags[a] for a in ("dataset", "noise_rate", "seed")} == {
        "dataset": "synthetic",
        "noise_rate": "0.4",
        "seed": "0",
    }
    assert params["hparams.lr"] == "0.1" and params["optuna_trial"] == "3" and params["point.lnl"] == "ce"
    job = PretrainJob("synthetic", "simclr", 1, 5)
    pre = cb.tracker.client.get_run(cb._run(_trial("t2", TrialConfig(stage="pretrain", id=job.id, job=job))))
    assert pre.data.tags["study.stage"] == "pretrain" and "study.cell" not in pre.data.tags
    assert "mlflow.parentRunId" not in pre.data.tags and pre.data.tags["ssl"] == "simclr"
    assert pre.data.params["job.epochs"] == "5" and not {"point", "hparams", "optuna_trial"} & set(pre.data.params)


def test_tracker_survives_another_process_creating_the_experiment_first(tmp_path, monkeypatch):
    """A reader (study status, a test, an MLflow client) may create the experiment while the driver starts."""
    from mlflow.tracking import MlflowClient

    from study.tracking.store import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    real = MlflowClient.get_experiment_by_name
    calls = []

    def racing(self, name):
        calls.append(name)
        if len(calls) == 1:  # between the driver's lookup and its create, someone else creates it
            MlflowClient(tracking_uri=uri).create_experiment(name)
            return None
        return real(self, name)

    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", racing)
    t = Tracker(uri, "k")
    assert t.experiment_id == real(MlflowClient(tracking_uri=uri), "k").experiment_id
