"""Versions appear whole, increase, and identical models are not pushed twice."""

import tensorflow as tf

from pipeline import model_versions
from pipeline.components import atomic_pusher


def test_first_push_creates_an_integer_version(tmp_path, fake_saved_model):
    model = str(fake_saved_model(tmp_path / "m1", "one"))
    version, pushed = atomic_pusher.push_atomically(model, str(tmp_path / "serving"))
    assert pushed
    assert model_versions.served_versions(str(tmp_path / "serving")) == [version]
    served = tmp_path / "serving" / str(version) / "saved_model.pb"
    assert served.read_bytes() == b"graph one"
    assert not list((tmp_path / "serving").glob(".partial-*"))


def test_identical_model_is_not_pushed_again(tmp_path, fake_saved_model):
    model = str(fake_saved_model(tmp_path / "m1", "one"))
    first, _ = atomic_pusher.push_atomically(model, str(tmp_path / "serving"))
    again, pushed = atomic_pusher.push_atomically(model, str(tmp_path / "serving"))
    assert (again, pushed) == (first, False)


def test_new_model_gets_a_higher_version_even_within_the_same_second(
    tmp_path, fake_saved_model
):
    serving = str(tmp_path / "s")
    one, two = fake_saved_model(tmp_path / "m1", "one"), fake_saved_model(tmp_path / "m2", "two")
    first, _ = atomic_pusher.push_atomically(str(one), serving)
    second, pushed = atomic_pusher.push_atomically(str(two), serving)
    assert pushed and second > first
    assert model_versions.served_versions(serving) == [first, second]  # rollback stays


def test_leftover_of_an_interrupted_push_is_cleaned_and_never_served(tmp_path, fake_saved_model):
    serving = tmp_path / "serving"
    leftover = serving / f"{model_versions.PARTIAL_PREFIX}123"
    leftover.mkdir(parents=True)
    (leftover / "variables.data").write_bytes(b"half")
    assert model_versions.served_versions(str(serving)) == []  # TF Serving ignores it
    model = fake_saved_model(tmp_path / "m", "x")
    version, _ = atomic_pusher.push_atomically(str(model), str(serving))
    assert not leftover.exists()
    assert model_versions.served_versions(str(serving)) == [version]


def test_object_store_push_writes_saved_model_pb_and_keeps_versions(tmp_path, fake_saved_model):
    # TensorFlow's in-memory filesystem stands in for gs://: a URI scheme, no atomic rename.
    serving = "ram://serving-test/social_network_ads"
    one, two = fake_saved_model(tmp_path / "m1", "one"), fake_saved_model(tmp_path / "m2", "two")
    first, _ = atomic_pusher.push_atomically(str(one), serving)
    second, pushed = atomic_pusher.push_atomically(str(two), serving)
    assert pushed and model_versions.served_versions(serving) == [first, second]
    with tf.io.gfile.GFile(f"{serving}/{second}/saved_model.pb", "rb") as handle:
        assert handle.read() == b"graph two"
    assert tf.io.gfile.exists(f"{serving}/{second}/variables/variables.data-00000-of-00001")
