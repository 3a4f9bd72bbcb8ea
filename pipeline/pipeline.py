"""create_pipeline(config): the one TFX pipeline definition, wiring only.

Every runner (local, Kubeflow, Vertex) builds its pipeline here. Model code is referenced
by dotted module path, so it travels in the installed package rather than being copied to
the pipeline root.
"""

from __future__ import annotations

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.dsl.components.base.base_node import BaseNode
from tfx.proto import bulk_inferrer_pb2, example_gen_pb2, infra_validator_pb2
from tfx.types import standard_component_specs

from pipeline import node_ids
from pipeline.components.anomalies_gate import AnomaliesGate
from pipeline.components.atomic_pusher import KEEP_VERSIONS_KEY, AtomicPusher
from pipeline.components.baseline_model import LatestServedModel
from pipeline.components.evaluator import BaselineAwareEvaluator
from pipeline.components.example_validator import (
    DriftAwareExampleValidator,
    LatestIfAnyStrategy,
)
from pipeline.components.infra_validator_component import InfraValidatorComponent
from pipeline.components.kubernetes_infra_validator import KubernetesInfraValidator
from pipeline.components.local_infra_validator import LocalInfraValidator
from pipeline.components.predictions_export import PredictionsExport
from pipeline.config import EVAL_BUCKETS, TRAIN_BUCKETS, PipelineConfig
from pipeline.models import features, model

INFERENCE_SPLIT = "inference"


def _train_eval_split() -> example_gen_pb2.Output:
    return example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(splits=[
            example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=TRAIN_BUCKETS),
            example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=EVAL_BUCKETS),
        ])
    )


def _overall_gate(
    lower_bound: float, change_threshold: tfma.GenericChangeThreshold | None = None
) -> list[tfma.PerSliceMetricThreshold]:
    """A value floor (and optional change threshold) on the whole eval set only.

    A plain `threshold` would gate every slice; small slices (a young age band with no
    buyers) have meaningless AUCs.
    """
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": lower_bound}),
        change_threshold=change_threshold,
    )
    return [tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)]


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """TFMA: AUC, accuracy, counts and plots; overall, by gender, by age band; gates."""
    no_regression = tfma.GenericChangeThreshold(
        direction=tfma.MetricDirection.HIGHER_IS_BETTER,
        absolute={"value": -config.max_auc_regression},
    )
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=model.SERVING_DEFAULT,
                label_key=features.LABEL_KEY,
                prediction_key=features.PROBABILITY_KEY,
                # Lets TFMA slice on transformed features (the age band).
                preprocessing_function_names=[model.TRANSFORM_FEATURES],
            )
        ],
        slicing_specs=[
            tfma.SlicingSpec(),
            tfma.SlicingSpec(feature_keys=[features.CATEGORICAL_FEATURE_KEY]),
            tfma.SlicingSpec(feature_keys=[features.transformed_name(features.AGE_BAND_KEY)]),
        ],
        metrics_specs=[
            tfma.MetricsSpec(metrics=[
                tfma.MetricConfig(class_name="ExampleCount"),
                tfma.MetricConfig(
                    class_name="AUC",
                    per_slice_thresholds=_overall_gate(config.min_auc, no_regression),
                ),
                tfma.MetricConfig(
                    class_name="BinaryAccuracy",
                    per_slice_thresholds=_overall_gate(config.min_binary_accuracy),
                ),
                tfma.MetricConfig(class_name="CalibrationPlot"),
                tfma.MetricConfig(class_name="ConfusionMatrixPlot"),
            ])
        ],
    )


def _baseline_model(config: PipelineConfig) -> BaseNode:
    """The node whose ``model`` output is the Evaluator's baseline (targets.Target says which)."""
    if config.platform.baseline_from_resolver:
        return tfx.dsl.Resolver(
            strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
            model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
            model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
        ).with_id(node_ids.LATEST_BLESSED_MODEL)
    return LatestServedModel(serving_model_dir=config.serving_model_dir).with_id(
        node_ids.LATEST_SERVED_MODEL
    )


