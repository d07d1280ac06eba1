"""`audiotask apply` over many files: read-ahead, worker processes, the files/s line.

Files are decoded in a thread while the model runs on the one before; with --workers N,
N processes share the files and the outputs are those of one process.
"""

import re
import threading

import numpy as np
import pytest
import soundfile
import torch

from audiotask.cli.main import main
from audiotask.core.audio import AudioError
from audiotask.inference.reading import decode_file, read_ahead
from helpers import saved_debug_frame_model, stderr_lines

CLASSES = ["Cat", "Dog"]
#: name -> (seconds, sample rate): one file resampled, one shorter than the model's chunk
FILES = {"a.wav": (3.0, 16000), "b.wav": (1.5, 22050), "c.wav": (2.5, 16000)}
THROUGHPUT = re.compile(r"^(\d+) files \((\d+\.\d) s of audio\) in \d+\.\d s: \d+\.\d files/s, "
                        r"real-time factor \d+\.\d{4}$")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return saved_debug_frame_model(tmp_path_factory.mktemp("model"), CLASSES)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The files of FILES, and random bytes named corrupt.wav."""
    folder = tmp_path_factory.mktemp("audio")
    for seed, (name, (seconds, rate)) in enumerate(FILES.items()):
        samples = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate))
        soundfile.write(folder / name, samples.astype(np.float32), rate)
    (folder / "corrupt.wav").write_bytes(np.random.default_rng(1).bytes(4000))
    return folder


# ---- read-ahead ------------------------------------------------------------------------------
def test_read_ahead_yields_every_item_in_order_with_an_error_in_place_of_its_result(folder):
    paths = sorted(folder.iterdir())
    read = list(read_ahead(paths, lambda path: decode_file(path, 16000)))
    assert [path for path, _ in read] == paths
    for path, audio in read:
        if path.name == "corrupt.wav":
            assert isinstance(audio, AudioError) and str(path) in str(audio)
            continue
        seconds, rate = FILES[path.name]
        assert audio.path == path and audio.sample_rate == 16000 and audio.duration == seconds
        assert audio.waveform.shape[0] == 1 and abs(audio.waveform.shape[1] - 16000 * seconds) <= 1


def test_read_ahead_reads_the_next_items_while_the_caller_works_on_one():
    calls, done = [], {index: threading.Event() for index in range(5)}

    def read(index):
        calls.append(index)
        done[index].set()
        return 10 * index

    stream = read_ahead(range(5), read, depth=2)
    assert next(stream) == (0, 0)
    # items 1 and 2 are read while the caller holds item 0, and no further one
    assert done[2].wait(timeout=10)
    assert calls == [0, 1, 2]
    assert list(stream) == [(index, 10 * index) for index in range(1, 5)]
    assert calls == [0, 1, 2, 3, 4]


def test_a_caller_that_stops_early_leaves_the_rest_unread():
    calls = []
    stream = read_ahead(range(100), calls.append, depth=3)
    assert next(stream) == (0, None)
    stream.close()
    # the item held and at most the three read ahead, in order
    assert calls[:1] == [0] and calls == list(range(len(calls))) and len(calls) <= 4


# ---- apply -----------------------------------------------------------------------------------
def apply(model, folder, output, *options):
    return main(["apply", str(model), str(folder), "--output", str(output), "--no-progress", *options])


@pytest.fixture
def threads_of_two_workers():
    """This process running torch on the threads each of two workers gets: torch's kernels
    can round differently on another number of threads (a last bit of float32)."""
    from audiotask.cli.apply_files import available_cores

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, available_cores() // 2))
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_workers_write_the_outputs_of_one_process_and_name_the_corrupt_file(model, folder, tmp_path, capsys,
                                                                             threads_of_two_workers):
    capsys.readouterr()
    outputs = {}
    for workers in (1, 2):
        out = tmp_path / f"workers-{workers}"
        assert apply(model, folder, out, "--onset", "0.3", "--workers", str(workers)) == 1
        errors = stderr_lines(capsys)
        assert len(errors) == 2 and errors[0].startswith("audiotask apply: failed: ")
        assert str(folder / "corrupt.wav") in errors[0] and "Cannot decode audio file" in errors[0]
        assert errors[1] == "audiotask apply: 1 of 4 files failed; outputs written for the other 3"
        outputs[workers] = {path.relative_to(out): path.read_bytes() for path in sorted(out.rglob("*.tsv"))}
    assert sorted(map(str, outputs[1])) == ["detections.tsv", "scores/a.tsv", "scores/b.tsv", "scores/c.tsv"]
    assert outputs[2] == outputs[1]


@pytest.fixture(scope="module")
def embedding_model(tmp_path_factory):
    """An untrained CRNN of a few thousand parameters, saved as a speaker embedding model."""
    from audiotask.core.specifications import Specifications
    from audiotask.models import CRNN

    torch.manual_seed(0)
    crnn = CRNN(channels=(8, 16), time_pooling=(2, 2), n_mels=32, hidden_size=16)
    crnn.attach_specifications(Specifications(problem="representation", resolution="chunk", duration=1.0,
                                              extra={"task": "speaker-embedding", "dimension": 8}))
    return crnn.save_pretrained(tmp_path_factory.mktemp("embedding") / "model")


def test_workers_embed_the_segments_of_one_process_and_decode_no_file_without_one(embedding_model, folder, tmp_path,
                                                                                 capsys, threads_of_two_workers):
    from audiotask.inference.formats import read_embeddings

    model = embedding_model
    rttm = tmp_path / "turns.rttm"
    rttm.write_text("SPEAKER a 1 0.25 1.0 <NA> <NA> A <NA> <NA>\nSPEAKER a 1 1.5 1.2 <NA> <NA> B <NA> <NA>\n"
                    "SPEAKER c 1 0.0 0.5 <NA> <NA> A <NA> <NA>\n")
    embeddings = {}
    for workers in (1, 2):
        capsys.readouterr()
        # corrupt.wav has no turn: as b.wav, it is not even decoded, and nothing fails
        out = tmp_path / f"out-{workers}"
        assert apply(model, folder, out, "--segments", str(rttm), "--workers", str(workers)) == 0
        assert stderr_lines(capsys)[-1] == (f"audiotask apply: warning: {rttm} has no segment of 2 file(s), which get "
                                            "no embedding: b.wav, corrupt.wav")
        embeddings[workers] = read_embeddings(out / "embeddings.safetensors")
    assert sorted(embeddings[1]) == ["a/0.250-1.250", "a/1.500-2.700", "c/0.000-0.500"]
    assert embeddings[2].keys() == embeddings[1].keys()
    for key, vector in embeddings[1].items():
        np.testing.assert_array_equal(embeddings[2][key], vector)


def test_a_turn_past_the_end_of_a_file_read_ahead_is_named_with_the_file(embedding_model, folder, tmp_path, capsys):
    rttm = tmp_path / "turns.rttm"
    rttm.write_text("SPEAKER a 1 0.0 1.0 <NA> <NA> A <NA> <NA>\nSPEAKER c 1 5.0 1.0 <NA> <NA> A <NA> <NA>\n")
    capsys.readouterr()
    assert apply(embedding_model, folder, tmp_path / "out", "--segments", str(rttm)) == 1
    failed = [line for line in stderr_lines(capsys) if line.startswith("audiotask apply: failed: ")]
    assert failed == [f"audiotask apply: failed: {folder / 'c.wav'}: segment [5.0, 6.0] holds no sample of the "
                      "file (2.500 s long)."]


def test_apply_ends_with_the_files_per_second_line(model, folder, tmp_path, capsys):
    capsys.readouterr()
    assert apply(model, folder, tmp_path / "out") == 1
    last = capsys.readouterr().out.splitlines()[-1]
    match = THROUGHPUT.match(last)
    assert match, last
    # the files processed and their audio: the corrupt one is in neither
    assert match.group(1) == "3" and match.group(2) == f"{sum(s for s, _ in FILES.values()):.1f}"


def test_a_file_read_ahead_gets_the_scores_of_inference_reading_its_path(model, folder, tmp_path):
    from audiotask.inference.formats import scores_to_dataframe, write_scores
    from audiotask.inference.inference import Inference

    path = folder / "b.wav"  # resampled: its scores still end where its header says it ends
    expected = scores_to_dataframe(Inference(model)(str(path)), end=soundfile.info(str(path)).duration)
    write_scores(tmp_path / "expected", {"b.wav": expected})
    assert apply(model, path, tmp_path / "out") == 0
    assert (tmp_path / "out" / "scores" / "b.tsv").read_bytes() == (tmp_path / "expected" / "b.tsv").read_bytes()


def test_workers_below_one_are_refused_in_one_line(model, folder, tmp_path, capsys):
    capsys.readouterr()
    assert apply(model, folder, tmp_path / "out", "--workers", "0") == 2
    [line] = stderr_lines(capsys)
    assert line == "audiotask apply: error: --workers must be at least 1 (processes sharing the files), got 0"
    assert not (tmp_path / "out").exists()


def test_an_error_no_file_caused_is_raised_in_apply_with_the_workers_traceback(model, folder, tmp_path):
    from audiotask.cli.apply_files import Setup, WorkerTraceback, process_in_workers
    from audiotask.cli.apply_outputs import EventOutputs
    from audiotask.cli.main import build_parser

    # the workers find an empty folder where apply's process found a model
    moved = tmp_path / "model"
    moved.mkdir()
    args = build_parser().parse_args(["apply", str(moved), str(folder), "--output", str(tmp_path / "out")])
    with pytest.raises(ValueError, match=f"cannot load the model {moved}") as raised:
        list(process_in_workers(Setup(args, EventOutputs, {}, None, "cpu"), sorted(folder.iterdir()), 2))
    assert isinstance(raised.value.__cause__, WorkerTraceback)
    assert "load_model" in str(raised.value.__cause__)


# ---- --stream ---------------------------------------------------------------------------------
def test_stream_writes_the_offline_outputs_and_says_its_latency(model, folder, tmp_path, capsys):
    import pandas as pd

    capsys.readouterr()
    assert apply(model, folder, tmp_path / "offline", "--onset", "0.3") == 1
    capsys.readouterr()
    assert apply(model, folder, tmp_path / "stream", "--onset", "0.3", "--stream", "--block", "0.3") == 1
    out = capsys.readouterr().out.splitlines()
    # the Debug model's 2-s window of 16-ms frames, its encoder reading its own frame only
    assert out[0] == "streamed in blocks of 0.3 s: each score out at most 1.98 s after its frame ends (plus one block)"
    assert THROUGHPUT.match(out[-1]).group(1) == "3"
    assert (tmp_path / "stream" / "detections.tsv").read_text() == (tmp_path / "offline" / "detections.tsv").read_text()
    for name in FILES:  # b.wav is resampled block by block: soxr's stream, within its rounding
        streamed = pd.read_csv(tmp_path / "stream" / "scores" / name.replace(".wav", ".tsv"), sep="\t")
        offline = pd.read_csv(tmp_path / "offline" / "scores" / name.replace(".wav", ".tsv"), sep="\t")
        assert streamed.shape == offline.shape
        np.testing.assert_allclose(streamed.to_numpy(), offline.to_numpy(), atol=1e-3)


def test_stream_options_are_checked_in_one_line(model, folder, tmp_path, capsys):
    capsys.readouterr()
    assert apply(model, folder, tmp_path / "out", "--block", "0.5") == 2
    assert stderr_lines(capsys) == ["audiotask apply: error: --block is the block size of --stream: give --stream too"]
    assert apply(model, folder, tmp_path / "out", "--stream", "--block", "0") == 2
    assert "--block must be a positive number of seconds, got 0.0" in stderr_lines(capsys)[0]
