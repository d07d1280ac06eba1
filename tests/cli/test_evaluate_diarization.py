"""`audiotask evaluate --task diarization`: the printed table's figures are pyannote.metrics'
own, and bad input is one line naming file and line."""

import json
import warnings

import pytest
from pyannote.database.util import load_uem
from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

from audiotask.cli.main import main
from audiotask.protocols.rttm import read_rttm

REFERENCE = """\
SPEAKER talk 1 0.0 10.0 <NA> <NA> alice <NA> <NA>
SPEAKER talk 1 8.0 4.0 <NA> <NA> bob <NA> <NA>
SPEAKER talk 1 12.5 7.5 <NA> <NA> alice <NA> <NA>
SPEAKER talk 1 15.0 3.0 <NA> <NA> carol <NA> <NA>
SPEAKER quiet 1 1.0 3.0 <NA> <NA> dan <NA> <NA>
SPEAKER quiet 1 3.0 3.0 <NA> <NA> eve <NA> <NA>
"""
# more speakers than the reference in "talk"; nothing for "quiet"
HYPOTHESIS = """\
SPEAKER talk 1 0.0 9.0 <NA> <NA> s1 <NA> <NA>
SPEAKER talk 1 9.0 3.5 <NA> <NA> s2 <NA> <NA>
SPEAKER talk 1 12.5 3.5 <NA> <NA> s1 <NA> <NA>
SPEAKER talk 1 16.0 3.0 <NA> <NA> s3 <NA> <NA>
SPEAKER talk 1 17.0 4.0 <NA> <NA> s4 <NA> <NA>
"""
UEM = "talk 1 0.0 16.5\ntalk 1 17.0 20.5\nquiet 1 0.0 8.0\n"


@pytest.fixture
def files(tmp_path):
    paths = {name: tmp_path / name for name in ("reference.rttm", "hypothesis.rttm", "files.uem")}
    for path, text in zip(paths.values(), (REFERENCE, HYPOTHESIS, UEM)):
        path.write_text(text)
    return [str(path) for path in paths.values()]


def expected_totals(reference, hypothesis, uem, collar, skip_overlap):
    """TOTAL DER and JER, and the DER metric (its accumulated components), by pyannote.metrics."""
    references, hypotheses, uems = read_rttm(reference), read_rttm(hypothesis), load_uem(uem)
    der = DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)
    jer = JaccardErrorRate(collar=collar, skip_overlap=skip_overlap)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for uri in uems:
            for metric in (der, jer):
                metric(references[uri], hypotheses.get(uri, type(references[uri])(uri=uri)), uem=uems[uri])
    return abs(der), abs(jer), der


@pytest.mark.parametrize("options, collar, skip_overlap", [([], 0.0, False), (["--collar", "0.5", "--skip-overlap"],
                                                                               0.5, True)])