def _example_validation(
    config: PipelineConfig, statistics, schema
) -> tuple[list[BaseNode], BaseNode]:
    """Validation against the curated schema; where the target can, also drift.

    The drift baseline, the last accepted span's statistics, comes from a Resolver over ML
    Metadata (targets.Target.checks_drift says where that works).
    """
    if not config.platform.checks_drift:
        return [], DriftAwareExampleValidator(
            statistics=statistics, schema=schema
        ).with_id(node_ids.EXAMPLE_VALIDATOR)
    previous_span = tfx.dsl.Resolver(
        strategy_class=LatestIfAnyStrategy,
        statistics=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.ExampleStatistics,
            producer_component_id=node_ids.TRANSFORM,
            output_key=standard_component_specs.PRE_TRANSFORM_STATS_KEY,
        ),
    ).with_id(node_ids.PREVIOUS_SPAN_STATISTICS)
    validator = DriftAwareExampleValidator(
        statistics=statistics,
        schema=schema,
        baseline_statistics=previous_span.outputs["statistics"],
    ).with_id(node_ids.EXAMPLE_VALIDATOR)
    return [previous_span], validator


def _infra_validator(config: PipelineConfig, trained_model, examples) -> InfraValidatorComponent:
    """LOAD_AND_QUERY: TF Serving in a pod, or the model loaded in process (targets.Target)."""
    serving = tfx.proto.TensorFlowServing(
        image_name=config.tf_serving_image, tags=[config.tf_serving_tag])
    validation_spec = infra_validator_pb2.ValidationSpec(max_loading_time_seconds=120)
    # TFX's TF Serving client only builds requests for signatures that take serialized
    # examples; the in-process flavour queries the raw-feature signature too.
    signatures = [model.SERVING_DEFAULT]
    if not config.platform.serves_in_pod:
        signatures.append(model.SERVING_RAW)
    request_spec = tfx.proto.RequestSpec(
        tensorflow_serving=tfx.proto.TensorFlowServingRequestSpec(signature_names=signatures),
        split_name="eval",
        num_examples=config.infra_validation_examples,
    )
    if config.platform.serves_in_pod:
        return KubernetesInfraValidator(
            model=trained_model,
            examples=examples,
            serving_spec=tfx.proto.ServingSpec(
                tensorflow_serving=serving,
                kubernetes=tfx.proto.KubernetesConfig(
                    service_account_name=config.serving_service_account
                ),
            ),
            request_spec=request_spec,
            validation_spec=validation_spec,
        ).with_id(node_ids.INFRA_VALIDATOR)
    return LocalInfraValidator(
        model=trained_model,
        examples=examples,
        serving_spec=tfx.proto.ServingSpec(tensorflow_serving=serving),
        request_spec=request_spec,
        validation_spec=validation_spec,
    ).with_id(node_ids.INFRA_VALIDATOR)


