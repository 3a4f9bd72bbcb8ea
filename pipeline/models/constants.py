"""Hyperparameter defaults and the Tuner's search space.

The defaults are what ``--no-tune`` trains with; they sit inside the search space so a
tuned model is never worse by construction of the space alone.
"""

HIDDEN_UNITS = "hidden_units"
HIDDEN_LAYERS = "hidden_layers"
LEARNING_RATE = "learning_rate"

DEFAULT_HPARAMS = {HIDDEN_UNITS: 16, HIDDEN_LAYERS: 2, LEARNING_RATE: 0.01}

SEARCH_SPACE = {
    HIDDEN_UNITS: (8, 16, 32),
    HIDDEN_LAYERS: (1, 2),
    LEARNING_RATE: (0.003, 0.01),
}

BATCH_SIZE = 32
# The Trainer exports the average of this many networks (see model.run_fn).
ENSEMBLE_SIZE = 3
# A little weight decay keeps the tiny network's probabilities from saturating at 0 and 1.
L2_REGULARIZATION = 1e-3
# The real data has ~300 training rows, ~10 steps an epoch at this batch size. The Tuner
# trains each trial exactly as the Trainer will, so it selects for the final training.
EPOCHS = 20
# Tuner: a laptop-sized search.
TUNER_MAX_TRIALS = 8
TUNER_EXECUTIONS_PER_TRIAL = 2
TUNER_TIME_BUDGET_SECONDS = 120
