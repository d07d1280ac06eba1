"""Names of the files a saved model is made of: light, so that code that only reads them
(an ONNX export's runtime, the command line) need not import the model classes."""

#: the model's manifest: architecture, hyper-parameters, specifications (JSON)
MANIFEST = "audiotask.json"
#: the model's weights (safetensors: loading them unpickles nothing)
WEIGHTS = "model.safetensors"
