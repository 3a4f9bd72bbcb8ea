import json

import keras_tuner
import pytest

from pipeline.data import hparams
from pipeline.data.staging import InputError


def _write(tmp_path, value):
    path = tmp_path / "hp.json"
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return path


def test_plain_values_become_a_keras_tuner_config(tmp_path):
    staged = hparams.stage(_write(tmp_path, {"hidden_units": 32, "learning_rate": 0.003}),
                           tmp_path / "out")
    config = json.loads((staged / hparams.HPARAMS_FILE).read_text())
    values = keras_tuner.HyperParameters.from_config(config).values
    assert values == {"hidden_units": 32, "learning_rate": 0.003}


def test_tuner_output_is_accepted_and_content_addresses_the_directory(tmp_path):
    tuned = keras_tuner.HyperParameters()
    tuned.Choice("hidden_units", [8, 16], default=16)
    first = hparams.stage(_write(tmp_path, tuned.get_config()), tmp_path / "out")
    second = hparams.stage(_write(tmp_path, {"hidden_units": 8}), tmp_path / "out")
    assert first != second  # the Importer sees a new URI for new values
    assert hparams.stage(_write(tmp_path, {"hidden_units": 8}), tmp_path / "out") == second


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", r"hp\.json: not JSON"),
     ([1, 2], r"hp\.json: expected a JSON object"),
     ({"dropout": 0.5}, r"hp\.json: field dropout: unknown hyperparameter"),
     ({"hidden_units": "many"}, r"hp\.json: field hidden_units: expected a positive number")],
)
def test_bad_hparams_name_file_and_field(tmp_path, content, message):
    with pytest.raises(InputError, match=message):
        hparams.stage(_write(tmp_path, content), tmp_path / "out")
