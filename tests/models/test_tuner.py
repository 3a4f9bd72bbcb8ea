"""The Tuner's search: reproducible from its seed, the pipeline's default seed 0 included.

tuner_fn runs on the tiny real Transform output of tests/conftest.py, and its search runs as
the Tuner component runs it (``tuner.search(**fit_kwargs)``), two short trials.
"""

from __future__ import annotations

import keras
import pytest
from tfx.components.trainer import fn_args_utils

from pipeline.models import constants, model, tuner


def _trials(search, count: int = 4) -> list[dict]:
    return [search.populate_space(str(trial))["values"] for trial in range(count)]


@pytest.mark.parametrize("seed", [0, 1, 7, -3])
def test_the_same_seed_gives_the_same_trials(seed):
    # KerasTuner draws a random seed when given 0: two runs of the default then searched
    # different hyperparameters and pushed different models.
    assert _trials(tuner.oracle(seed, max_trials=8)) == _trials(tuner.oracle(seed, max_trials=8))


def test_distinct_seeds_stay_distinct_and_none_reaches_kerastuner_as_zero():
    seeds = [tuner.oracle(seed, max_trials=8).seed for seed in (-2, -1, 0, 1, 2)]
    assert 0 not in seeds and len(set(seeds)) == len(seeds)


def test_the_search_space_is_the_constants_with_the_defaults_first():
    hparams = tuner.search_space()
    assert {hp.name: tuple(hp.values) for hp in hparams.space} == constants.SEARCH_SPACE
    # What --no-tune trains with is where the search starts, and inside the space.
    assert hparams.values == constants.DEFAULT_HPARAMS
    for trial in _trials(tuner.oracle(5, max_trials=8), count=8):
        assert all(value in constants.SEARCH_SPACE[name] for name, value in trial.items())


def _fn_args(tiny_transform, working_dir, custom_config) -> fn_args_utils.FnArgs:
    """What the Tuner component hands tuner_fn: the Transform's outputs and a working dir."""
    return fn_args_utils.FnArgs(
        train_files=tiny_transform.files("train"),
        eval_files=tiny_transform.files("eval"),
        transform_graph_path=str(tiny_transform.transform_dir),
        working_dir=str(working_dir),
        custom_config=custom_config,
    )


def test_without_a_custom_config_the_search_has_the_default_seed_trials_and_budget(
    tiny_transform, tmp_path
):
    result = tuner.tuner_fn(_fn_args(tiny_transform, tmp_path, None))
    search = result.tuner.oracle
    assert search.seed == 1  # the pipeline's default seed 0, shifted off KerasTuner's "none"
    assert search.max_trials == constants.TUNER_MAX_TRIALS
    assert (search.objective.name, search.objective.direction) == ("val_auc", "max")
    assert result.tuner.executions_per_trial == constants.TUNER_EXECUTIONS_PER_TRIAL
    # Every trial trains as the Trainer will: the budget of the 90-row train split.
    assert result.fit_kwargs["epochs"] == model.training_budget(90).epochs
    assert "validation_data" in result.fit_kwargs  # what trials are ranked on


def test_a_search_runs_the_seeded_trials_each_trained_twice_and_keeps_the_best(
    tiny_transform, tmp_path
):
    seed, max_trials = 3, 2
    result = tuner.tuner_fn(_fn_args(tiny_transform, tmp_path,
                                     {"seed": seed, "max_trials": max_trials, "epochs": 1}))
    assert result.fit_kwargs["epochs"] == 1
    trainings = []
    # As the Tuner component runs it, plus a callback that counts the trainings.
    result.tuner.search(**result.fit_kwargs, callbacks=[
        keras.callbacks.LambdaCallback(on_train_begin=lambda logs: trainings.append(1))
    ])
    assert len(trainings) == max_trials * constants.TUNER_EXECUTIONS_PER_TRIAL
    trials = sorted(result.tuner.oracle.trials.values(), key=lambda t: int(t.trial_id))
    assert [t.status for t in trials] == ["COMPLETED"] * max_trials
    assert [t.hyperparameters.values for t in trials] == _trials(
        tuner.oracle(seed, max_trials=max_trials), count=max_trials
    )
    scores = [t.score for t in trials]
    assert all(0.0 <= score <= 1.0 for score in scores), scores  # AUCs on the eval split
    [best] = result.tuner.get_best_hyperparameters(1)
    assert best.values == trials[scores.index(max(scores))].hyperparameters.values
