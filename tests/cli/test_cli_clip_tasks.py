"""The command line for the clip and representation tasks: classification, tagging, SNR
estimation, speaker embedding (apply's outputs, evaluate's reports, train's options).

Models are tiny untrained CRNNs saved with their specifications: what apply writes is
checked against the library functions it is made of, and evaluate's figures against values
worked out by hand.
"""

import csv
import json

import numpy as np
import pytest
import soundfile
import torch

from audiotask.cli.common import CommandError
from audiotask.cli.main import main

SAMPLE_RATE = 16000
CLASSES = ["bird", "car", "dog"]
#: seconds of each generated file: longer and shorter than the models' 1-s chunks
DURATIONS = {"one.wav": 2.3, "two.wav": 1.0, "three.wav": 0.7}
TASKS = ("audio-classification", "audio-tagging", "snr-estimation", "speaker-embedding")


def read_csv(path, delimiter=","):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle, delimiter=delimiter))


def stderr_lines(capsys):
    # less dcase_util's pkg_resources deprecation, which pytest's warning filters let through
    return [line for line in capsys.readouterr().err.splitlines() if line.strip() and "pkg_resources" not in line]


def tiny_model(folder, task):
    """An untrained CRNN of a few thousand parameters, saved as a model of ``task``."""
    from audiotask.core.specifications import Specifications
    from audiotask.models import CRNN

    problem, resolution, classes, extra = {
        "audio-classification": ("mono_label_classification", "chunk", CLASSES, {}),
        "audio-tagging": ("multi_label_classification", "chunk", CLASSES, {}),
        "snr-estimation": ("regression", "frame", ["snr"], {}),
        "speaker-embedding": ("representation", "chunk", None, {"dimension": 8}),
    }[task]
    torch.manual_seed(0)
    model = CRNN(channels=(8, 16), time_pooling=(2, 2), n_mels=32, hidden_size=16)
    model.attach_specifications(Specifications(problem=problem, resolution=resolution, duration=1.0, classes=classes,
                                               extra={"task": task, **extra}))
    return model.save_pretrained(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {task: tiny_model(root / task, task) for task in TASKS}


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio")
    for seed, (name, seconds) in enumerate(DURATIONS.items()):
        samples = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SAMPLE_RATE))
        soundfile.write(folder / name, samples.astype(np.float32), SAMPLE_RATE)
    return folder


def apply(model, audio, output, *options):
    return main(["apply", str(model), str(audio), "--output", str(output), "--no-progress", *options])


# ---- apply: each task's outputs ------------------------------------------------------------
def test_apply_classifier_writes_one_row_per_file_labelled_with_its_top_class(models, audio, tmp_path):
    from audiotask.inference.clip_scores import clip_scores
    from audiotask.inference.inference import Inference

    assert apply(models["audio-classification"], audio, tmp_path) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["predictions.csv"]
    header, *rows = read_csv(tmp_path / "predictions.csv")
    assert header == ["filename", "label", *CLASSES]
    assert [row[0] for row in rows] == sorted(DURATIONS)
    inference = Inference(models["audio-classification"])
    for filename, label, *scores in rows:
        values = np.array(scores, dtype=float)
        assert all(len(score.split(".")[1]) == 6 for score in scores)
        assert label == CLASSES[int(values.argmax())]
        np.testing.assert_allclose(values, clip_scores(inference, str(audio / filename)), atol=1e-6)
        assert values.sum() == pytest.approx(1.0, abs=1e-5)  # the mean of softmax outputs


