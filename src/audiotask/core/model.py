"""Base class of every audiotask model: a LightningModule whose head follows the task.

A model is built in two steps: its body in ``__init__`` (needs only audio parameters),
its output head in ``build()`` once the task's specifications are known (when training
starts, or when a saved model is loaded).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional

import lightning.pytorch as pl
import torch

from audiotask.core.architectures import ENTRY_POINT_GROUP, architecture_name, resolve_architecture
from audiotask.core.audio import Audio
from audiotask.core.frames import Frames
from audiotask.core.epoch_loss import CHECKPOINT_KEY as EPOCH_LOSS_KEY, EpochLoss
from audiotask.io import replaced_atomically, write_text_atomically
from audiotask.core.manifest import MANIFEST, WEIGHTS, read_manifest
from audiotask.core.objectives import activation
from audiotask.core.specifications import Specifications

#: prefix of the modules a task adds for training only (see ``Model.add_training_head``):
#: checkpoints hold them, saved models do not
TRAINING_HEADS = "training_heads."
FORMAT_VERSION = 1

#: checkpoint key of the task's count of non-finite losses in a row
NONFINITE_KEY = "audiotask_nonfinite_losses_in_a_row"


def model_class(name: str, *, source: Optional[str] = None) -> type["Model"]:
    """The registered architecture ``name`` (see :mod:`audiotask.core.architectures`), checked
    to be a :class:`Model`; never imports a module named by a model file."""
    target = resolve_architecture(name, source=source)
    if not (isinstance(target, type) and issubclass(target, Model)):
        raise TypeError(f"The architecture {name!r} registered in the {ENTRY_POINT_GROUP!r} entry-point group "
                        f"is {target!r}, not an audiotask Model.")
    return target


def restore_fitting_weights(module: torch.nn.Module, previous: Mapping[str, torch.Tensor]) -> list[str]:
    """Copy into ``module`` every entry of ``previous`` whose name and shape still fit.

    Parameters
    ----------
    module : torch.nn.Module
        Module whose parameters and buffers are overwritten in place.
    previous : {name: tensor}
        An earlier ``state_dict()`` of ``module``.

    Returns
    -------
    list of str
        Names of ``module``'s state entries left as they were (new or of another shape).
    """
    left = []
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            old = previous.get(name)
            if old is not None and old.shape == tensor.shape:
                tensor.copy_(old)
            else:
                left.append(name)
    return left


def describe_head_changes(changes: Mapping[str, tuple[Any, Any]]) -> str:
    """``"classes changed from [...] to [...]"`` for ``Specifications.head_changes``' result."""

    def shown(value: Any) -> str:
        return str(getattr(value, "value", value))  # enums by their value: "frame", not Resolution.FRAME

    return ", ".join(f"{name} changed from {shown(old)} to {shown(new)}" for name, (old, new) in changes.items())


def load_checkpoint(path: str | Path, **options) -> Any:
    """``torch.load(path)`` as data (``weights_only=True``, on the CPU; ``options`` passed on,
    e.g. ``mmap=True``), a file it cannot read being a ``ValueError`` in one line naming it.

    A checkpoint holding pickled objects beyond tensors and plain values (which only running
    its code could rebuild: a malicious file, or one saved by other software) is refused,
    saying why without torch's advice to load it with ``weights_only=False``; a truncated or
    corrupt file says so.
    """
    import pickle

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, **options)
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path}: refused: it holds Python objects that only running code could rebuild "
                         f"({_unpickling_reason(error)}); audiotask reads checkpoints as data only") from error
    except EOFError as error:
        raise ValueError(f"{path}: not a readable checkpoint (empty or truncated)") from error
    except (RuntimeError, OSError) as error:  # torch's zip reader on a truncated or corrupt file
        if isinstance(error, OSError) and error.filename is not None:  # a missing file, say: named already
            raise
        reason = (error.strerror if isinstance(error, OSError) and error.strerror else str(error)).split(". ")[0]
        raise ValueError(f"{path}: not a readable checkpoint, truncated or corrupt ({reason.strip().rstrip('.')})") \
            from error


