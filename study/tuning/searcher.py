"""One Ray Tune searcher over many cells, each with its own Optuna study (define-by-run).

Ray Tune takes one searcher per Tuner, so this searcher asks the cells' studies in turn (round robin,
``samples_per_cell`` each): trials of all cells run concurrently and a cluster never idles while one
cell finishes. Each cell's study lives in ``optuna.db`` under the cell's id. A trial stopped early by its
cell's ASHA reaches Optuna as PRUNED; a trial that failed (after its retries) as FAIL with its reason.

On restore, a trial that Optuna holds RUNNING but Ray never recorded (the driver was killed between the
two) is handed out again, same number and same hyperparameters, the next time its cell is asked, with
``TrialConfig.continues`` naming the Ray trial that ran it before (whose MLflow run the new one continues);
one that Ray never recorded but that finished before the kill (its MLflow run ended too) counts towards its
cell's samples, its reports entering the cell's ASHA rungs; and
every ask seeds the cell's sampler from the spec's seed, the cell and the trial's number, not from how
many asks this driver made. So an interrupted and resumed study samples the same configurations as an
uninterrupted one (exactly while the sampler draws at random: the random sampler, or TPE until
``tuning.n_startup_trials`` of the cell's trials have finished (COMPLETE or PRUNED); TPE's later draws depend
on which trials have finished by then). With ``samples_per_cell <= n_startup_trials`` a cell's last ask sees
at most ``samples_per_cell - 1`` finished trials, so TPE never leaves its start-up: that is random search, and
``study plan`` says so. Orphans still RUNNING when the stage ends are told FAIL (user attr ``orphaned``) by
the driver.

Each suggestion is a ``TrialConfig`` (stage ``lnl``, the cell's id, its tuning point, the hyperparameters:
the cell's fixed ones, which may depend on its noise kind (``lnl[].by_noise_kind``), and the sampled ones,
and the Optuna trial's number); the hyperparameters are also kept on the Optuna trial (user attr
``config``), where ``best_hparams`` reads the cell's best for stage ``final``.

Packed trials (``resources.pack``, ``pack`` per LNL entry key): one suggestion asks up to ``pack`` trials of
the cell's study at once and hands them out as one Ray trial's ``TrialConfig.members``. Each member is its
own Optuna trial (user attr ``ray_trial_id``: the member's id, ``plan.member_trial_id``), told its reports
(``results.MEMBERS``) and its end (complete, pruned, failed) as the member's report says, or when the Ray
trial ends. An orphan handed out again after a restore runs unpacked.
"""

from __future__ import annotations

import contextlib
import json
import math
import pickle
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from study.tuning.plan import Cell, Member, TrialConfig, member_trial_id
from study.tuning.results import EPOCH, ERROR, FINISHED, MEMBERS, OBJECTIVE, PRUNED

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: Optuna user attrs of a cell's trials: the hyperparameters (JSON), the Ray trial that runs them, a trial
#: handed out again after a restore, why it failed, and one told FAIL because no Ray trial will finish it
ATTR_CONFIG = "config"
ATTR_RAY_TRIAL = "ray_trial_id"
ATTR_REUSED = "reused_after_restore"
ATTR_ERROR = "error"
ATTR_ORPHANED = "orphaned"


def sample(trial: optuna.Trial, space: dict[str, dict]) -> dict[str, Any]:
    """Define-by-run sampling of a spec search space; a ``when`` parameter only where its condition holds."""
    out: dict[str, Any] = {}
    for name, p in space.items():
        cond = p.get("when") or {}
        if any(out.get(k) not in (v if isinstance(v, list) else [v]) for k, v in cond.items()):
            continue
        if p["type"] == "float":
            out[name] = trial.suggest_float(name, p["low"], p["high"], log=p.get("log", False), step=p.get("step"))
        elif p["type"] == "int":
            out[name] = trial.suggest_int(name, p["low"], p["high"], log=p.get("log", False), step=p.get("step", 1))
        else:
            out[name] = trial.suggest_categorical(name, p["choices"])
    return out