def test_the_total_row_is_pyannote_metrics_own(files, capsys, options, collar, skip_overlap):
    reference, hypothesis, uem = files
    assert main(["evaluate", "--task", "diarization", reference, hypothesis, "--uem", uem, *options]) == 0
    lines = capsys.readouterr().out.splitlines()
    total = next(line for line in lines if line.startswith("TOTAL")).split()
    der, jer, metric = expected_totals(reference, hypothesis, uem, collar, skip_overlap)
    speech = metric["total"]
    assert float(total[1]) == pytest.approx(100 * der, abs=0.005)
    assert float(total[2]) == pytest.approx(100 * metric["false alarm"] / speech, abs=0.005)
    assert float(total[3]) == pytest.approx(metric["false alarm"], abs=0.005)
    assert float(total[5]) == pytest.approx(metric["missed detection"], abs=0.005)
    assert float(total[7]) == pytest.approx(metric["confusion"], abs=0.005)
    assert float(total[8]) == pytest.approx(speech, abs=0.005)
    assert float(total[9]) == pytest.approx(100 * jer, abs=0.005)
    assert [line.split()[0] for line in lines[2:4]] == ["quiet", "talk"]
    assert lines[4].startswith("---") and lines[-1] == f"collar {collar:g} s, overlap {'not ' * skip_overlap}scored"
    # --json: the same figures, unrounded
    assert main(["evaluate", "--task", "diarization", reference, hypothesis, "--uem", uem, *options, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["diarization_error_rate"] == pytest.approx(der, abs=1e-12)
    assert results["jaccard_error_rate"] == pytest.approx(jer, abs=1e-12)
    quiet = results["per_file"]["quiet"]  # no hypothesis: all missed
    assert quiet["missed detection"] == pytest.approx(quiet["total"]) and quiet["total"] > 0


def test_an_empty_hypothesis_is_all_missed(files, tmp_path, capsys):
    reference, _, uem = files
    empty = tmp_path / "empty.rttm"
    empty.write_text("")
    assert main(["evaluate", "--task", "diarization", reference, str(empty), "--uem", uem, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["diarization_error_rate"] == pytest.approx(1.0)
    assert results["components"]["missed detection"] == pytest.approx(results["components"]["total"])


def test_bad_lines_are_one_line_naming_file_and_line(files, tmp_path, capsys):
    reference, hypothesis, _ = files
    spaced = tmp_path / "spaced.rttm"
    spaced.write_text(REFERENCE + "SPEAKER talk 1 2.0 1.0 <NA> <NA> Alice Smith <NA> <NA>\n")
    assert main(["evaluate", "--task", "diarization", str(spaced), hypothesis]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"audiotask evaluate: error: {spaced}, line 7: 11 fields")
    assert "speaker labels cannot contain spaces" in error and "\n" not in error
    negative = tmp_path / "negative.rttm"
    negative.write_text("SPEAKER talk 1 2.0 -1.0 <NA> <NA> s1 <NA> <NA>\n")
    assert main(["evaluate", "--task", "diarization", reference, str(negative)]) == 2
    assert capsys.readouterr().err.strip() == f"audiotask evaluate: error: {negative}, line 1: negative duration (-1.0 s)"


def test_a_hypothesis_for_a_file_without_reference_is_named(files, tmp_path, capsys):
    reference, _, uem = files
    stray = tmp_path / "stray.rttm"
    stray.write_text(HYPOTHESIS + "SPEAKER elsewhere 1 0.0 1.0 <NA> <NA> s1 <NA> <NA>\n")
    assert main(["evaluate", "--task", "diarization", reference, str(stray)]) == 2
    assert "hypotheses for files without reference turns: elsewhere" in capsys.readouterr().err
    # with a UEM, its files are those evaluated: the others are left out, with a warning
    assert main(["evaluate", "--task", "diarization", reference, str(stray), "--uem", uem]) == 0
    captured = capsys.readouterr()
    assert "hypothesis files outside the UEM, not evaluated: elsewhere" in captured.err
    assert "elsewhere" not in captured.out


def test_diarization_options_are_its_own(files, capsys):
    reference, hypothesis, _ = files
    assert main(["evaluate", "--task", "vad", reference, hypothesis, "--collar", "0.5"]) == 2
    assert "--collar does not apply to --task vad" in capsys.readouterr().err
    assert main(["evaluate", "--task", "osd", reference, hypothesis, "--skip-overlap"]) == 2
    assert "--skip-overlap does not apply to --task osd" in capsys.readouterr().err
    assert main(["evaluate", "--task", "diarization", reference, hypothesis, "--durations", "d.tsv"]) == 2
    assert "--durations does not apply to --task diarization" in capsys.readouterr().err
    assert main(["evaluate", "--task", "diarization", reference, hypothesis, "--collar", "-1"]) == 2
    assert "--collar takes seconds, 0 or more" in capsys.readouterr().err


def test_evaluate_offers_diarization():
    from audiotask.cli.evaluate import evaluated_task, evaluated_task_names

    assert "diarization" in evaluated_task_names()
    assert evaluated_task("diarization").evaluation == "audiotask.cli.evaluate:evaluate_diarization"