def _unpickling_reason(error: BaseException) -> str:
    """What torch's weights-only unpickler refused, less its advice (``weights_only=False``
    would run the file's code) and its pointer to the documentation."""
    paragraphs = [part.strip() for part in str(error).split("\n\n") if part.strip()]
    kept = [part for part in paragraphs if "weights_only" not in part and "documentation" not in part]
    return " ".join(" ".join(kept).split()).rstrip(".") or "unsupported objects"


def _first_state_dict_error(error: RuntimeError) -> str:
    """The first entry of torch's ``Error(s) in loading state_dict`` (a size mismatch, say),
    with how many more there are."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) < 2:
        return " ".join(lines)
    return lines[1].rstrip(".") + (f" (and {len(lines) - 2} more)" if len(lines) > 2 else "")


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file ``path``; ``ValueError`` naming it when it is
    truncated or corrupt, ``FileNotFoundError`` when it is missing."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing: the model folder has its manifest but not its weights")
    try:
        return load_file(path)
    except SafetensorError as error:
        raise ValueError(f"{path}: not a readable safetensors file, truncated or corrupt ({error}): save or "
                         "import the model again") from error


class Model(pl.LightningModule):
    """Base model.

    Parameters
    ----------
    sample_rate : int
        Sample rate of the input waveforms, in Hz.
    num_channels : int
        Number of input channels (audio is downmixed to mono when 1).
    task : Task, optional
        Task the model is trained for; also settable later with ``model.task = task``.

    Subclasses build their body in ``__init__``, set ``frame_hop`` (input samples per
    output frame) when they can emit frames, and implement ``build()`` (the head, from
    ``self.specifications``) and ``forward(waveforms) -> logits``.

    A model whose first stage is the same at every time shift (a front end and
    convolutions) may split ``forward`` into :meth:`encode` (waveforms -> frame features)
    and :meth:`decode` (frame features -> logits) and set :attr:`encoder_context`: sliding
    window inference then encodes each file once instead of once per overlapping window.
    """

    frame_hop: Optional[int] = None
    #: output frames on each side of a frame whose input :meth:`encode` reads (its receptive
    #: field, in frames): a window's encoded frames equal the file's, encoded whole, except
    #: this many at each of its edges. None: the model does not split into encode / decode.
    encoder_context: Optional[int] = None
    #: prefixes of weights that only training uses (e.g. a clip output that weak labels train):
    #: a model saved before they existed still loads
    training_only_prefixes: tuple[str, ...] = ()
    #: Adam's learning rate in the default ``configure_optimizers``; set it on an instance to change it
    learning_rate: float = 1e-3
    #: the learning rate's schedule over the run (see ``core.optimization``): "constant" or
    #: "cosine" (linear warm-up over ``warmup_steps``, then a cosine decay to
    #: ``final_lr_fraction`` of the rate at the run's last step)
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    final_lr_fraction: float = 0.0
    #: the learning rate of everything but the head, as a share of ``learning_rate``: 1 trains
    #: the model whole, a fraction fine-tunes a pretrained encoder gently, 0 freezes it (its
    #: weights and its normalisation statistics; see :meth:`freeze_encoder`)
    encoder_lr_scale: float = 1.0

    def __init__(self, sample_rate: int = 16000, num_channels: int = 1, task=None):
        super().__init__()
        # collects the constructor arguments of the subclass too: they make the manifest
        self.save_hyperparameters(ignore=["task"])
        self.sample_rate = int(sample_rate)
        self.num_channels = int(num_channels)
        self.audio = Audio(sample_rate=self.sample_rate)
        self._specifications: Optional[Specifications] = None
        self._task = None
        if task is not None:
            self.task = task

    # ---- task and specifications -------------------------------------------------
    @property
    def task(self):
        return self._task

    @task.setter
    def task(self, task) -> None:
        self._task = task
        if task is not None:
            task.model = self

    @property
    def specifications(self) -> Specifications:
        if self._specifications is None:
            raise RuntimeError(
                "The model has no specifications yet: attach a task (model.task = task) and call "
                "task.setup() or start training, or load a trained model with Model.from_pretrained."
            )
        return self._specifications

    @specifications.setter
    def specifications(self, specifications: Specifications) -> None:
        self._specifications = specifications

    def build(self) -> None:
        """Create the output head from ``self.specifications``."""
        raise NotImplementedError(f"{type(self).__name__} must implement build().")

    def attach_specifications(self, specifications: Specifications) -> None:
        """Set the specifications; build the head, or rebuild it when what shapes it changed.

        Only ``Specifications.head_fields()`` (problem, resolution, classes...) shape the
        head: a loaded model fine-tuned on chunks of another duration keeps all its weights.
        A rebuilt head keeps every weight whose name and shape still fit (see
        :meth:`_rebuild_head`).
        """
        previous = self._specifications
        self.specifications = specifications
        if previous is None or not self.is_built:
            before = set(self._modules)
            self.build()
            #: the modules ``build()`` made: the head (the rest is the encoder, see encoder_lr_scale)
            self.head_modules = tuple(name for name in self._modules if name not in before)
            self.is_built = True
            return
        changes = previous.head_changes(specifications)
        if changes:
            self._rebuild_head(changes)

    is_built = False
    head_modules: tuple[str, ...] = ()
    #: True once the weights were loaded or trained: re-initialising them is then worth a warning
    has_learned_weights = False

    def _rebuild_head(self, changes: Mapping[str, tuple[Any, Any]]) -> None:
        """Call ``build()`` again, keep the weights that still fit, warn about the others."""
        previous = self.state_dict()
        self.build()
        reinitialised = restore_fitting_weights(self, previous)
        if not self.has_learned_weights:
            return  # a head nobody trained is random either way: nothing is lost
        reason = describe_head_changes(changes)
        if reinitialised:
            message = f"re-initialised {', '.join(reinitialised)} because {reason}; every other weight was kept"
        else:
            # e.g. renamed classes: the shapes fit, but each output keeps what it learnt
            message = f"kept every weight although {reason}: each output starts from what it learnt before"
        warnings.warn(f"{type(self).__name__}: head rebuilt: {message}.", stacklevel=3)

    def load_state_dict(self, *args, **kwargs):
        """``torch.nn.Module.load_state_dict``, remembering that the weights are now learned ones."""
        result = super().load_state_dict(*args, **kwargs)
        self.has_learned_weights = True
        return result

    def add_training_head(self, name: str, module: torch.nn.Module) -> None:
        """Register ``module`` (e.g. the class weights of a margin loss) as part of training:
        the optimiser trains it and Lightning checkpoints hold it (a resumed run gets it
        back), but ``save_pretrained`` leaves it out and loading never asks for it."""
        if "training_heads" not in self._modules:
            self.training_heads = torch.nn.ModuleDict()
        self.training_heads[name] = module

    def head_module_names(self) -> tuple[str, ...]:
        """Names of the top-level modules that are the head: those ``build()`` made, and the
        training heads; every other module and parameter is the encoder."""
        return (*self.head_modules, TRAINING_HEADS.rstrip("."))

    def head_and_encoder_parameters(self) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
        """``(head, encoder)`` parameters (see :meth:`head_module_names`)."""
        head_prefixes = tuple(f"{name}." for name in self.head_module_names())
        head, encoder = [], []
        for name, parameter in self.named_parameters():
            (head if name.startswith(head_prefixes) else encoder).append(parameter)
        return head, encoder

    def encoder_modules(self) -> list[torch.nn.Module]:
        """The top-level modules that are not the head's (see :meth:`head_module_names`)."""
        head = self.head_module_names()
        return [module for name, module in self.named_children() if name not in head]

    def train(self, mode: bool = True):
        """``torch.nn.Module.train``; a frozen encoder (``encoder_lr_scale == 0``) stays in
        eval mode: its batch-normalisation statistics do not follow the new data either."""
        super().train(mode)
        if mode and self.encoder_lr_scale == 0:
            for module in self.encoder_modules():
                module.eval()
        return self

    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights a saved model keeps: all but the training heads."""
        return {name: tensor for name, tensor in self.state_dict().items() if not name.startswith(TRAINING_HEADS)}

    # ---- frames ------------------------------------------------------------------
    @property
    def frames(self) -> Frames:
        """Grid of the model's output frames (FRAME resolution)."""
        if self.frame_hop is None:
            raise ValueError(f"{type(self).__name__} does not emit frames.")
        return Frames.from_hop(self.frame_hop, self.sample_rate)

    @property
    def receptive_field(self):
        """Output frames as a ``pyannote.core.SlidingWindow`` (chunk-relative)."""
        return self.frames.sliding_window()

    def num_frames(self, num_samples: int) -> int:
        """Number of output frames for ``num_samples`` input samples."""
        return self.frames.num_frames(num_samples)

    def encode(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, channels, samples) -> frame features (batch, num_frames(samples), features):
        the part of ``forward`` that overlapping windows share (see :attr:`encoder_context`)."""
        raise NotImplementedError(f"{type(self).__name__} does not split into encode / decode.")

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """Frame features of one window each, (batch, frames, features) -> logits, as ``forward``."""
        raise NotImplementedError(f"{type(self).__name__} does not split into encode / decode.")

    def default_activation(self, logits: torch.Tensor) -> torch.Tensor:
        """Scores from logits, as the specifications call for."""
        return activation(self.specifications, logits)

    def check_input(self, waveforms: torch.Tensor) -> None:
        """Raise unless ``waveforms`` is (batch, channels, samples)."""
        if waveforms.ndim != 3 or waveforms.shape[1] != self.num_channels:
            raise ValueError(
                f"{type(self).__name__} expects waveforms of shape (batch, {self.num_channels}, samples), "
                f"got {tuple(waveforms.shape)}."
            )

    # ---- training: delegated to the task -----------------------------------------
    def prepare_data(self) -> None:
        if self.task is not None:
            self.task.prepare_data()

    def setup(self, stage: Optional[str] = None) -> None:
        if self.task is None:
            return
        self.task.model = self
        self.task.setup(stage)
        self.attach_specifications(self.task.specifications)
        self.task.setup_training_heads(self)
        self.task.setup_metrics(self)

    def train_dataloader(self):
        return self.task.train_dataloader()

    def val_dataloader(self):
        if not self.task.has_validation:
            return []
        return self.task.val_dataloader()

    def training_step(self, batch, batch_idx: int):
        from audiotask.utils.random import seed_training_step

        self.has_learned_weights = True
        seed_training_step(self.global_step, batch_idx)  # a resumed run draws the dropout masks of the uninterrupted one
        return self.task.training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx: int):
        return self.task.validation_step(batch, batch_idx)

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        # before any callback sees the step (a checkpoint saved at its end holds its effect)
        self.epoch_loss.count(self.current_epoch)
        if self.task is not None:
            self.task.on_optimizer_step()

    @property
    def epoch_loss(self):
        """The running mean of this epoch's training loss (``train/loss_epoch``), checkpointed."""
        if getattr(self, "_epoch_loss", None) is None:
            self._epoch_loss = EpochLoss()
        return self._epoch_loss

    def on_train_epoch_end(self) -> None:
        mean = self.epoch_loss.mean(self.current_epoch)
        if mean is not None:
            self.log("train/loss_epoch", mean, on_step=False, on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        if self.task is not None:
            self.task.on_validation_epoch_end()

    def configure_optimizers(self):
        from audiotask.core.optimization import configure_optimizers

        return configure_optimizers(self)

    # ---- saving and loading: arguments plus weights, never a pickle ---------------
    def manifest(self) -> dict[str, Any]:
        """JSON description: architecture, constructor arguments, specifications, versions."""
        import audiotask

        return {
            "format": FORMAT_VERSION,
            "architecture": architecture_name(type(self)),
            "arguments": dict(self.hparams),
            "specifications": self.specifications.to_dict(),
            "versions": {"audiotask": audiotask.__version__, "torch": torch.__version__.split("+")[0]},
        }

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` and ``audiotask.json`` into ``directory``, each whole (a
        kill mid-write leaves the previous file, see ``audiotask.io``), the manifest last."""
        from safetensors.torch import save_file

        manifest = json.dumps(self.manifest(), indent=2)  # first: an unregistered architecture writes nothing
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.inference_state_dict().items()}
        with replaced_atomically(directory / WEIGHTS) as partial:
            save_file(state, partial)
        write_text_atomically(directory / MANIFEST, manifest)
        return directory

    @classmethod
    def from_manifest(
        cls, manifest: dict[str, Any], state_dict: dict[str, torch.Tensor], *, source: Optional[str] = None
    ) -> "Model":
        """Rebuild a model from its manifest and weights (``source``: where they were read, for errors)."""
        architecture = model_class(manifest["architecture"], source=source)
        if not issubclass(architecture, cls):
            raise TypeError(f"Saved model is a {architecture.__name__}, not a {cls.__name__}.")
        where = source or "saved model"
        try:
            model = architecture(**manifest["arguments"])
        except TypeError as error:  # an argument this version's architecture does not take
            raise ValueError(f"{where}: {architecture.__name__} does not take the saved arguments: {error}") from error
        model.attach_specifications(Specifications.from_dict(manifest["specifications"]))
        # a training checkpoint holds the training heads (a margin loss's class weights): not the model's
        state_dict = {name: tensor for name, tensor in state_dict.items() if not name.startswith(TRAINING_HEADS)}
        try:
            missing, unexpected = model.load_state_dict(state_dict, strict=False)
        except RuntimeError as error:  # torch's message names neither the file nor, in one line, the weight
            raise RuntimeError(f"{where}: weights do not fit {architecture.__name__}: "
                               f"{_first_state_dict_error(error)}") from error
        # a part added to an architecture since the model was saved, that inference does not use
        missing = [name for name in missing if not name.startswith(model.training_only_prefixes)]
        if missing or unexpected:
            raise RuntimeError(f"{where}: weights do not fit {architecture.__name__}: "
                               f"missing {missing}, unexpected {unexpected}.")
        return model.eval()

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "Model":
        """Load a model saved with ``save_pretrained`` (a folder) or a Lightning ``.ckpt``.

        Neither path runs code from the files: the folder holds JSON and safetensors;
        checkpoints are read with ``torch.load(weights_only=True)``; the architecture is
        looked up by name among the registered ones, never imported from the name. A file
        that cannot be read (truncated, corrupt, not JSON, a pickle of objects) is a
        ``ValueError`` in one line naming it.
        """
        path = Path(path)
        if path.is_dir():
            manifest_path = path / MANIFEST
            if not manifest_path.is_file():
                raise FileNotFoundError(f"{path} is not a saved audiotask model: {MANIFEST} is missing.")
            manifest = read_manifest(manifest_path)
            return cls.from_manifest(manifest, read_weights(path / WEIGHTS), source=str(manifest_path))
        if path.suffix == ".ckpt":
            checkpoint = load_checkpoint(path)
            if not isinstance(checkpoint, Mapping) or "audiotask" not in checkpoint:
                raise ValueError(f"{path} is not an audiotask checkpoint (no 'audiotask' manifest).")
            # a checkpoint may keep another network than the one trained (a mean teacher)
            kept = checkpoint.get("audiotask_kept", "student")
            key = "state_dict" if kept == "student" else f"{kept}_state_dict"
            if key not in checkpoint:
                raise ValueError(f"{path} is not a whole audiotask checkpoint (no {key!r})")
            return cls.from_manifest(checkpoint["audiotask"], checkpoint[key], source=str(path))
        raise FileNotFoundError(f"No saved model at {path} (expected a folder or a .ckpt file).")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from audiotask.core.resumed_run import check_resumed_manifest

        # before Lightning loads a weight: a checkpoint of another task, classes, chunks or
        # model arguments must not go on training as this run (engine/resume.py)
        check_resumed_manifest(checkpoint.get("audiotask"), self.manifest())
        self.epoch_loss.restore(checkpoint.get(EPOCH_LOSS_KEY))
        if self.task is not None:
            self.task.nonfinite_losses_in_a_row = int(checkpoint.get(NONFINITE_KEY, 0))
            self.task.restore_extras(checkpoint)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["audiotask"] = self.manifest()
        checkpoint[EPOCH_LOSS_KEY] = self.epoch_loss.state()
        if self.task is not None:
            checkpoint[NONFINITE_KEY] = int(self.task.nonfinite_losses_in_a_row)
            # e.g. a mean teacher's weights, and which network the checkpoint keeps
            checkpoint.update(self.task.checkpoint_extras())
        # plain values only, so that torch.load(weights_only=True) can read it back
        checkpoint.pop("hyper_parameters", None)
