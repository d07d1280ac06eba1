"""The README's Python example runs as written, on a generated protocol (the docs stay true)."""

import re
import shutil
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert blocks, "the README has no Python example"
    return blocks[0]


def test_readme_example_trains_saves_applies_and_detects(tmp_path, monkeypatch, capsys):
    from audiotask.testing.dummies import make_sound_event_protocol

    make_sound_event_protocol(tmp_path, name="MyDatabase", files_per_subset=(2, 1, 1), duration=6.0)
    shutil.copy(tmp_path / "audio" / "test00.wav", tmp_path / "recording.wav")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUDIOTASK_CACHE", str(tmp_path / "cache"))
    code = readme_example()
    # the only changes: one short, quiet epoch instead of ten
    assert "Trainer(max_epochs=10)" in code
    code = code.replace(
        "Trainer(max_epochs=10)",
        "Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)",
    )
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert (tmp_path / "my-model" / "model.safetensors").is_file()
    scores = namespace["scores"]
    # one score per class of the task, as the model's head was built from its specifications
    classes = namespace["task"].specifications.classes
    assert scores.data.shape[1] == len(classes) > 0 and list(scores.labels) == classes
    assert ((scores.data >= 0) & (scores.data <= 1)).all()
    events = namespace["events"]
    assert all(0 <= onset < offset <= 6.0 + 1e-6 and label in scores.labels for onset, offset, label in events)
    # the example's print, after pyannote.database's notes about the protocol
    assert capsys.readouterr().out.strip().splitlines()[-1] == repr(events[:3])
