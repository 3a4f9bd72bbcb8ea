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
    HIDDEN_LAYERS: (1, 2, 3),
    LEARNING_RATE: (0.003, 0.01, 0.03),
}

BATCH_SIZE = 32
# The real data has ~300 training rows, ~10 steps an epoch at this batch size.
TRAIN_EPOCHS = 40
# Tuner: a laptop-sized search.
TUNER_MAX_TRIALS = 6
TUNER_EPOCHS = 15
TUNER_TIME_BUDGET_SECONDS = 90