def create_pipeline(config: PipelineConfig) -> tfx.dsl.Pipeline:
    """The whole flow, ExampleGen to BulkInferrer, as TFX intends it wired."""
    example_gen = tfx.components.CsvExampleGen(
        input_base=config.data_root, output_config=_train_eval_split()
    ).with_id(node_ids.EXAMPLE_GEN)
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"]
    ).with_id(node_ids.STATISTICS_GEN)
    # The inferred schema is kept for people to compare against the curated one;
    # validation uses the curated schema.
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True
    ).with_id(node_ids.SCHEMA_GEN)
    curated_schema = tfx.components.ImportSchemaGen(
        schema_file=config.schema_file
    ).with_id(node_ids.CURATED_SCHEMA)
    drift_baseline, example_validator = _example_validation(
        config, statistics_gen.outputs["statistics"], curated_schema.outputs["schema"]
    )
    anomalies_gate = AnomaliesGate(
        anomalies=example_validator.outputs["anomalies"]
    ).with_id(node_ids.ANOMALIES_GATE)

    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=curated_schema.outputs["schema"],
        module_file=None,
        preprocessing_fn="pipeline.models.preprocessing.preprocessing_fn",
    ).with_id(node_ids.TRANSFORM)
    transform.add_upstream_node(anomalies_gate)  # no training on anomalous data

    components = [
        example_gen, statistics_gen, schema_gen, curated_schema, *drift_baseline,
        example_validator, anomalies_gate, transform,
    ]

    if config.hparams_uri is not None:
        hyperparameters = tfx.dsl.Importer(
            source_uri=config.hparams_uri,
            artifact_type=tfx.types.standard_artifacts.HyperParameters,
        ).with_id(node_ids.HPARAMS_IMPORTER)
        components.append(hyperparameters)
        best_hyperparameters = hyperparameters.outputs["result"]
    elif config.tune:
        tuner = tfx.components.Tuner(
            tuner_fn="pipeline.models.tuner.tuner_fn",
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=curated_schema.outputs["schema"],
            train_args=tfx.proto.TrainArgs(),
            custom_config={
                "seed": config.seed,
                "epochs": config.epochs,
                "max_trials": config.tuner_max_trials,
            },
        ).with_id(node_ids.TUNER)
        components.append(tuner)
        best_hyperparameters = tuner.outputs["best_hyperparameters"]
    else:
        best_hyperparameters = None

    trainer = tfx.components.Trainer(
        run_fn=config.run_fn,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=curated_schema.outputs["schema"],
        hyperparameters=best_hyperparameters,
        custom_config={"seed": config.seed, "epochs": config.epochs},
    ).with_id(node_ids.TRAINER)

    baseline = _baseline_model(config)
    evaluator = BaselineAwareEvaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=eval_config(config),
    ).with_id(node_ids.EVALUATOR)
    infra_validator = _infra_validator(
        config, trainer.outputs["model"], example_gen.outputs["examples"]
    )

    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=infra_validator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=config.serving_model_dir
            )
        ),
        custom_config={KEEP_VERSIONS_KEY: config.keep_versions},
    ).with_id(node_ids.PUSHER)

    if config.inference_data_root is not None:
        inference_example_gen = tfx.components.CsvExampleGen(
            input_base=config.inference_data_root,
            output_config=example_gen_pb2.Output(
                split_config=example_gen_pb2.SplitConfig(splits=[
                    example_gen_pb2.SplitConfig.Split(name=INFERENCE_SPLIT, hash_buckets=1)
                ])
            ),
        ).with_id(node_ids.INFERENCE_EXAMPLE_GEN)
        components.append(inference_example_gen)
        inference_examples, inference_split = (
            inference_example_gen.outputs["examples"], INFERENCE_SPLIT
        )
    else:
        inference_examples, inference_split = example_gen.outputs["examples"], "eval"

    bulk_inferrer = tfx.components.BulkInferrer(
        examples=inference_examples,
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        data_spec=tfx.proto.DataSpec(example_splits=[inference_split]),
        model_spec=tfx.proto.ModelSpec(model_signature_name=[model.SERVING_DEFAULT]),
        output_example_spec=bulk_inferrer_pb2.OutputExampleSpec(output_columns_spec=[
            bulk_inferrer_pb2.OutputColumnsSpec(
                signature_name=model.SERVING_DEFAULT,
                predict_output=bulk_inferrer_pb2.PredictOutput(output_columns=[
                    bulk_inferrer_pb2.PredictOutputCol(output_key=key, output_column=key)
                    for key in (features.PROBABILITY_KEY, features.CLASS_KEY)
                ]),
            )
        ]),
    ).with_id(node_ids.BULK_INFERRER)
    predictions_export = PredictionsExport(
        inferred_examples=bulk_inferrer.outputs["output_examples"]
    ).with_id(node_ids.PREDICTIONS_EXPORT)

    components += [
        trainer, baseline, evaluator, infra_validator, pusher, bulk_inferrer,
        predictions_export,
    ]
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=config.enable_cache,
        beam_pipeline_args=list(config.beam_args),
    )
