"""Hyperparameter search with KerasTuner, bounded by a trial count.

Every trial trains on the Trainer's budget (model.training_budget), so a search costs at most
TUNER_MAX_TRIALS * TUNER_EXECUTIONS_PER_TRIAL trainings at any data size, and the same
trials on the same data whatever else the machine is doing.
"""

from __future__ import annotations

import keras_tuner
from tfx import v1 as tfx

from pipeline.models import constants, model


def search_space() -> keras_tuner.HyperParameters:
    """The hyperparameters the Tuner may choose, defaults first."""
    hparams = keras_tuner.HyperParameters()
    for name, choices in constants.SEARCH_SPACE.items():
        hparams.Choice(name, list(choices), default=constants.DEFAULT_HPARAMS[name])
    return hparams


def oracle(seed: int, max_trials: int) -> keras_tuner.oracles.RandomSearchOracle:
    """The random search over ``search_space``: the same ``seed``, the same trials.

    KerasTuner takes a seed of 0 to mean "none" and draws one at random (``seed or
    random.randint(...)`` in its Oracle), and 0 is the pipeline's default seed: so the search
    gets ``seed + 1`` for seeds from 0 up, which is never 0 and keeps distinct seeds distinct.
    """
    return keras_tuner.oracles.RandomSearchOracle(
        objective=keras_tuner.Objective("val_auc", direction="max"),
        max_trials=max_trials,
        hyperparameters=search_space(),
        seed=seed + 1 if seed >= 0 else seed,
    )


# Called by the Tuner component (module path in pipeline.pipeline).
def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
    """Builds the search; the Tuner component runs it and exports the best hyperparameters."""
    custom_config = fn_args.custom_config or {}
    search = oracle(int(custom_config.get("seed", 0)),
                    int(custom_config.get("max_trials", constants.TUNER_MAX_TRIALS)))
    fit_kwargs = model.training_kwargs(fn_args)  # seeds before the first trial builds
    tuner = keras_tuner.Tuner(
        oracle=search,
        hypermodel=lambda hparams: model.build_model(hparams.values),
        directory=fn_args.working_dir,
        project_name="social_network_ads",
        overwrite=True,
        # Two trainings per trial: on ~100 eval examples one training's AUC is too noisy
        # to rank hyperparameters by.
        executions_per_trial=constants.TUNER_EXECUTIONS_PER_TRIAL,
    )
    return tfx.components.TunerFnResult(tuner=tuner, fit_kwargs=fit_kwargs)
