"""WeSpeaker's ResNet34 imported as an audiotask model, against WeSpeaker's computation written
again here: its front end (Kaldi's filterbank with a Hamming window, by kaldi-native-fbank, of
the 16-bit scaled samples, less its mean) and wespeaker/models/resnet.py with TSTP pooling."""

import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from audiotask.cli.main import main
from audiotask.core.model import Model
from audiotask.models.wespeaker_resnet import WeSpeakerResNet
from audiotask.pretrained.wespeaker import import_wespeaker
from audiotask.testing.wespeaker_layout import (RESNET34_LAYOUT, random_wespeaker_checkpoint,
                                                wespeaker_resnet_layout)

knf = pytest.importorskip("kaldi_native_fbank")


# ---- wespeaker/models/resnet.py and pooling_layers.py, transcribed --------------------------
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(self.expansion * planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, self.expansion * planes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(self.expansion * planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(self.expansion * planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class TSTP(nn.Module):
    def __init__(self, in_dim=0, **kwargs):
        super().__init__()
        self.in_dim = in_dim

    def forward(self, x):
        # The last dimension is the temporal axis
        pooling_mean = x.mean(dim=-1)
        pooling_std = torch.sqrt(torch.var(x, dim=-1) + 1e-7)
        pooling_mean = pooling_mean.flatten(start_dim=1)
        pooling_std = pooling_std.flatten(start_dim=1)
        stats = torch.cat((pooling_mean, pooling_std), 1)
        return stats

    def get_out_dim(self):
        self.out_dim = self.in_dim * 2
        return self.out_dim


class ResNet(nn.Module):
    def __init__(self, block, num_blocks, m_channels=32, feat_dim=40, embed_dim=128, pooling_func='TSTP',
                 two_emb_layer=False):
        super().__init__()
        self.in_planes = m_channels
        self.feat_dim = feat_dim
        self.embed_dim = embed_dim
        self.stats_dim = int(feat_dim / 8) * m_channels * 8
        self.two_emb_layer = two_emb_layer
        self.conv1 = nn.Conv2d(1, m_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        self.layer1 = self._make_layer(block, m_channels, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, m_channels * 2, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, m_channels * 4, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, m_channels * 8, num_blocks[3], stride=2)
        self.pool = TSTP(in_dim=self.stats_dim * block.expansion)
        self.pool_out_dim = self.pool.get_out_dim()
        self.seg_1 = nn.Linear(self.pool_out_dim, embed_dim)
        self.seg_bn_1 = nn.Identity()
        self.seg_2 = nn.Identity()

    def _make_layer(self, block, planes, num_blocks, stride):
        strides = [stride] + [1] * (num_blocks - 1)
        layers = []
        for stride in strides:
            layers.append(block(self.in_planes, planes, stride))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        x = x.permute(0, 2, 1)  # (B,T,F) => (B,F,T)
        x = x.unsqueeze_(1)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = self.layer4(out)
        stats = self.pool(out)
        embed_a = self.seg_1(stats)
        return torch.tensor(0.0), embed_a


def ResNet34(feat_dim, embed_dim, pooling_func='TSTP', two_emb_layer=False):
    return ResNet(BasicBlock, [3, 4, 6, 3], feat_dim=feat_dim, embed_dim=embed_dim, pooling_func=pooling_func,
                  two_emb_layer=two_emb_layer)


# ---- the front end: processor.py's compute_fbank (hamming, no energy) and apply_cmvn (means) ----
def compute_fbank(waveform: np.ndarray) -> torch.Tensor:
    options = knf.FbankOptions()
    options.frame_opts.dither = 0.0
    options.frame_opts.samp_freq = 16000
    options.frame_opts.frame_length_ms = 25
    options.frame_opts.frame_shift_ms = 10
    options.frame_opts.window_type = "hamming"
    options.mel_opts.num_bins = 80
    options.use_energy = False
    fbank = knf.OnlineFbank(options)
    fbank.accept_waveform(16000, (waveform * (1 << 15)).tolist())
    fbank.input_finished()
    mat = torch.from_numpy(np.stack([fbank.get_frame(index) for index in range(fbank.num_frames_ready)]))
    return mat - torch.mean(mat, dim=0)


def wespeaker_embeddings(checkpoint, waveforms, network=None):
    """(batch, samples) -> (batch, 256) as WeSpeaker computes them, one utterance at a time."""
    network = ResNet34(feat_dim=80, embed_dim=256) if network is None else network
    network.load_state_dict({name: value for name, value in checkpoint.items() if not name.startswith("projection.")})
    network.eval()
    with torch.no_grad():
        return torch.cat([network(compute_fbank(waveform).unsqueeze(0))[-1] for waveform in waveforms])


def speech_like(seconds, seed=0):
    from audiotask.testing.speakers import make_voices, turn

    rng = np.random.default_rng(seed)
    return (0.1 * turn(make_voices(2, seed=seed)[seed % 2], seconds, 16000, rng)).astype(np.float32)


@pytest.fixture(scope="module")
def checkpoint():
    return random_wespeaker_checkpoint(seed=0)


@pytest.fixture(scope="module")
def imported(checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("wespeaker")
    torch.save(checkpoint, folder / "avg_model.pt")
    assert main(["import", "wespeaker", "--weights", str(folder / "avg_model.pt"), "--output",
                 str(folder / "model")]) == 0
    return folder


def close(ours, theirs, tolerance=1e-4):
    """Equal within ``tolerance`` of the embeddings' scale."""
    return float((ours - theirs).abs().max()) <= tolerance * float(theirs.abs().max())


def test_the_layout_is_the_published_resnet34s():
    """The table's names and shapes are those of resnet.py's ResNet34 (and the loss's projection),
    and its 6.63 M parameters those WeSpeaker's model card gives."""
    reference = ResNet34(feat_dim=80, embed_dim=256).state_dict()
    table = {name: shape for name, shape in RESNET34_LAYOUT.items() if not name.startswith("projection.")}
    assert {name: tuple(value.shape) for name, value in reference.items()} == table
    assert RESNET34_LAYOUT["projection.weight"] == (17982, 256)
    learnt = sum(int(np.prod(shape)) for name, shape in table.items() if "running" not in name and "batches" not in name)
    assert round(learnt / 1e6, 2) == 6.63


def test_the_front_end_is_wespeakers():
    wav = speech_like(1.5)
    ours = WeSpeakerResNet().normalized_fbank(torch.from_numpy(wav)[None])[0]
    theirs = compute_fbank(wav)
    assert ours.shape == theirs.shape == (148, 80)
    assert float((ours - theirs).abs().max()) < 1e-3


def test_the_imported_checkpoint_embeds_as_wespeaker(checkpoint, imported):
    model = Model.from_pretrained(imported / "model")
    assert isinstance(model, WeSpeakerResNet) and model.specifications.task_name == "speaker-embedding"
    assert model.specifications.num_outputs == 256 and model.hparams["num_blocks"] == (3, 4, 6, 3)
    waveforms = np.stack([speech_like(1.0, seed=0), speech_like(1.0, seed=1)])
    with torch.no_grad():
        ours = model(torch.from_numpy(waveforms)[:, None])
    theirs = wespeaker_embeddings(checkpoint, waveforms)
    assert ours.shape == (2, 256) and close(ours, theirs)
    assert float(ours.norm(dim=1).min()) > 1.5  # raw seg_1 outputs, not normalised


def test_the_model_folder_round_trips(imported, tmp_path):
    model = Model.from_pretrained(imported / "model")
    again = Model.from_pretrained(model.save_pretrained(tmp_path / "again"))
    waveform = torch.from_numpy(speech_like(0.5, seed=2)).view(1, 1, -1)
    with torch.no_grad():
        assert torch.equal(model(waveform), again(waveform))
    state = again.state_dict()
    assert not any(name.startswith("projection.") for name in state)  # the loss's weights are dropped
    assert int(state["bn1.num_batches_tracked"]) == 1000


def test_a_chunk_too_short_to_pool_is_repeated(imported):
    model = Model.from_pretrained(imported / "model")
    short = torch.from_numpy(speech_like(0.05, seed=3)).view(1, 1, -1)
    with torch.no_grad():
        embedding = model(short)
        assert torch.isfinite(embedding).all()
        repeated = short.repeat(1, 1, 3)[..., :model.min_samples]
        assert torch.equal(embedding, model(repeated))


def test_a_bottleneck_resnet_is_detected_from_its_keys(tmp_path):
    """ResNet221 and 293 are resnet.py's ResNet of Bottleneck blocks; a shallow and narrow one
    of the same kind checks the detection and the block quickly."""
    layout = wespeaker_resnet_layout((2, 2, 1, 1), bottleneck=True, m_channels=8, loss_classes=10)
    checkpoint = random_wespeaker_checkpoint(seed=1, layout=layout)
    torch.save(checkpoint, tmp_path / "avg_model.pt")
    model = Model.from_pretrained(import_wespeaker(tmp_path / "model", weights=tmp_path / "avg_model.pt"))
    assert (model.hparams["block"], model.hparams["num_blocks"], model.hparams["m_channels"]) == (
        "bottleneck", (2, 2, 1, 1), 8)
    waveform = speech_like(1.0, seed=4)
    with torch.no_grad():
        ours = model(torch.from_numpy(waveform).view(1, 1, -1))
    network = ResNet(Bottleneck, [2, 2, 1, 1], m_channels=8, feat_dim=80, embed_dim=256)
    theirs = wespeaker_embeddings(checkpoint, waveform[None], network)
    assert close(ours, theirs)


def test_a_checkpoint_that_does_not_fit_is_refused_naming_the_key(checkpoint, tmp_path, capsys):
    checkpoint = dict(checkpoint)
    checkpoint["layer3.2.conv2.weight"] = torch.zeros(128, 128, 1, 1)
    torch.save(checkpoint, tmp_path / "wrong.pt")
    assert main(["import", "wespeaker", "--weights", str(tmp_path / "wrong.pt"), "--output",
                 str(tmp_path / "m")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "wrong.pt" in error and "'layer3.2.conv2.weight'" in error
    del checkpoint["layer3.2.conv2.weight"]
    torch.save(checkpoint, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"missing.pt: not WeSpeaker's ResNet34: no 'layer3.2.conv2.weight'"):
        import_wespeaker(tmp_path / "m", weights=tmp_path / "missing.pt")
    assert not (tmp_path / "m").exists()


def test_no_weights_or_a_file_of_code_is_refused(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="wespeaker: give --weights FILE"):
        import_wespeaker(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        import_wespeaker(tmp_path / "m", weights=tmp_path / "nowhere.pt")

    class Payload:
        def __reduce__(self):
            return (print, ("unpickled code ran",))

    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"conv1.weight": Payload()}, handle)
    with pytest.raises(ValueError, match="evil.pt: not a checkpoint of tensors"):
        import_wespeaker(tmp_path / "m", weights=tmp_path / "evil.pt")
    assert "unpickled code ran" not in capsys.readouterr().out
    torch.save({"model": {"conv1.weight": torch.zeros(1)}}, tmp_path / "nested.pt")
    with pytest.raises(ValueError, match="nested.pt: not a bare state dict"):
        import_wespeaker(tmp_path / "m", weights=tmp_path / "nested.pt")
