"""Under real Ray Tune, with Ray keeping every checkpoint and ``CheckpointPruner`` deleting them, every
checkpoint that the experiment state in storage names exists, so a driver killed at any moment resumes
each running trial from its checkpoint (docs/architecture.md, checkpoints), and replaced checkpoints are
deleted while the trials run.

The trials checkpoint several times per state upload, to a storage filesystem given explicitly (so Ray
stages its state locally and uploads it, as to a bucket); the stored state is checked after each step of
Ray's loop."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, tempfile, time
    import pyarrow.fs as pafs
    import ray
    from ray import tune
    from study.tuning.checkpoints import CheckpointPruner, stored_trials
    from study.tuning.driver import init_ray

    root = sys.argv[1]
    seen = {"states": 0, "named": 0, "missing": [], "most": 0}

    class StoredStateCheck(tune.Callback):
        def on_step_end(self, iteration, trials, **info):
            fs, path = pafs.LocalFileSystem(), os.path.join(root, "exp")
            stored = stored_trials(fs, path)
            if stored is None:
                return
            seen["states"] += 1
            for trial_id, ckpt in stored.latest.items():
                if trial_id in stored.ended:
                    continue
                seen["named"] += 1
                if fs.get_file_info(ckpt).type == pafs.FileType.NotFound:
                    seen["missing"].append(ckpt)
            for d in os.listdir(path):
                if os.path.isdir(os.path.join(path, d)):
                    n = sum(c.startswith("checkpoint_") for c in os.listdir(os.path.join(path, d)))
                    seen["most"] = max(seen["most"], n)

    def trainable(config):
        for i in range(20):
            time.sleep(0.3)
            with tempfile.TemporaryDirectory() as d:
                open(os.path.join(d, "state.pt"), "wb").write(b"x" * 1000)
                tune.report({"i": i}, checkpoint=tune.Checkpoint.from_directory(d))

    init_ray(None, quiet=True)
    tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        tune_config=tune.TuneConfig(num_samples=2),
        run_config=tune.RunConfig(
            name="exp",
            storage_path=root,
            storage_filesystem=pafs.LocalFileSystem(),
            verbose=0,
            callbacks=[CheckpointPruner(), StoredStateCheck()],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        ),
    ).fit()
    print("SEEN", json.dumps(seen))
    ray.shutdown()
    """
)


def test_the_stored_state_never_names_a_deleted_checkpoint(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=300, check=False
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("SEEN ")]
    assert lines, out.stdout[-2000:] + out.stderr[-3000:]
    seen = json.loads(lines[-1].removeprefix("SEEN "))
    assert seen["states"] >= 2 and seen["named"] >= 2, seen  # the check saw running trials' checkpoints
    assert seen["missing"] == [], seen
    assert seen["most"] < 20, seen  # and replaced checkpoints were deleted while the trials ran
