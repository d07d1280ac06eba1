"""Speaker diarization metrics (DER and its parts, JER) against pyannote.metrics' own, and the
strict RTTM reader's bad lines."""

import warnings

import pytest
from pyannote.core import Annotation, Segment, Timeline
from pyannote.database.util import load_rttm
from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

from audiotask.metrics.diarization import DER_COMPONENTS, JER_COMPONENTS, diarization_error_rates, format_table
from audiotask.protocols.rttm import read_rttm


def annotation(uri, *turns):
    """An Annotation of ``(start, end, speaker)`` turns, one track each."""
    result = Annotation(uri=uri)
    for track, (start, end, speaker) in enumerate(turns):
        result[Segment(start, end), track] = speaker
    return result


# three files: overlap in each; "talk" has a hypothesis with more speakers than the reference,
# "quiet" none (all missed), "swap" its reference's speakers under other names, a bit off
REFERENCES = {
    "talk": annotation("talk", (0.0, 10.0, "alice"), (8.0, 12.0, "bob"), (12.5, 20.0, "alice"), (15.0, 18.0, "carol")),
    "quiet": annotation("quiet", (1.0, 4.0, "dan"), (3.0, 6.0, "eve")),
    "swap": annotation("swap", (0.0, 5.0, "A"), (4.0, 9.0, "B"), (9.5, 14.0, "A")),
}
HYPOTHESES = {
    "talk": annotation("talk", (0.0, 9.0, "s1"), (9.0, 12.5, "s2"), (12.5, 16.0, "s1"), (16.0, 19.0, "s3"),
                       (17.0, 21.0, "s4")),
    "swap": annotation("swap", (0.2, 5.0, "x"), (4.5, 9.2, "y"), (9.2, 14.5, "x")),
}
UEMS = {
    "talk": Timeline([Segment(0.0, 16.5), Segment(17.0, 20.5)], uri="talk"),
    "quiet": Timeline([Segment(0.0, 8.0)], uri="quiet"),
    "swap": Timeline([Segment(1.0, 15.0)], uri="swap"),
}
SETTINGS = [(0.0, False, None), (0.0, False, UEMS), (0.5, False, UEMS), (0.0, True, UEMS), (0.25, True, None)]


def pyannote_figures(references, hypotheses, uems, collar, skip_overlap):
    """``({uri: (der details, jer details)}, total DER, total JER)`` from pyannote.metrics directly."""
    der = DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)
    jer = JaccardErrorRate(collar=collar, skip_overlap=skip_overlap)
    per_file = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for uri in sorted(references if uems is None else uems):
            reference = references.get(uri, Annotation(uri=uri))
            hypothesis = hypotheses.get(uri, Annotation(uri=uri))
            uem = None if uems is None else uems[uri]
            per_file[uri] = (der(reference, hypothesis, uem=uem, detailed=True),
                             jer(reference, hypothesis, uem=uem, detailed=True))
    return per_file, abs(der), abs(jer)


