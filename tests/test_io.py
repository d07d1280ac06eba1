"""audiotask.io: files written whole or not at all."""

import pytest

from audiotask.engine.locks import local_writer
from audiotask.io import replaced_atomically, write_text_atomically


def test_a_write_that_fails_leaves_the_previous_file_and_no_temporary_one(tmp_path):
    path = write_text_atomically(tmp_path / "model.json", "old")
    with pytest.raises(RuntimeError, match="killed"):
        with replaced_atomically(path) as partial:
            partial.write_text("half of the ne")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]


def test_a_write_that_ends_replaces_the_file_and_its_temporary_name_names_its_writer(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"old")
    with replaced_atomically(path, sync=True) as partial:
        import os

        assert partial.parent == tmp_path and local_writer(partial.name) == os.getpid()  # leftovers are recognised
        partial.write_bytes(b"new")
        assert path.read_bytes() == b"old"  # nothing visible before the end
    assert path.read_bytes() == b"new" and not partial.exists()


def test_save_pretrained_leaves_no_temporary_file(tmp_path):
    from audiotask.core.specifications import Problem, Resolution, Specifications
    from audiotask.models import Debug

    model = Debug()
    model.attach_specifications(Specifications(problem=Problem.MULTI_LABEL_CLASSIFICATION,
                                               resolution=Resolution.FRAME, duration=2.0, classes=["a", "b"]))
    model.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["audiotask.json", "model.safetensors"]


def test_an_output_writer_that_refuses_midway_leaves_the_previous_output(tmp_path):
    from audiotask.inference.formats import write_tags_tsv

    path = tmp_path / "tags.tsv"
    write_tags_tsv(path, {"a.wav": ["Dog"]})
    with pytest.raises(ValueError, match="comma"):
        write_tags_tsv(path, {"a.wav": ["Cat"], "b.wav": ["Dog,Cat"]})  # refused at its second row
    assert path.read_text().splitlines()[1:] == ["a.wav\tDog"] and sorted(p.name for p in tmp_path.iterdir()) == ["tags.tsv"]
