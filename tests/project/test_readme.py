"""The README's Python example runs as written on the demo's data (the docs stay true)."""

import csv
import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert blocks, "the README has no Python example"
    return blocks[0]


def files_under(folder: Path) -> dict[Path, int | None]:
    """{path relative to ``folder``: modification time in ns (None for a folder)} of everything below it."""
    return {path.relative_to(folder): None if path.is_dir() else path.stat().st_mtime_ns for path in folder.rglob("*")}


def best_validation_psds(metrics_csv: Path) -> tuple[int, float]:
    """Epoch and value of the highest ``val/psds1`` in ``metrics.csv`` (the first, on a tie)."""
    with open(metrics_csv, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("val/psds1")]
    assert len(rows) >= 2, "too few validations to choose among"
    best = max(rows, key=lambda row: float(row["val/psds1"]))
    return int(best["epoch"]), float(best["val/psds1"])


@pytest.mark.slow
def test_readme_example_runs_on_the_demo_data_and_writes_only_what_it_names(tmp_path, monkeypatch, capsys):
    from audiotask.demo.pipeline import QUICK
    from audiotask.demo.soundscapes import build_demo_dataset

    # what `make demo` writes under demo-output/data, at the size of `audiotask demo --quick`
    here = tmp_path / "repository"
    build_demo_dataset(here / "demo-output" / "data", seed=0, num_train=QUICK.num_train,
                       num_development=QUICK.num_development, num_test=QUICK.num_test, duration=QUICK.duration)
    before = files_under(here)
    monkeypatch.chdir(here)
    monkeypatch.setenv("AUDIOTASK_CACHE", str(tmp_path / "cache"))  # the user's cache, not the current folder
    code = readme_example()
    # the only change: two epochs (two validations to choose the best of) instead of ten
    assert "max_epochs=10" in code
    namespace: dict = {}
    exec(compile(code.replace("max_epochs=10", "max_epochs=2"), str(README), "exec"), namespace)

    after = files_under(here)
    run_folder = Path("demo-output") / "my-run"
    written = {path for path, modified in after.items() if path not in before or before[path] != modified}
    assert run_folder in written
    assert [path for path in written if path != run_folder and run_folder not in path.parents] == []
    assert not (here / "lightning_logs").exists()

    # the kept model is the checkpoint of best development PSDS1, not the last state
    run = namespace["run"]
    assert run.model == run_folder / "model" and (here / run.model / "model.safetensors").is_file()
    checkpoint = torch.load(run.checkpoint, map_location="cpu", weights_only=True)
    epoch, score = best_validation_psds(here / run.metrics)
    assert checkpoint["epoch"] == epoch and run.best_score == pytest.approx(score) and run.monitored == "val/psds1"
    # the network validation scored: the mean teacher where the demo's weak files turn it on
    best = checkpoint["teacher_state_dict" if checkpoint.get("audiotask_kept") == "teacher" else "state_dict"]
    from audiotask.core.model import Model

    kept = Model.from_pretrained(here / run.model).state_dict()
    assert kept.keys() == best.keys() and all(torch.equal(kept[name], best[name]) for name in best)

    scores = namespace["scores"]
    # one score per class of the task, as the model's head was built from its specifications
    classes = namespace["task"].specifications.classes
    assert scores.data.shape[1] == len(classes) > 0 and list(scores.labels) == classes
    assert ((scores.data >= 0) & (scores.data <= 1)).all()
    events = namespace["events"]
    assert all(0 <= onset < offset <= QUICK.duration + 1e-6 and label in scores.labels
               for onset, offset, label in events)
    # the example's print, after pyannote.database's notes about the protocol
    assert capsys.readouterr().out.strip().splitlines()[-1] == repr(events[:3])
