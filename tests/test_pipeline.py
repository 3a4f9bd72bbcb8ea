"""create_pipeline's wiring, checked on the objects it builds (no run)."""

import json
import os

import pytest

from pipeline.config import (
    IN_MEMORY_BEAM_ARGS,
    MULTI_PROCESS_FROM_ROWS,
    PipelineConfig,
    local_beam_args,
    local_paths,
)
from pipeline.pipeline import create_pipeline, eval_config
from pipeline.runners import local


def _config(tmp_path, **changes) -> PipelineConfig:
    return PipelineConfig(**local_paths(tmp_path / "out"), data_root=str(tmp_path / "data"),
                          **changes)


def _components(config):
    return {component.id: component for component in create_pipeline(config).components}


def test_default_pipeline_has_the_whole_standard_flow(tmp_path, default_pipeline_node_ids):
    components = _components(_config(tmp_path))
    assert next(iter(components)) == "CsvExampleGen"
    assert set(components) == default_pipeline_node_ids


def test_local_validation_compares_with_the_last_accepted_span(tmp_path):
    components = _components(_config(tmp_path))
    baseline = components["ExampleValidator"].inputs["baseline_statistics"]
    assert baseline.producer_component_id == "previous_span_statistics_resolver"
    resolved = components["previous_span_statistics_resolver"].raw_inputs["statistics"]
    # Transform's statistics: only spans that passed the gate reach Transform.
    assert (resolved.producer_component_id, resolved.output_key) == (
        "Transform", "pre_transform_stats"
    )
    for target in ("kfp", "vertex"):
        validator = _components(_config(tmp_path, target=target))["ExampleValidator"]
        assert "baseline_statistics" not in validator.inputs


def test_training_waits_for_the_anomalies_gate(tmp_path):
    components = _components(_config(tmp_path))
    assert components["AnomaliesGate"] in components["Transform"].upstream_nodes
    # Validation and Transform read the curated schema, not the inferred one.
    for node in ("ExampleValidator", "Transform", "Trainer"):
        assert components[node].inputs["schema"].producer_component_id == "ImportSchemaGen"


def test_pusher_needs_both_blessings(tmp_path):
    pusher = _components(_config(tmp_path))["Pusher"]
    assert pusher.inputs["model_blessing"].producer_component_id == "Evaluator"
    assert pusher.inputs["infra_blessing"].producer_component_id == "InfraValidator"
    destination = json.loads(pusher.exec_properties["push_destination"])
    assert destination["filesystem"]["base_directory"] == str(
        tmp_path / "out" / "serving" / "social_network_ads"
    )
    assert json.loads(pusher.exec_properties["custom_config"]) == {"keep_versions": 5}


@pytest.mark.parametrize(
    ("changes", "present", "absent"),
    [({"tune": False}, set(), {"Tuner", "HyperparametersImporter"}),
     ({"hparams_uri": "/h"}, {"HyperparametersImporter"}, {"Tuner"}),
     ({"inference_data_root": "/i"}, {"InferenceExampleGen"}, set()),
     ({"target": "kfp"}, {"LatestServedModel"},
      {"latest_blessed_model_resolver", "previous_span_statistics_resolver"}),
     ({"target": "vertex"}, {"latest_blessed_model_resolver"},
      {"LatestServedModel", "previous_span_statistics_resolver"})],
)
def test_optional_components(tmp_path, changes, present, absent):
    ids = set(_components(_config(tmp_path, **changes)))
    assert present <= ids and not absent & ids


def test_unknown_target_is_refused(tmp_path):
    with pytest.raises(ValueError, match="target must be one of local, kfp, vertex"):
        _config(tmp_path, target="argo")


def test_evaluator_gates_only_the_overall_slice(tmp_path):
    config = eval_config(_config(tmp_path, min_auc=0.9))
    gated = {m.class_name: m for m in config.metrics_specs[0].metrics if m.per_slice_thresholds}
    assert set(gated) == {"AUC", "BinaryAccuracy"}
    auc = gated["AUC"].per_slice_thresholds[0]
    assert [str(spec) for spec in auc.slicing_specs] == [""]  # the overall slice
    assert auc.threshold.value_threshold.lower_bound.value == 0.9
    assert auc.threshold.HasField("change_threshold")
    assert {tuple(spec.feature_keys) for spec in config.slicing_specs} == {
        (), ("gender",), ("age_band_xf",)
    }


def test_local_runs_never_cache_the_served_model_lookup(tmp_path):
    ir = local.compile_local(_config(tmp_path), tmp_path / "out")
    caching = {node.pipeline_node.node_info.id:
               node.pipeline_node.execution_options.caching_options.enable_cache
               for node in ir.nodes}
    assert caching.pop("LatestServedModel") is False
    assert all(caching.values())  # everything else is cached as usual


@pytest.mark.parametrize(("rows", "cores", "expected"), [
    (400, 2, IN_MEMORY_BEAM_ARGS),
    (MULTI_PROCESS_FROM_ROWS - 1, 2, IN_MEMORY_BEAM_ARGS),
    (MULTI_PROCESS_FROM_ROWS, 2,
     ("--direct_running_mode=multi_processing", "--direct_num_workers=2")),
    (10**6, 1, IN_MEMORY_BEAM_ARGS),  # one core: worker processes only cost their start
])
def test_local_runs_give_each_core_a_beam_worker_from_a_measured_size(
    rows, cores, expected, monkeypatch
):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert local_beam_args(rows) == expected
