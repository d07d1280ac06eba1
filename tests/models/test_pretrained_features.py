"""A CRNN fed a frozen pretrained encoder's frame embeddings beside its log-mel (the DCASE
2023 baseline's BEATs + CRNN shape): the encoder is frozen, saved inside the model, and
only the log-mel bands are augmented in frequency."""

import pytest
import torch

from audiotask.cli.main import main
from audiotask.core.model import Model
from audiotask.core.optimization import parameter_groups
from audiotask.core.specifications import Problem, Resolution, Specifications
from audiotask.models.crnn import CRNN
from audiotask.models.silero_vad import SileroVAD

SMALL = dict(channels=[8, 16], time_pooling=[2, 2], n_mels=16, hidden_size=8)


def silero_encoder(seed=0):
    torch.manual_seed(seed)
    return SileroVAD()


def detector(encoder, classes=("dog", "cat")):
    model = CRNN.with_pretrained_features(encoder, **SMALL)
    model.attach_specifications(Specifications(problem=Problem.MULTI_LABEL_CLASSIFICATION,
                                               resolution=Resolution.FRAME, duration=2.0, classes=list(classes)))
    return model


def test_the_embeddings_follow_the_bands_and_reach_the_outputs():
    encoder = silero_encoder()
    model = detector(encoder).eval()
    waveforms = torch.randn(2, 1, 32000)
    spectrogram = model.spectrogram(waveforms)
    assert spectrogram.shape == (2, 32000 // 256, 16 + 128) and model.spectrogram_bands == 16
    assert torch.equal(model.pretrained_features.encoder.frame_embeddings(waveforms)[:, 0], spectrogram[:, 0, 16:])
    assert model(waveforms).shape == (2, 32000 // 256 // 4, 2) and model.encoder_context is None
    # other embeddings, same log-mel: other outputs
    other = detector(silero_encoder(seed=1)).eval()
    other.load_state_dict({name: value for name, value in model.state_dict().items()
                           if not name.startswith("pretrained_features.")}, strict=False)
    assert not torch.allclose(other(waveforms), model(waveforms))


def test_the_encoder_is_frozen_in_eval_mode_and_out_of_the_optimiser():
    model = detector(silero_encoder()).train()
    encoder = model.pretrained_features.encoder
    assert not encoder.training and not any(parameter.requires_grad for parameter in encoder.parameters())
    optimised = {id(parameter) for group in parameter_groups(model) for parameter in group["params"]}
    assert optimised and not optimised & {id(parameter) for parameter in encoder.parameters()}
    before = {name: value.clone() for name, value in encoder.state_dict().items()}
    optimiser = torch.optim.Adam([p for group in parameter_groups(model) for p in group["params"]], lr=0.1)
    model(torch.randn(2, 1, 16000)).sum().backward()
    optimiser.step()
    assert all(torch.equal(before[name], value) for name, value in encoder.state_dict().items())


def test_the_model_folder_carries_the_encoder(tmp_path):
    encoder = silero_encoder()
    model = detector(encoder).eval()
    folder = model.save_pretrained(tmp_path / "model")
    loaded = Model.from_pretrained(folder).eval()
    assert loaded.manifest()["arguments"]["pretrained_features"]["architecture"] == "SileroVAD"
    waveforms = torch.randn(1, 1, 24000)
    with torch.no_grad():
        assert torch.allclose(loaded(waveforms), model(waveforms))
    assert torch.equal(loaded.pretrained_features.encoder.conv1.weight, encoder.conv1.weight)


def test_frequency_augmentation_leaves_the_embeddings_alone():
    from audiotask.augmentation.recipe import DetectionAugmentation

    recipe = DetectionAugmentation(filter_augment=True, frequency_masks=2, mixup=0.0, time_shift=0.0, time_masks=0)
    spectrogram = torch.randn(4, 100, 16 + 128)
    rows = torch.ones(4, dtype=torch.bool)
    augmented, _, _ = recipe.spectrogram(spectrogram, torch.zeros(4, 25, 2), torch.zeros(4, 2), strong=rows,
                                         weak=~rows, pooling=4, generator=torch.Generator().manual_seed(0), bands=16)
    assert torch.equal(augmented[..., 16:], spectrogram[..., 16:])
    assert not torch.equal(augmented[..., :16], spectrogram[..., :16])


def test_an_encoder_without_frame_embeddings_or_at_another_rate_is_refused():
    from audiotask.models.resemblyzer import Resemblyzer

    with pytest.raises(ValueError, match="Resemblyzer gives no frame embeddings"):
        CRNN.with_pretrained_features(Resemblyzer(), **SMALL)
    with pytest.raises(ValueError, match="SileroVAD runs at 16000 Hz, the model at 8000 Hz"):
        CRNN.with_pretrained_features(silero_encoder(), sample_rate=8000, **SMALL)


def test_train_features_from_an_imported_encoder(tmp_path):
    from safetensors.torch import save_file

    from audiotask.pretrained.silero_vad import import_silero_vad
    from audiotask.testing.dummies import make_sound_event_protocol
    from audiotask.testing.pretrained_layouts import random_silero_vad_state

    database = make_sound_event_protocol(tmp_path / "data", name="Tiny", files_per_subset=(3, 1, 1), seed=3)
    save_file(random_silero_vad_state(), tmp_path / "weights.safetensors")
    encoder = import_silero_vad(tmp_path / "silero", weights=tmp_path / "weights.safetensors")
    arguments = ["train", "--database", str(database), "--protocol", "Tiny.SpeakerDiarization.Events", "--task", "sed",
                 "--resolution", "frame", "--features-from", str(encoder), "--duration", "2", "--batch-size", "4",
                 "--max-steps", "2", "--num-workers", "0", "--cache", str(tmp_path / "cache"), "--output",
                 str(tmp_path / "run"), "--no-progress"]
    assert main(arguments) == 0
    trained = Model.from_pretrained(tmp_path / "run" / "model")
    assert isinstance(trained, CRNN) and trained.pretrained_features is not None
    imported = Model.from_pretrained(encoder)
    assert torch.equal(trained.pretrained_features.encoder.conv1.weight, imported.conv1.weight)
