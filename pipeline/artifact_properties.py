"""Custom property names on the artifacts the pipeline writes and run_summary reads back.

TFX's own names first (its executors set them; ours set the same ones so that TFX's readers,
such as the Pusher and BulkInferrer reading ``blessed``, understand our artifacts), then the
ones this project adds. One definition each: a reader and a writer spelling a name
differently would agree on nothing, silently.
"""

# ModelBlessing, InfraBlessing and ExampleAnomalies (per split): 1/0, or a JSON verdict.
BLESSED = "blessed"
# PushedModel, as TFX's Pusher writes it.
PUSHED = "pushed"
PUSHED_DESTINATION = "pushed_destination"
PUSHED_VERSION = "pushed_version"

# PushedModel: why a blessed model was not published (AtomicPusher).
NOT_PUSHED_REASON = "not_pushed_reason"
# InfraBlessing: why the model did not serve (both InfraValidators).
INFRA_REASON = "reason"
# ModelEvaluation: the candidate's overall metrics (a number each, named as TFMA names them),
# and ModelBlessing: the failed thresholds when not blessed, one line each; so that a run is
# readable from ML Metadata alone (`tfxkfp runs show`, the KFP UI's artifact view).
EVALUATOR_FAILURES = "failures"
# ExampleAnomalies: every anomaly found, a JSON list of {"feature", "description"}.
ANOMALIES = "anomalies"
# The baseline Model (LatestServedModel): 0 when nothing is served yet, and the version
# directory it was read from.
BASELINE_FOUND = "baseline_found"
SOURCE_VERSION_DIR = "source_version_dir"