def test_apply_tagger_writes_scores_and_the_tags_at_or_above_the_onset(models, audio, tmp_path):
    model = models["audio-tagging"]
    assert apply(model, audio, tmp_path / "default") == 0
    header, *rows = read_csv(tmp_path / "default" / "scores.csv")
    assert header == ["filename", *CLASSES] and [row[0] for row in rows] == sorted(DURATIONS)
    scores = {row[0]: np.array(row[1:], dtype=float) for row in rows}
    # a threshold amid the scores (between two of them: the file rounds them), so that some
    # classes are tags and some are not
    ordered = np.sort(np.concatenate(list(scores.values())))
    onset = float(ordered[4] + ordered[5]) / 2
    assert apply(model, audio, tmp_path / "onset", "--onset", repr(onset)) == 0
    header, *tags = read_csv(tmp_path / "onset" / "tags.tsv", delimiter="\t")
    assert header == ["filename", "event_labels"]
    expected = {name: ",".join(c for c, s in zip(CLASSES, values) if s >= onset) for name, values in scores.items()}
    assert dict(tags) == expected
    assert any(expected.values()) and not all(value == ",".join(CLASSES) for value in expected.values())


def test_apply_snr_writes_frame_estimates_and_each_files_mean(models, audio, tmp_path):
    import pandas as pd

    from audiotask.inference.inference import Inference

    assert apply(models["snr-estimation"], audio, tmp_path) == 0
    frames = {path.stem: pd.read_csv(path, sep="\t") for path in (tmp_path / "snr").iterdir()}
    assert sorted(frames) == sorted(name[:-4] for name in DURATIONS)
    inference = Inference(models["snr-estimation"])
    for name, seconds in DURATIONS.items():
        table = frames[name[:-4]]
        assert list(table.columns) == ["onset", "offset", "snr"]
        # frames of 64 ms up to the file's end (a last part shorter than a frame has none)
        assert table["onset"].iloc[0] == 0.0 and seconds - 0.064 < table["offset"].iloc[-1] <= seconds
        estimates = inference(str(audio / name)).data[:, 0]
        np.testing.assert_allclose(table["snr"], estimates[: len(table)], rtol=1e-5)
    header, *rows = read_csv(tmp_path / "snr.csv")
    assert header == ["filename", "snr"] and [row[0] for row in rows] == sorted(DURATIONS)
    for filename, mean in rows:
        table = frames[filename[:-4]]
        expected = np.average(table["snr"], weights=table["offset"] - table["onset"])
        assert float(mean) == pytest.approx(expected, abs=5e-4)


def test_apply_embeds_each_file_in_either_format(models, audio, tmp_path):
    from audiotask.inference.embeddings import file_embedding
    from audiotask.inference.formats import read_embeddings

    model = models["speaker-embedding"]
    assert apply(model, audio, tmp_path / "st") == 0
    assert [path.name for path in (tmp_path / "st").iterdir()] == ["embeddings.safetensors"]
    assert apply(model, audio, tmp_path / "npy", "--embedding-format", "npy") == 0
    assert sorted(path.name for path in (tmp_path / "npy").iterdir()) == ["embeddings.npy", "embeddings.txt"]
    assert (tmp_path / "npy" / "embeddings.txt").read_text().splitlines() == sorted(n[:-4] for n in DURATIONS)
    embeddings = read_embeddings(tmp_path / "st" / "embeddings.safetensors")
    assert sorted(embeddings) == sorted(name[:-4] for name in DURATIONS)
    for name in DURATIONS:  # the model alone hops half a chunk, as apply does without --step
        assert embeddings[name[:-4]].shape == (8,)
        np.testing.assert_allclose(embeddings[name[:-4]], file_embedding(model, str(audio / name)), atol=1e-5)
    npy = read_embeddings(tmp_path / "npy" / "embeddings.npy")
    assert npy.keys() == embeddings.keys()
    for key in embeddings:
        np.testing.assert_array_equal(npy[key], embeddings[key])