@pytest.mark.parametrize("collar, skip_overlap, uems", SETTINGS)
def test_per_file_and_total_figures_are_pyannote_metrics_own(collar, skip_overlap, uems):
    results = diarization_error_rates(REFERENCES, HYPOTHESES, uems, collar=collar, skip_overlap=skip_overlap)
    expected, total_der, total_jer = pyannote_figures(REFERENCES, HYPOTHESES, uems, collar, skip_overlap)
    assert list(results["per_file"]) == sorted(REFERENCES)
    for uri, (der, jer) in expected.items():
        values = results["per_file"][uri]
        assert values["diarization_error_rate"] == pytest.approx(der["diarization error rate"], abs=1e-12)
        assert values["jaccard_error_rate"] == pytest.approx(jer["jaccard error rate"], abs=1e-12)
        for name in DER_COMPONENTS:
            assert values[name] == pytest.approx(der[name], abs=1e-12)
        for name in JER_COMPONENTS:
            assert values[name] == pytest.approx(jer[name], abs=1e-12)
    assert results["diarization_error_rate"] == pytest.approx(total_der, abs=1e-12)
    assert results["jaccard_error_rate"] == pytest.approx(total_jer, abs=1e-12)
    # TOTAL DER: the files' seconds summed, then divided; TOTAL JER: the mean over all reference speakers
    ders = [der for der, _ in expected.values()]
    errors = sum(d["false alarm"] + d["missed detection"] + d["confusion"] for d in ders)
    assert results["diarization_error_rate"] == pytest.approx(errors / sum(d["total"] for d in ders), abs=1e-12)
    jers = [jer for _, jer in expected.values()]
    mean = sum(j["speaker error"] for j in jers) / sum(j["speaker count"] for j in jers)
    assert results["jaccard_error_rate"] == pytest.approx(mean, abs=1e-12)
    assert results["collar"] == collar and results["skip_overlap"] == skip_overlap
    # the settings matter: the figures differ from the plain ones
    if (collar, skip_overlap, uems) != SETTINGS[0]:
        assert results["diarization_error_rate"] != pytest.approx(
            diarization_error_rates(REFERENCES, HYPOTHESES)["diarization_error_rate"], abs=1e-6)


def test_a_hand_computed_case():
    # alice [0, 10], bob [8, 12]; one predicted speaker [0, 12], mapped to alice (10 s in common)
    reference = {"f": annotation("f", (0.0, 10.0, "alice"), (8.0, 12.0, "bob"))}
    hypothesis = {"f": annotation("f", (0.0, 12.0, "spk"))}
    results = diarization_error_rates(reference, hypothesis)
    # [8, 10]: bob missed (2 s); [10, 12]: bob's speech given to alice (2 s); 14 s of reference speech
    assert results["components"]["missed detection"] == pytest.approx(2.0)
    assert results["components"]["confusion"] == pytest.approx(2.0)
    assert results["components"]["false alarm"] == pytest.approx(0.0)
    assert results["components"]["total"] == pytest.approx(14.0)
    assert results["diarization_error_rate"] == pytest.approx(4.0 / 14.0)
    # alice: 2 s of 12 s wrong (2 / 12); bob, mapped to no one: 1
    assert results["jaccard_error_rate"] == pytest.approx((2.0 / 12.0 + 1.0) / 2)


def test_der_does_not_depend_on_the_names_of_the_speakers():
    renamed = {uri: hypothesis.rename_labels(mapping={label: f"other-{label}" for label in hypothesis.labels()})
               for uri, hypothesis in HYPOTHESES.items()}
    swapped = {"swap": HYPOTHESES["swap"].rename_labels(mapping={"x": "y", "y": "x"}), "talk": HYPOTHESES["talk"]}
    plain = diarization_error_rates(REFERENCES, HYPOTHESES, UEMS)
    for hypotheses in (renamed, swapped):
        results = diarization_error_rates(REFERENCES, hypotheses, UEMS)
        for uri, values in plain["per_file"].items():
            assert results["per_file"][uri] == pytest.approx(values)
        assert results["diarization_error_rate"] == pytest.approx(plain["diarization_error_rate"])
        assert results["jaccard_error_rate"] == pytest.approx(plain["jaccard_error_rate"])


def test_a_file_without_hypothesis_is_all_missed():
    results = diarization_error_rates(REFERENCES, {}, UEMS)
    for uri, values in results["per_file"].items():
        assert values["missed detection"] == pytest.approx(values["total"]) and values["total"] > 0
        assert values["diarization_error_rate"] == pytest.approx(1.0)
        assert values["jaccard_error_rate"] == pytest.approx(1.0)
    assert results["per_file"]["quiet"] == pytest.approx(diarization_error_rates(REFERENCES, HYPOTHESES, UEMS)
                                                         ["per_file"]["quiet"])