def make_sampler(sampler: str, seed: int, n_startup_trials: int = 10) -> optuna.samplers.BaseSampler:
    """Optuna's sampler of a cell: ``random``, or ``tpe`` drawing its first ``n_startup_trials`` at random."""
    if sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials)


def open_study(
    storage: str, cell_id: str, mode: str, sampler: str = "tpe", seed: int = 0, n_startup_trials: int = 10
) -> optuna.Study:
    smp = make_sampler(sampler, seed, n_startup_trials)
    return optuna.create_study(
        storage=storage,
        study_name=cell_id,
        sampler=smp,
        load_if_exists=True,
        direction="maximize" if mode == "max" else "minimize",
    )


def best_hparams(study: optuna.Study) -> dict[str, Any] | None:
    """The hyperparameters of the cell's best completed trial; None when no trial completed."""
    best = best_trial_run(study)
    return None if best is None else best[1]


def best_trial_run(study: optuna.Study) -> tuple[str | None, dict[str, Any]] | None:
    """The Ray trial id (None where none is recorded) and the hyperparameters of the cell's best completed
    trial; None when no trial completed."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    attrs = study.best_trial.user_attrs
    ray_id = attrs.get(ATTR_RAY_TRIAL)
    return (None if ray_id is None else str(ray_id)), json.loads(attrs.get(ATTR_CONFIG, "{}"))


class CellSearcher(Searcher):
    """``samples_per_cell`` trials for each of ``cells``, asked of the cell's Optuna study in turn.
    ``spaces``/``fixed``: the search space and the fixed hyperparameters per LNL entry key; ``cell_fixed``:
    per cell id, fixed hyperparameters that replace its entry's (``LNLSpec.fixed_for`` its noise setting)."""

    # defaults of attributes added after searchers were first pickled into studies' Ray state (a restored
    # searcher from before has none)
    n_startup_trials: int = 10
    cell_fixed: dict[str, dict] | None = None
    scheduler: Any = None
    recorded: Callable[[str], bool] | None = None
    pack: dict[str, int] | None = None
    members: dict[str, list[tuple[str, int, int]]] | None = None

    def __init__(
        self,
        cells: list[Cell],
        spaces: dict[str, dict],
        fixed: dict[str, dict],
        samples_per_cell: int,
        storage: str,
        metric: str,
        mode: str,
        sampler: str = "tpe",
        sampler_seed: int = 0,
        n_startup_trials: int = 10,
        cell_fixed: dict[str, dict] | None = None,
        pack: dict[str, int] | None = None,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        #: members per packed trial, per LNL entry key (1 or absent: one sample per trial)
        self.pack = pack
        #: packed Ray trial id -> its members' (cell, number, optuna trial id), by member index
        self.members = {}
        self.cells, self.spaces, self.fixed, self.cell_fixed = cells, spaces, fixed, cell_fixed
        self.samples, self.storage = samples_per_cell, storage
        self.sampler, self.sampler_seed, self.n_startup_trials = sampler, sampler_seed, n_startup_trials
        self.assigned: dict[str, tuple[str, int, int]] = {}  # ray trial id -> (cell, number, optuna trial id)
        self.counts = {c.id: 0 for c in cells}
        self.turn = 0
        self._studies: dict[str, optuna.Study] = {}
        #: per cell, Optuna trials asked by a killed driver after Ray's last snapshot: handed out again
        self.orphans: dict[str, list[int]] | None = {}

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_studies"] = {}
        d.pop("scheduler", None)  # the driver links this session's scheduler (``use_scheduler``)
        d.pop("recorded", None)  # and its MLflow store (``use_recorded``)
        return d

    def use_recorded(self, recorded: Callable[[str], bool] | None) -> None:
        """Whether the MLflow run of a Ray trial ended: a trial told to Optuna after Ray's last snapshot
        whose run did not end (the driver died between the two) is run again, not counted."""
        self.recorded = recorded

    def use_scheduler(self, scheduler: Any) -> None:
        """The ``PerCellASHA`` whose rungs get the trials that finished after Ray's last snapshot."""
        self.scheduler = scheduler if hasattr(scheduler, "record") else None

    def use_storage(self, storage: str) -> None:
        """Read and write the cells' studies in ``storage`` (a restored searcher names the previous driver's)."""
        self.storage, self._studies = storage, {}

    def _seed(self, cell_id: str, number: int = 0) -> int:
        """Distinct and reproducible per cell and trial number."""
        return (self.sampler_seed + sum(map(ord, cell_id)) + 7919 * number) % (2**31)

    def study(self, cell_id: str) -> optuna.Study:
        if cell_id not in self._studies:
            self._studies[cell_id] = open_study(
                self.storage, cell_id, self.mode, self.sampler, self._seed(cell_id), self.n_startup_trials
            )
        return self._studies[cell_id]

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the metric and mode come from the spec

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.orphans is None:
            self.orphans = self._find_orphans()
        open_cells = [c for c in self.cells if self.counts[c.id] < self.samples]
        if not open_cells:
            return Searcher.FINISHED
        cell = open_cells[self.turn % len(open_cells)]
        self.turn += 1
        orphans = self.orphans.get(cell.id)
        continues = None
        size = min((self.pack or {}).get(cell.tune_point.lnl, 1), self.samples - self.counts[cell.id])
        if orphans:  # asked before the driver died, not finished: the same trial and sample again
            number, tid, hparams, continues = self._reuse(cell, orphans.pop(0), trial_id)
        elif size > 1:
            return self._suggest_pack(cell, trial_id, size)
        else:
            number, tid, hparams = self._ask(cell, trial_id)
        self.assigned[trial_id] = (cell.id, number, tid)
        self.counts[cell.id] += 1
        return TrialConfig(
            stage="lnl", id=cell.id, point=cell.tune_point, hparams=hparams, optuna_trial=number, continues=continues
        ).to_ray()

    def _suggest_pack(self, cell: Cell, trial_id: str, size: int) -> dict[str, Any]:
        """``size`` new trials of the cell's study as one packed Ray trial's members."""
        asked = [self._ask(cell, member_trial_id(trial_id, i)) for i in range(size)]
        if self.members is None:
            self.members = {}
        self.members[trial_id] = [(cell.id, number, tid) for number, tid, _ in asked]
        self.counts[cell.id] += size
        members = [Member(optuna_trial=number, hparams=hparams) for number, _, hparams in asked]
        return TrialConfig(stage="lnl", id=cell.id, point=cell.tune_point, members=members).to_ray()

    def _ask(self, cell: Cell, trial_id: str) -> tuple[int, int, dict[str, Any]]:
        """A new trial of the cell's study: (number, Optuna trial id, hyperparameters)."""
        study = self.study(cell.id)
        number = len(study.get_trials(deepcopy=False))
        study.sampler = make_sampler(self.sampler, self._seed(cell.id, number), self.n_startup_trials)
        trial = study.ask()
        hparams = {**self.fixed_of(cell), **sample(trial, self.spaces.get(cell.tune_point.lnl, {}))}
        trial.set_user_attr(ATTR_RAY_TRIAL, trial_id)
        trial.set_user_attr(ATTR_CONFIG, json.dumps(hparams))
        return trial.number, trial._trial_id, hparams

    def fixed_of(self, cell: Cell) -> dict[str, Any]:
        """The cell's fixed hyperparameters: its own where ``cell_fixed`` has them, else its LNL entry's."""
        if self.cell_fixed is not None and cell.id in self.cell_fixed:
            return dict(self.cell_fixed[cell.id])
        return dict(self.fixed.get(cell.tune_point.lnl, {}))

    def _reuse(self, cell: Cell, number: int, trial_id: str) -> tuple[int, int, dict[str, Any], str | None]:
        """The orphaned trial ``number`` of the cell's study, now run by ``trial_id``: (number, Optuna trial
        id, hyperparameters, the Ray trial that ran it before)."""
        study = self.study(cell.id)
        storage = study._storage
        frozen = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, number))
        if not frozen.state.is_finished():  # told before its MLflow run ended: Optuna keeps its outcome
            storage.set_trial_user_attr(frozen._trial_id, ATTR_RAY_TRIAL, trial_id)
            storage.set_trial_user_attr(frozen._trial_id, ATTR_REUSED, True)
        before = frozen.user_attrs.get(ATTR_RAY_TRIAL)
        return frozen.number, frozen._trial_id, json.loads(frozen.user_attrs[ATTR_CONFIG]), before

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self.members and trial_id in self.members:
            for key, report in json.loads(result.get(MEMBERS) or "{}").items():
                cell, number, tid = self.members[trial_id][int(key)]
                self._report(cell, tid, report)
                if report.get(FINISHED) or report.get(ERROR) or report.get(PRUNED):
                    self._tell(cell, number, tid, report)
            return
        if trial_id not in self.assigned:
            return
        cell, _, tid = self.assigned[trial_id]
        self._report(cell, tid, result)

    def _report(self, cell: str, tid: int, result: dict) -> None:
        if self.metric not in result:
            return
        value = float(result[self.metric])
        if math.isfinite(value):
            with contextlib.suppress(RuntimeError, ValueError):  # already reported at this step (a resumed
                # epoch), or finished
                optuna.Trial(self.study(cell), tid).report(value, int(result.get(EPOCH, 0)))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self.members and trial_id in self.members:  # members not told yet: as their last report says
            reports = json.loads((result or {}).get(MEMBERS) or "{}")
            for i, (cell, number, tid) in enumerate(self.members[trial_id]):
                self._tell(cell, number, tid, reports.get(str(i), {}), error)
            return
        if trial_id not in self.assigned:
            return
        cell, number, tid = self.assigned[trial_id]
        self._tell(cell, number, tid, result or {}, error)

    def _tell(self, cell: str, number: int, tid: int, result: dict, error: bool = False) -> None:
        """Tell Optuna how a trial (or a packed trial's member) ended: failed (``error``: raised after its
        retries, or a reported ``ERROR``), complete with its objective, or pruned."""
        study = self.study(cell)
        if study._storage.get_trial(tid).state.is_finished():  # a member told when its report said it ended
            return
        if error or result.get(ERROR):
            reason = str(result.get(ERROR) or "the trial raised; see study status")
            study._storage.set_trial_user_attr(tid, ATTR_ERROR, reason)
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        elif result.get(FINISHED) and math.isfinite(float(result.get(OBJECTIVE, math.nan))):
            study.tell(number, float(result[OBJECTIVE]), skip_if_finished=True)
        else:
            study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)

    # -- persistence: Ray saves this with its experiment state and restores it on Tuner.restore
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            state = {"assigned": self.assigned, "counts": self.counts, "turn": self.turn, "members": self.members}
            pickle.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.assigned, self.counts, self.turn = state["assigned"], state["counts"], state["turn"]
        self.members = state.get("members") or {}
        self.orphans = None  # found at the next suggest, once the driver has pointed ``storage`` at its optuna.db

    def _find_orphans(self) -> dict[str, list[int]]:
        """Per cell, the trials asked after Ray's last snapshot and not finished (handed out again). One
        that finished before the driver died (told to Optuna, its MLflow run ended) is counted, not rerun."""
        known = {(c, n) for c, n, _ in self.assigned.values()}
        known |= {(c, n) for members in (self.members or {}).values() for c, n, _ in members}
        orphans: dict[str, list[int]] = {}
        for c in self.cells:
            for t in self.study(c.id).get_trials(deepcopy=False):
                if (c.id, t.number) in known or ATTR_CONFIG not in t.user_attrs or ATTR_ORPHANED in t.user_attrs:
                    continue
                ray_id = str(t.user_attrs.get(ATTR_RAY_TRIAL, f"optuna-{t.number}"))
                ended = t.state not in (TrialState.RUNNING, TrialState.WAITING)
                if not ended or (self.recorded is not None and not self.recorded(ray_id)):
                    orphans.setdefault(c.id, []).append(t.number)
                else:
                    self.counts[c.id] += 1
                    if self.scheduler is not None and t.intermediate_values:  # later trials are pruned against it
                        self.scheduler.record(c.id, ray_id, dict(t.intermediate_values))
        return orphans
