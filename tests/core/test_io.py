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


def test_table_rows_number_lines_as_an_editor_does_and_leave_out_blank_and_comment_rows(tmp_path):
    from audiotask.io import table_rows

    path = tmp_path / "t.tsv"
    path.write_text('filename\tonset\n\n# a comment\na.wav\t1.0\n"b\nc.wav"\t2.0\n\t \nd.wav\t3.0\n', encoding="utf-8")
    assert table_rows(path, comment="#") == [
        (1, ["filename", "onset"]), (4, ["a.wav", "1.0"]), (6, ["b\nc.wav", "2.0"]), (8, ["d.wav", "3.0"])]
    assert (3, ["# a comment"]) in table_rows(path)
    bom = tmp_path / "t.csv"
    bom.write_bytes("\ufeffa,b\n".encode("utf-8"))
    assert table_rows(bom, delimiter=",", encoding="utf-8-sig") == [(1, ["a", "b"])]


def test_a_table_that_is_not_utf8_is_one_error_naming_file_and_line(tmp_path):
    from audiotask.io import naming_bad_text, read_text, table_rows

    path = tmp_path / "latin.tsv"
    path.write_bytes(b"a\t1\nb\t2\ncaf\xe9\t3\n")
    for read in (lambda: table_rows(path), lambda: read_text(path)):
        with pytest.raises(ValueError, match=r"latin.tsv, line 3: not UTF-8 text \(byte 0xe9\)"):
            read()
    with pytest.raises(ValueError, match="line 3: not UTF-8"), naming_bad_text(path):
        path.read_text(encoding="utf-8")


def test_load_protocol_names_a_missing_configuration_and_an_unknown_protocol(tmp_path):
    from audiotask.protocols.loading import UnknownProtocolError, load_protocol
    from audiotask.testing.dummies import make_sound_event_protocol

    with pytest.raises(FileNotFoundError, match="no such database file: .*missing.yml"):
        load_protocol("X.SpeakerDiarization.Y", [tmp_path / "missing.yml"])
    yml = make_sound_event_protocol(tmp_path)
    assert len(list(load_protocol("Tiny.SpeakerDiarization.Events", [yml]).train())) == 3
    with pytest.raises(UnknownProtocolError, match="unknown protocol 'Nope.SpeakerDiarization.Nope'"):
        load_protocol("Nope.SpeakerDiarization.Nope", [yml])
