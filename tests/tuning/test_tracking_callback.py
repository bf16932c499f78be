"""The MLflow callback records each epoch of a trial once, also across restores and driver restarts."""

from types import SimpleNamespace

from study.tracking.callback import TrackingCallback


def _trial(trial_id="t1"):
    point = {"dataset": "synthetic", "noise_kind": "symmetric", "noise_rate": 0.4, "ssl": "random", "lnl": "ce",
             "seed": 0}
    return SimpleNamespace(trial_id=trial_id, num_failures=0,
                           config={"run": {"stage": "lnl", "cell": "c1", "point": point}})


def _history(cb, trial, key="train_loss"):
    run_id = cb._run(trial)
    return [(m.step, m.value) for m in cb.tracker.client.get_metric_history(run_id, key)]


def test_an_epoch_recomputed_after_restore_is_logged_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cb = TrackingCallback(uri, "s", None, str(tmp_path / "art"))
    trial = _trial()
    for epoch in range(3):
        cb.on_trial_result(0, [], trial, {"epoch": epoch, "train_loss": 1.0 - epoch / 10, "node_id": "a",
                                          "start_epoch": 0})
    # the node died after epoch 2 was reported but before its checkpoint was saved: the trial restarts
    # from the epoch-1 checkpoint and computes epoch 2 again
    cb.on_trial_recover(0, [], trial)
    for epoch in (2, 3):
        cb.on_trial_result(0, [], trial, {"epoch": epoch, "train_loss": 1.0 - epoch / 10, "node_id": "b",
                                          "start_epoch": 2})
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
