"""What a spec needs from its data, checked before a study directory exists (docs/architecture.md, CLI:
a bad input never leaves a half-written study directory behind).

The spec itself was checked at the door (``load_spec``: names against the registries, hyperparameters
against their declarations); what is left needs the data: every dataset entry must decode (into the data
cache, where the trials find it) and every noise kind must accept every rate on every dataset. All
problems are reported at once, as a ``SpecError`` against the spec file.
"""

from __future__ import annotations

from study.data import DataError, ImageData
from study.experiment import load_dataset, noise_options
from study.noise import inject_noise
from study.tuning.spec import Spec, SpecError
from study.tuning.studydir import DatasetFacts

#: labels the noise check corrupts per dataset (enough to meet every kind's conditions)
NOISE_SAMPLE = 200


def preflight(spec: Spec, source: str, data_cache: str) -> dict[str, DatasetFacts]:
    """Check the spec against its datasets; the facts of each dataset (decoded into ``data_cache`` on the
    way), or a ``SpecError`` from ``source`` listing every problem."""
    problems: list[tuple[str, str]] = []
    facts: dict[str, DatasetFacts] = {}
    for i, entry in enumerate(spec.datasets):
        try:
            data = load_dataset(spec, entry.key, data_cache)
        except (DataError, TypeError, ValueError) as e:
            problems.append((f"datasets[{i}]", str(e)))
            continue
        facts[entry.key] = DatasetFacts(
            images=len(data), classes=data.num_classes, resolution=data.resolution, channels=data.channels
        )
        problems += noise_problems(spec, data, entry.key)
    if problems:
        raise SpecError(source, problems)
    return facts


def noise_problems(spec: Spec, data: ImageData, dataset_key: str) -> list[tuple[str, str]]:
    """Noise settings that ``inject_noise`` refuses on this dataset (a rate too high for its classes, groups
    that do not fit it)."""
    problems = []
    for kind in spec.noise.kinds:
        for rate in spec.noise.rates:
            try:
                inject_noise(
                    data.labels[:NOISE_SAMPLE],
                    data.num_classes,
                    kind,
                    rate,
                    0,
                    **noise_options(spec, data, dataset_key, kind),
                )
            except (ValueError, TypeError, KeyError) as e:
                problems.append(("noise", f"{kind} at rate {rate} on {dataset_key}: {e}"))
    return problems
