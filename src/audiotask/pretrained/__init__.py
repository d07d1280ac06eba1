"""Published pretrained networks brought in as ordinary audiotask models.

Each source converts a network's published weights into an audiotask model folder
(``model.safetensors`` + ``audiotask.json``) of a registered architecture: the weights are
read as data (safetensors, or ``torch.load(weights_only=True)``), never by running code
shipped with them, and the published model's own preprocessing is part of the
architecture, so that the imported model's outputs match the original's.

:data:`SOURCES` names them for ``audiotask import SOURCE``, as ``"module:function"``
strings imported when used (the command line's help must stay light).
"""

#: source name -> (``"module:function"`` converting it, one line saying what it is)
SOURCES: dict[str, tuple[str, str]] = {
    "silero-vad": ("audiotask.pretrained.silero_vad:import_silero_vad",
                   "Silero VAD's 16 kHz network, from the weights the silero-vad package ships "
                   "(a FRAME speech detector for --task vad)"),
    "resemblyzer": ("audiotask.pretrained.resemblyzer:import_resemblyzer",
                    "resemblyzer's GE2E speaker encoder, from the pretrained.pt the package ships "
                    "(256-dimensional embeddings for --task embedding)"),
}
