"""Benchmark cases for w2v-embed: each case measures in processes of its own and prints table rows.

    python scripts/bench.py                      # base, 2 threads: peak, PyTorch eager vs w2v-embed
    python scripts/bench.py --files 0 --runtimes --startup --int8
    python scripts/bench.py --sizes base large --files 200 --int8 --long-hours 2
    python scripts/bench.py --files 24 --frames --rounds 5    # frame-level vs pooled output, interleaved
    python scripts/bench.py --files 6 --units --rounds 9      # extract --units vs pooled; --kmeans-frames N…

Modules: common (models, audio, child processes, rows), peak (the CPU and its MatMul ceiling),
model (model-only ×real-time), pipeline (extract end to end, shards, long files, segments, reading),
runtimes (ONNX Runtime vs OpenVINO, start-up with and without the cache), frames (frame-level vs pooled
output end to end), units (extract --units vs pooled, k-means fit time and memory), main (the command line).
"""
