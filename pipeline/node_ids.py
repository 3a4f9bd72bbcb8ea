"""The id of every node the pipeline can contain: one name per node, used everywhere.

Node ids are how runs are read back (run_summary.json, ML Metadata contexts) and they become
KFP task names, which the open-source backend uses as Argo template and task names: letters,
digits and "-" only (checked in tests/runners/test_kubeflow_compile.py). Renaming one here
renames it everywhere; a literal elsewhere would silently stop matching.
"""

EXAMPLE_GEN = "CsvExampleGen"
STATISTICS_GEN = "StatisticsGen"
SCHEMA_GEN = "SchemaGen"
CURATED_SCHEMA = "ImportSchemaGen"
# The last accepted span's statistics, the drift baseline (local runs only).
PREVIOUS_SPAN_STATISTICS = "previous_span_statistics_resolver"
EXAMPLE_VALIDATOR = "ExampleValidator"
ANOMALIES_GATE = "AnomaliesGate"
# Transform runs only on spans that passed validation; its pre-transform statistics of the
# last one are the drift baseline.
TRANSFORM = "Transform"
TUNER = "Tuner"
# The Importer of ready-made hyperparameters (--hparams), in place of the Tuner.
HPARAMS_IMPORTER = "HyperparametersImporter"
TRAINER = "Trainer"
# The baseline step, which reads the serving directory rather than its inputs: never cached.
LATEST_SERVED_MODEL = "LatestServedModel"
# Vertex's baseline: TFX's latest-blessed-model Resolver.
LATEST_BLESSED_MODEL = "latest_blessed_model_resolver"
EVALUATOR = "Evaluator"
INFRA_VALIDATOR = "InfraValidator"
PUSHER = "Pusher"
INFERENCE_EXAMPLE_GEN = "InferenceExampleGen"
BULK_INFERRER = "BulkInferrer"
PREDICTIONS_EXPORT = "PredictionsExport"