def test_apply_embeds_each_segment_of_an_rttm(models, audio, tmp_path, capsys):
    from audiotask.inference.embeddings import segment_embeddings
    from audiotask.inference.formats import read_embeddings

    model = models["speaker-embedding"]
    rttm = tmp_path / "turns.rttm"
    # two speakers over one turn of "one" give it one key; "three" has no turn; "elsewhere" is not given
    rttm.write_text("SPEAKER one 1 0.25 1.0 <NA> <NA> A <NA> <NA>\nSPEAKER one 1 0.25 1.0 <NA> <NA> B <NA> <NA>\n"
                    "SPEAKER one 1 1.5 0.6666 <NA> <NA> A <NA> <NA>\nSPEAKER two 1 0.0 0.5 <NA> <NA> C <NA> <NA>\n"
                    "SPEAKER elsewhere 1 0.0 0.5 <NA> <NA> C <NA> <NA>\n")
    capsys.readouterr()
    assert apply(model, audio, tmp_path / "out", "--segments", str(rttm)) == 0
    assert stderr_lines(capsys) == [f"audiotask apply: warning: {rttm} has no segment of 1 file(s), which get no "
                                    "embedding: three.wav"]
    embeddings = read_embeddings(tmp_path / "out" / "embeddings.safetensors")
    assert sorted(embeddings) == ["one/0.250-1.250", "one/1.500-2.167", "two/0.000-0.500"]
    expected = segment_embeddings(model, str(audio / "one.wav"), [(0.25, 1.25), (1.5, 2.1666)])
    np.testing.assert_allclose(embeddings["one/0.250-1.250"], expected[0], atol=1e-5)
    np.testing.assert_allclose(embeddings["one/1.500-2.167"], expected[1], atol=1e-5)


@pytest.mark.parametrize("task, written", [
    ("audio-classification", ["predictions.csv"]),
    ("audio-tagging", ["scores.csv", "tags.tsv"]),
    ("snr-estimation", ["snr", "snr.csv"]),
    ("speaker-embedding", ["embeddings.safetensors"]),
])
def test_apply_writes_the_outputs_of_the_good_files_and_names_a_corrupt_one(models, audio, tmp_path, capsys, task,
                                                                            written):
    from audiotask.inference.formats import read_embeddings

    folder = tmp_path / "audio"
    folder.mkdir()
    for name in DURATIONS:
        (folder / name).symlink_to(audio / name)
    (folder / "corrupt.wav").write_bytes(np.random.default_rng(1).bytes(4000))
    capsys.readouterr()
    assert apply(models[task], folder, tmp_path / "out") == 1
    errors = stderr_lines(capsys)
    assert errors[0].startswith("audiotask apply: failed: ") and str(folder / "corrupt.wav") in errors[0]
    assert errors[1:] == ["audiotask apply: 1 of 4 files failed; outputs written for the other 3"]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == written
    if task == "speaker-embedding":
        keys = sorted(read_embeddings(tmp_path / "out" / written[0]))
    elif task == "snr-estimation":
        keys = sorted(path.name[:-4] + ".wav" for path in (tmp_path / "out" / "snr").iterdir())
    else:
        keys = [row[0] for row in read_csv(tmp_path / "out" / written[0])[1:]]
    assert keys == sorted(name if task != "speaker-embedding" else name[:-4] for name in DURATIONS)


@pytest.mark.parametrize("task, options, message", [
    ("audio-classification", ["--median-filter", "0.2", "--format", "rttm"],
     "--median-filter, --format do not apply to the audio-classification model"),
    ("audio-classification", ["--onset", "0.3"], "--onset does not apply to the audio-classification model"),
    ("audio-tagging", ["--offset", "0.2"], "--offset does not apply to the audio-tagging model"),
    ("snr-estimation", ["--segments", "{rttm}"], "--segments does not apply to the snr-estimation model"),
    ("speaker-embedding", ["--no-tuned"], "--no-tuned does not apply to the speaker-embedding model"),
    ("detection", ["--embedding-format", "npy"], "--embedding-format does not apply to the detection model"),
    ("speaker-embedding", ["--segments", "{missing}"], "no such file: "),
])
def test_apply_refuses_options_the_models_task_does_not_take(models, audio, tmp_path, capsys, task, options, message):
    from audiotask.core.specifications import Problem, Resolution, Specifications
    from audiotask.models import Debug

    if task == "detection":
        model = Debug(hidden_size=8)
        model.attach_specifications(Specifications(Problem.MULTI_LABEL_CLASSIFICATION, Resolution.FRAME, 1.0,
                                                   classes=CLASSES))
        path = model.save_pretrained(tmp_path / "detector")
    else:
        path = models[task]
    (tmp_path / "turns.rttm").write_text("SPEAKER one 1 0.0 0.5 <NA> <NA> A <NA> <NA>\n")
    options = [option.format(rttm=tmp_path / "turns.rttm", missing=tmp_path / "none.rttm") for option in options]
    capsys.readouterr()
    assert apply(path, audio / "one.wav", tmp_path / "out", *options) == 2
    [line] = stderr_lines(capsys)
    assert line.startswith("audiotask apply: error: ") and message in line, line
    assert not (tmp_path / "out").exists()


