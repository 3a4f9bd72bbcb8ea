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

# The Trainer exports the average of this many networks (see model.run_fn).
ENSEMBLE_SIZE = 3
# A little weight decay keeps the tiny network's probabilities from saturating at 0 and 1.
L2_REGULARIZATION = 1e-3
# The training budget (model.training_budget), the same for any data size. The real data has
# ~300 training rows: 10 steps a pass at the smallest batch, 20 passes, which is what its
# quality was measured with. Larger data gets larger batches, up to MAX_BATCH_SIZE, aiming at
# STEPS_PER_PASS steps a pass; passes stop at EPOCHS, or once MAX_TRAINING_STEPS are reached.
BATCH_SIZE = 32
MAX_BATCH_SIZE = 1024
STEPS_PER_PASS = 100
EPOCHS = 20
MAX_TRAINING_STEPS = 600
# Tuner: trials of two trainings each, every training on the budget above, so a search costs
# at most TUNER_MAX_TRIALS * TUNER_EXECUTIONS_PER_TRIAL trainings, at any data size. The
# Tuner trains each trial exactly as the Trainer will, so it selects for the final training.
TUNER_MAX_TRIALS = 8
TUNER_EXECUTIONS_PER_TRIAL = 2