def test_a_perfect_hypothesis_scores_zero():
    results = diarization_error_rates(REFERENCES, REFERENCES, UEMS, collar=0.5, skip_overlap=True)
    assert results["diarization_error_rate"] == pytest.approx(0.0)
    assert results["jaccard_error_rate"] == pytest.approx(0.0)


def test_a_uem_file_without_reference_turns_counts_its_predicted_speech_as_false_alarm():
    uems = {**UEMS, "silent": Timeline([Segment(0.0, 10.0)], uri="silent")}
    hypotheses = {**HYPOTHESES, "silent": annotation("silent", (2.0, 5.0, "ghost"))}
    results = diarization_error_rates(REFERENCES, hypotheses, uems)
    expected, total_der, total_jer = pyannote_figures(REFERENCES, hypotheses, uems, 0.0, False)
    silent = results["per_file"]["silent"]
    assert silent["false alarm"] == pytest.approx(3.0) and silent["total"] == 0.0
    assert silent["diarization_error_rate"] == expected["silent"][0]["diarization error rate"]
    assert silent["jaccard_error_rate"] == expected["silent"][1]["jaccard error rate"]
    assert results["diarization_error_rate"] == pytest.approx(total_der)
    assert results["jaccard_error_rate"] == pytest.approx(total_jer)
    row = next(line for line in format_table(results).splitlines() if line.startswith("silent"))
    assert row.split()[2] == "-"  # its parts' % of no speech


def test_a_hypothesis_without_reference_is_an_error_without_uem_and_left_out_with_one():
    hypotheses = {**HYPOTHESES, "stray": annotation("stray", (0.0, 1.0, "s"))}
    with pytest.raises(ValueError, match="hypotheses for files without reference turns: stray"):
        diarization_error_rates(REFERENCES, hypotheses)
    with pytest.warns(UserWarning, match="hypothesis files outside the UEM, not evaluated: stray"):
        results = diarization_error_rates(REFERENCES, hypotheses, UEMS)
    assert "stray" not in results["per_file"]
    less = {uri: UEMS[uri] for uri in ("talk", "swap")}
    with pytest.warns(UserWarning, match="reference files outside the UEM, not evaluated: quiet"):
        assert list(diarization_error_rates(REFERENCES, HYPOTHESES, less)["per_file"]) == ["swap", "talk"]
    with pytest.raises(ValueError, match="no file to evaluate"):
        diarization_error_rates({}, {})


def test_table_has_a_row_per_file_and_total():
    results = diarization_error_rates(REFERENCES, HYPOTHESES, UEMS)
    lines = format_table(results).splitlines()
    assert lines[0].split() == ["file", "DER", "%", "FA", "%", "FA", "s", "miss", "%", "miss", "s", "conf", "%",
                                "conf", "s", "speech", "s", "JER", "%"]
    total = next(line for line in lines if line.startswith("TOTAL")).split()
    components = results["components"]
    assert float(total[1]) == pytest.approx(100 * results["diarization_error_rate"], abs=0.005)
    assert float(total[3]) == pytest.approx(components["false alarm"], abs=0.005)
    assert float(total[4]) == pytest.approx(100 * components["missed detection"] / components["total"], abs=0.005)
    assert float(total[8]) == pytest.approx(components["total"], abs=0.005)
    assert float(total[9]) == pytest.approx(100 * results["jaccard_error_rate"], abs=0.005)
    assert [line.split()[0] for line in lines[2:5]] == sorted(REFERENCES)


# the RTTM reader

GOOD_RTTM = """\
;; a comment, as RTTM has them
# and another, as pyannote's and dscore's readers skip them

SPKR-INFO talk 1 <NA> <NA> <NA> unknown alice <NA> <NA>
SPEAKER talk 1 0.000 10.000 <NA> <NA> alice <NA> <NA>
SPEAKER talk 1 8.0 4.0 <NA> <NA> bob 0.9 <NA>
SPEAKER other 1 2.5 0.5 <NA> <NA> bob <NA>
SPEAKER other 1 3.0 0 <NA> <NA> bob <NA> <NA>
SPEAKER talk 1 8.0 4.0 <NA> <NA> carol <NA> <NA>
"""


