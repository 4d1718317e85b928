"""w2v-embed: wav2vec 2.0 embeddings from audio folders, via ONNX Runtime."""

__version__ = "0.1.0"