# ---- evaluate: classification, tagging, verification ----------------------------------------
def write_predictions(path, rows, classes=("Cat", "Dog")):
    """predictions.csv from ``{filename: (label, scores)}``."""
    path.write_text(f"filename,label,{','.join(classes)}\n" + "".join(
        f"{name},{label},{','.join(map(str, scores))}\n" for name, (label, scores) in rows.items()))
    return path


#: a.wav, b.wav are Cat, c.wav, d.wav Dog; b.wav is predicted Dog: 3 of 4 right
REFERENCE_CSV = "filename,label,fold\na.wav,Cat,1\nb.wav,Cat,1\nc.wav,Dog,2\nd.wav,Dog,2\n"
PREDICTIONS = {"a.wav": ("Cat", (0.9, 0.1)), "b.wav": ("Dog", (0.4, 0.6)), "c.wav": ("Dog", (0.2, 0.8)),
               "d.wav": ("Dog", (0.3, 0.7))}


@pytest.fixture
def classification(tmp_path):
    (tmp_path / "reference.csv").write_text(REFERENCE_CSV)
    (tmp_path / "reference.tsv").write_text("filename\tevent_labels\na.wav\tCat\nb.wav\tCat\nc.wav\tDog\nd.wav\tDog\n")
    write_predictions(tmp_path / "predictions.csv", PREDICTIONS)
    return tmp_path