def test_reader_reads_speaker_lines_and_skips_what_the_format_allows(tmp_path):
    path = tmp_path / "good.rttm"
    path.write_text(GOOD_RTTM)
    annotations = read_rttm(path)
    assert list(annotations) == ["talk", "other"]
    turns = {uri: sorted((s.start, s.end, label) for s, _, label in a.itertracks(yield_label=True))
             for uri, a in annotations.items()}
    # two speakers on one segment both stay; a zero-duration turn adds nothing
    assert turns == {"talk": [(0.0, 10.0, "alice"), (8.0, 12.0, "bob"), (8.0, 12.0, "carol")],
                     "other": [(2.5, 3.0, "bob")]}
    # as pyannote's loader reads the SPEAKER lines
    plain = tmp_path / "plain.rttm"
    plain.write_text("".join(line + "\n" for line in GOOD_RTTM.splitlines() if line.startswith("SPEAKER")))
    expected = {uri: sorted((s.start, s.end, label) for s, _, label in a.itertracks(yield_label=True))
                for uri, a in load_rttm(str(plain)).items()}
    assert turns == expected


BAD_LINES = [
    ("SPEAKER talk 1 0.0 1.0 <NA> <NA> alice <NA>\nSPEAKER talk 1 0.0 1.0 <NA> alice <NA>\n", 2,
     "8 fields where RTTM has 10 (SPEAKER uri channel onset duration <NA> <NA> speaker <NA> <NA>)"),
    ("SPEAKER talk 1 0.0 -1.0 <NA> <NA> alice <NA> <NA>\n", 1, "negative duration (-1.0 s)"),
    ("\n\nSPEAKER talk 1 -2 1.0 <NA> <NA> alice <NA> <NA>\n", 3, "negative onset (-2 s)"),
    ("SPEAKER talk 1 zero 1.0 <NA> <NA> alice <NA> <NA>\n", 1, "the onset is 'zero', not a number of seconds"),
    ("SPEAKER talk 1 0.0 nan <NA> <NA> alice <NA> <NA>\n", 1, "the duration is 'nan', not a number of seconds"),
    ("SPEAKER talk 1 0.0 1.0 <NA> <NA> Alice Smith <NA> <NA>\n", 1,
     "11 fields where RTTM has 10 (SPEAKER uri channel onset duration <NA> <NA> speaker <NA> <NA>): speaker labels "
     "cannot contain spaces (is the speaker 'Alice Smith'?)"),
    ("SPEAKER talk 1 0.0 1.0 <NA> <NA> Alice Smith <NA>\n", 1,
     "field 9 (confidence) is 'Smith', neither <NA> nor a number: speaker labels cannot contain spaces "
     "(is the speaker 'Alice Smith'?)"),
    ("SPEAKR talk 1 0.0 1.0 <NA> <NA> alice <NA> <NA>\n", 1, "unknown RTTM type 'SPEAKR'"),
]


@pytest.mark.parametrize("text, line, problem", BAD_LINES)
def test_a_bad_line_is_one_line_naming_file_and_line(tmp_path, text, line, problem):
    path = tmp_path / "bad.rttm"
    path.write_text(text)
    with pytest.raises(ValueError) as raised:
        read_rttm(path)
    message = str(raised.value)
    assert message.startswith(f"{path}, line {line}: {problem}")
    assert "\n" not in message


def test_text_that_is_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "latin1.rttm"
    path.write_bytes("SPEAKER a 1 0 1 <NA> <NA> x <NA> <NA>\nSPEAKER a 1 0 1 <NA> <NA> Jos\u00e9 <NA> <NA>\n"
                     .encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.rttm, line 2: not UTF-8"):
        read_rttm(path)
