"""Profiling: the cost model (MACs, memory access), per-layer profiles of a PyTorch module and of
an ONNX graph, graph facts, and the roofline bound, per model and per fused layer group. Below the
exporter and bench: it imports neither."""