def test_evaluate_classification_reports_accuracy_f1_and_confusion(classification, capsys):
    root = classification
    for reference in ("reference.csv", "reference.tsv"):
        capsys.readouterr()
        assert main(["evaluate", "--task", "classification", str(root / reference), str(root / "predictions.csv"),
                     "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["accuracy"] == pytest.approx(0.75)
        # Cat: precision 1, recall 1/2, F1 2/3; Dog: precision 2/3, recall 1, F1 4/5
        assert report["per_class"]["Cat"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
        assert report["per_class"]["Dog"]["f1"] == pytest.approx(0.8)
        assert report["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
        assert report["confusion"] == [[1, 1], [0, 2]] and report["classes"] == ["Cat", "Dog"]
    assert main(["evaluate", "--task", "audio-classification", str(root / "reference.csv"),
                 str(root / "predictions.csv"), "--plot", str(root / "plots" / "confusion.png")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("accuracy 75.00 %, macro F1 73.33 %") and "confusion" in out
    assert (root / "plots" / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("change, status, message", [
    # a reference file without prediction: an error naming it
    (lambda p: p.pop("d.wav"), 2, "error: {predictions} has no prediction for 1 file(s) of {reference}: d.wav"),
    # a prediction for a file the reference lacks: left out, with a warning naming it
    (lambda p: p.update({"e.wav": ("Dog", (0.0, 1.0))}), 0,
     "warning: {predictions} has predictions for 1 file(s) absent from {reference}, not evaluated: e.wav"),
])
def test_evaluate_classification_names_files_missing_on_either_side(classification, capsys, change, status, message):
    predictions = dict(PREDICTIONS)
    change(predictions)
    write_predictions(classification / "predictions.csv", predictions)
    names = {"predictions": classification / "predictions.csv", "reference": classification / "reference.csv"}
    capsys.readouterr()
    assert main(["evaluate", "--task", "classification", str(names["reference"]), str(names["predictions"])]) == status
    [line] = stderr_lines(capsys)
    assert line == "audiotask evaluate: " + message.format(**names)


def test_evaluate_classification_refuses_labels_outside_the_classes_and_several_labels(classification, capsys):
    reference, predictions = classification / "reference.csv", classification / "predictions.csv"
    reference.write_text(REFERENCE_CSV.replace("d.wav,Dog", "d.wav,Dgo"))
    assert main(["evaluate", "--task", "classification", str(reference), str(predictions)]) == 2
    assert stderr_lines(capsys) == [f"audiotask evaluate: error: {reference} has label(s) that are none of the "
                                    f"classes of {predictions} (Cat, Dog): 'Dgo' (e.g. d.wav)"]
    weak = classification / "reference.tsv"
    weak.write_text("filename\tevent_labels\na.wav\tCat,Dog\nb.wav\tCat\nc.wav\tDog\nd.wav\tDog\n")
    assert main(["evaluate", "--task", "classification", str(weak), str(predictions)]) == 2
    [line] = stderr_lines(capsys)
    assert "classification takes one label per file" in line and "a (Cat, Dog)" in line
    # a tagger's scores.csv has no label column
    tagger = classification / "scores.csv"
    tagger.write_text("filename,Cat,Dog\na.wav,0.1,0.9\n")
    assert main(["evaluate", "--task", "classification", str(reference), str(tagger)]) == 2
    assert "has no label column" in stderr_lines(capsys)[0]


def test_evaluate_tagging_reports_average_precision(tmp_path, capsys):
    reference = tmp_path / "tags.tsv"
    reference.write_text("filename\tevent_labels\na.wav\tCat\nb.wav\tDog\nc.wav\tCat,Dog\n")
    scores = tmp_path / "scores.csv"
    scores.write_text("filename,Cat,Dog,Cow\na.wav,0.9,0.2,0.1\nb.wav,0.8,0.7,0.1\nc.wav,0.1,0.6,0.1\n")
    capsys.readouterr()
    assert main(["evaluate", "--task", "tagging", str(reference), str(scores), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    # Cat ranks a (+), b (-), c (+): AP (1/1 + 2/3) / 2; Dog ranks b (+), c (+), a (-): AP 1; Cow is never present
    assert report["per_class"] == {"Cat": pytest.approx(5 / 6), "Dog": pytest.approx(1.0), "Cow": None}
    assert report["mAP"] == pytest.approx((5 / 6 + 1.0) / 2)
    assert [line for line in captured.err.splitlines() if "pkg_resources" not in line] == [
        f"audiotask evaluate: warning: class(es) of {scores} never present in {reference}, without AP and left out "
        "of mAP: Cow"]
    # a clip CSV whose labels column holds several labels is read alike
    clips = tmp_path / "tags.csv"
    clips.write_text('filename,labels\na.wav,Cat\nb.wav,Dog\nc.wav,"Dog,Cat"\n')
    assert main(["evaluate", "--task", "audio-tagging", str(clips), str(scores)]) == 0
    assert capsys.readouterr().out.startswith("mAP 91.67 %")


@pytest.fixture
def verification(tmp_path):
    """Embeddings of two speakers, two recordings each, and trials that they separate."""
    from audiotask.inference.formats import write_embeddings

    embeddings = {"a1": np.array([1.0, 0.1, 0.0]), "a2": np.array([0.9, 0.0, 0.1]),
                  "b1": np.array([0.0, 1.0, 0.1]), "b2": np.array([0.1, 0.9, 0.0])}
    write_embeddings(tmp_path / "embeddings.safetensors", embeddings)
    write_embeddings(tmp_path / "embeddings.npy", embeddings)
    (tmp_path / "trials.txt").write_text("1 a1 a2.wav\n1 b1 b2\n0 a1 b1\n0 a2 b2\n0 a1 b2\n")
    return tmp_path


def test_evaluate_verification_of_separated_speakers_is_perfect(verification, capsys):
    for name in ("embeddings.safetensors", "embeddings.npy"):
        capsys.readouterr()
        assert main(["evaluate", "--task", "verification", "--trials", str(verification / "trials.txt"),
                     str(verification / name), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["eer"] == 0.0 and report["min_dcf"] == 0.0
        assert (report["trials"], report["targets"]) == (5, 2)
    assert main(["evaluate", "--task", "embedding", "--trials", str(verification / "trials.txt"),
                 str(verification / "embeddings.npy")]) == 0
    assert capsys.readouterr().out.startswith("EER 0.00 %")


def test_evaluate_verification_names_a_trial_without_embedding(verification, capsys):
    trials = verification / "trials.txt"
    trials.write_text("1 a1 a2\n0 a1 nobody.wav\n")
    capsys.readouterr()
    assert main(["evaluate", "--task", "verification", "--trials", str(trials),
                 str(verification / "embeddings.safetensors")]) == 2
    [line] = stderr_lines(capsys)
    assert line.startswith(f"audiotask evaluate: error: {trials}, line 2: ") and "'nobody.wav'" in line


@pytest.mark.parametrize("arguments, message", [
    (["--task", "verification", "{embeddings}"], "--task verification needs --trials TRIALS"),
    (["--task", "verification", "--trials", "{trials}", "{embeddings}", "{embeddings}"],
     "--task verification takes 1 file(s), EMBEDDINGS; got 2"),
    (["--task", "classification", "{embeddings}"], "--task classification takes 2 file(s), REFERENCE PREDICTIONS"),
    (["--task", "tagging", "--plot", "x.png", "{embeddings}", "{embeddings}"], "--plot does not apply to --task tagging"),
    (["--task", "classification", "--trials", "{trials}", "--uem", "x.uem", "{embeddings}", "{embeddings}"],
     "--uem, --trials do not apply to --task classification"),
    (["--task", "sed", "--trials", "{trials}", "{embeddings}", "{embeddings}"], "--trials does not apply to --task sed"),
])
def test_evaluate_refuses_arguments_the_evaluation_does_not_take(verification, capsys, arguments, message):
    names = {"embeddings": verification / "embeddings.npy", "trials": verification / "trials.txt"}
    capsys.readouterr()
    assert main(["evaluate", *(argument.format(**names) for argument in arguments)]) == 2
    [line] = stderr_lines(capsys)
    assert line.startswith("audiotask evaluate: error: ") and message in line, line


# ---- embeddings on disk ------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".safetensors", ".npy"])
def test_embeddings_read_back_as_written(tmp_path, suffix):
    from audiotask.inference.formats import read_embeddings, write_embeddings

    embeddings = {"spk/1.000-2.500": np.arange(4, dtype=np.float32), "a": -np.ones(4, dtype=np.float32)}
    written = write_embeddings(tmp_path / f"e{suffix}", embeddings)
    assert written == [tmp_path / f"e{suffix}"] + ([tmp_path / "e.txt"] if suffix == ".npy" else [])
    read = read_embeddings(tmp_path / f"e{suffix}")
    assert read.keys() == embeddings.keys()
    for key, value in embeddings.items():
        np.testing.assert_array_equal(read[key], value)
        assert read[key].dtype == np.float32
    with pytest.raises(ValueError, match="vectors of one size"):
        write_embeddings(tmp_path / f"f{suffix}", {"a": np.zeros(3), "b": np.zeros(4)})


def test_embeddings_of_a_matrix_and_keys_that_do_not_match_are_refused(tmp_path):
    from audiotask.inference.formats import read_embeddings, write_embeddings

    write_embeddings(tmp_path / "e.npy", {"a": np.zeros(2), "b": np.ones(2)})
    (tmp_path / "e.txt").write_text("a\n")
    with pytest.raises(ValueError, match=r"shape \(2, 2\) for the 1 keys"):
        read_embeddings(tmp_path / "e.npy")
    (tmp_path / "e.txt").write_text("a\na\n")
    with pytest.raises(ValueError, match="key 'a' is listed twice"):
        read_embeddings(tmp_path / "e.npy")
    (tmp_path / "e.txt").unlink()
    with pytest.raises(FileNotFoundError, match="keys file"):
        read_embeddings(tmp_path / "e.npy")


# ---- train: the options of the new tasks ----------------------------------------------------
def parse_train(*options):
    from audiotask.cli.main import build_parser

    return build_parser().parse_args(["train", "--protocol", "P", "--output", "unused", *options])


@pytest.mark.parametrize("task, options, expected", [
    ("classification", ["--fold", "2", "--classes", "a,b"], {"fold": "2", "classes": ["a", "b"]}),
    ("tagging", ["--fold", "1", "--duration", "3"], {"fold": "1", "duration": 3.0}),
    ("snr", ["--noise", "{noise}", "--snr-range", "0,20", "--loss", "mse"],
     {"noise": "{noise}", "snr_range": (0.0, 20.0), "loss": "mse"}),
    ("embedding", ["--speakers-per-batch", "4", "--margin", "0.3", "--scale", "20", "--dimension", "64"],
     {"speakers_per_batch": 4, "margin": 0.3, "scale": 20.0, "dimension": 64}),
])
def test_make_task_passes_the_new_tasks_their_options(monkeypatch, tmp_path, task, options, expected):
    from pathlib import Path

    from audiotask.cli import train
    from audiotask.tasks import registry

    built = {}

    def fake_task(protocol, **options):
        built.update(options)
        return "task"

    monkeypatch.setattr(registry.TaskEntry, "load", lambda entry: fake_task)
    options = [option.format(noise=tmp_path) for option in options]
    expected = {key: Path(tmp_path) if value == "{noise}" else value for key, value in expected.items()}
    assert train.make_task(parse_train("--task", task, "--batch-size", "4", *options), protocol=None) == "task"
    assert built == {"batch_size": 4, "cache": None, **expected}


@pytest.mark.parametrize("task, options, message", [
    ("sed", ["--fold", "1"], "--fold applies to --task classification, tagging only, not to --task sed"),
    ("classification", ["--noise", "x", "--margin", "0.1"],
     "--noise applies to --task snr only; --margin applies to --task embedding only, not to --task classification"),
    ("embedding", ["--fold", "all"], "--fold applies to --task classification, tagging only, not to --task embedding"),
    ("snr", [], "--task snr needs --noise"),
    ("snr", ["--noise", "{folder}", "--snr-range", "20,0"], "--snr-range: expected LOW <= HIGH, got '20,0'"),
    ("snr", ["--noise", "{folder}", "--snr-range", "loud"], "--snr-range: expected LOW,HIGH (two numbers), got 'loud'"),
    ("snr", ["--noise", "nowhere"], "--noise: nowhere is neither a folder of noise recordings nor a protocol name"),
])
def test_train_refuses_options_of_other_tasks_and_missing_ones(tmp_path, task, options, message):
    from audiotask.cli.train import make_task

    options = [option.format(folder=tmp_path) for option in options]
    with pytest.raises(CommandError) as error:
        make_task(parse_train("--task", task, *options), protocol=None)
    assert str(error.value) == message


def test_train_fold_all_cross_validates_then_apply_and_evaluate_the_folds_model(tmp_path, capsys):
    from audiotask.protocols.clip_tables import write_clip_database
    from audiotask.testing.clip_corpora import make_clip_dataset

    audio, labels = make_clip_dataset(tmp_path / "data", classes=2, clips_per_class=4, folds=2, duration=1.0)
    protocol = write_clip_database(audio, labels, tmp_path / "data" / "database.yml", name="TinyClips")
    arguments = ["train", "--database", str(tmp_path / "data" / "database.yml"), "--protocol", protocol,
                 "--task", "classification", "--model-option", "channels=[8,16]", "--model-option", "time_pooling=[2,2]",
                 "--model-option", "n_mels=32", "--model-option", "hidden_size=16", "--duration", "1",
                 "--batch-size", "4", "--max-steps", "2", "--num-workers", "0", "--cache", str(tmp_path / "cache"),
                 "--output", str(tmp_path / "run"), "--no-progress"]
    capsys.readouterr()
    assert main([*arguments, "--fold", "all"]) == 0
    out = capsys.readouterr().out
    assert "classification, 2 fold(s)" in out and "mean ± std" in out
    result = json.loads((tmp_path / "run" / "cross_validation.json").read_text())
    assert [fold["fold"] for fold in result["folds"]] == ["1", "2"]
    assert [fold["clips"] for fold in result["folds"]] == [4, 4]
    for fold in ("1", "2"):
        assert (tmp_path / "run" / f"fold-{fold}" / "model" / "audiotask.json").is_file()
    assert main([*arguments, "--fold", "all", "--resume", str(tmp_path / "run" / "fold-1" / "checkpoints" /
                                                            "last.ckpt")]) == 2
    assert "--resume continues one run" in capsys.readouterr().err
    # the fold's model classifies its clips; the clip CSV is the reference
    model = tmp_path / "run" / "fold-1" / "model"
    assert apply(model, audio, tmp_path / "out") == 0
    capsys.readouterr()
    assert main(["evaluate", "--task", "classification", str(labels), str(tmp_path / "out" / "predictions.csv"),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sum(map(sum, report["confusion"])) == 8


def test_clips_declares_a_labelled_clip_folder_that_trains_and_checks(tmp_path, capsys):
    from audiotask.testing.clip_corpora import make_clip_dataset

    audio, labels = make_clip_dataset(tmp_path / "data", classes=3, clips_per_class=4, folds=2, duration=1.0)
    yml = tmp_path / "db" / "clips.yml"
    assert main(["clips", str(audio), str(labels), "--output", str(yml), "--name", "Tiny"]) == 0
    out = capsys.readouterr().out
    assert "protocol: Tiny.Protocol.Clips" in out and "clips:    12, 3 labels, folds 1, 2" in out
    assert main(["check", "--database", str(yml), "--protocol", "Tiny.Protocol.Clips", "--task", "classification",
                 "--no-scan"]) == 0
    assert main(["clips", str(tmp_path / "nowhere"), str(labels), "--output", str(yml)]) == 2
    assert f"no such folder: {tmp_path / 'nowhere'}" in capsys.readouterr().err


def test_evaluate_fold_scores_the_clips_of_that_fold_only(tmp_path, capsys):
    reference = tmp_path / "labels.csv"
    reference.write_text("filename,label,fold\na.wav,dog,1\nb.wav,cat,1\nc.wav,dog,2\n")
    predictions = tmp_path / "predictions.csv"
    predictions.write_text("filename,label,cat,dog\na.wav,dog,0.1,0.9\nb.wav,dog,0.4,0.6\nc.wav,cat,0.8,0.2\n")
    capsys.readouterr()
    assert main(["evaluate", "--task", "classification", "--fold", "1", str(reference), str(predictions), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["accuracy"] == 0.5  # a right, b wrong; c (fold 2) left out
    assert f"1 file(s) absent from fold 1 of {reference}" in captured.err and "c.wav" in captured.err
    assert main(["evaluate", "--task", "classification", "--fold", "3", str(reference), str(predictions)]) == 2
    assert "no clip of" in capsys.readouterr().err
    assert main(["evaluate", "--task", "verification", "--fold", "1", "--trials", str(reference), str(predictions)]) == 2
    assert "--fold does not apply" in capsys.readouterr().err
