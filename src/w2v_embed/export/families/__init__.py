"""One module per model family: the padding-exact forward pass that is traced to ONNX."""
