"""Why ncnn runs VGG faster than its roofline bound: its 3x3 stride-1 convolutions with and without
Winograd (``opt.use_winograd_convolution``), vgg11 at batch 1, 2 threads, interleaved rounds.

    python benchmarks/ncnn_winograd.py

The bound charges a convolution's MACs as a direct convolution at the best GEMM's rate; Winograd
F(6,3) computes a 3x3 stride-1 convolution with fewer multiplications, so a runtime that uses it can
beat a bound that counts direct MACs. Writes benchmarks/results/ncnn_winograd.json."""
import json, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import ncnn

tmp = Path(tempfile.mkdtemp())
subprocess.run([sys.executable, "-m", "cnnexport", "export", "vgg11", "--ncnn", "-o", str(tmp), "--json"], check=True,
               capture_output=True)
param = next(tmp.glob("vgg11.ncnn.param"))

def net(winograd):
    n = ncnn.Net()
    n.opt.use_vulkan_compute = False
    n.opt.num_threads = 2
    n.opt.use_winograd_convolution = winograd
    n.load_param(str(param)); n.load_model(str(param.with_suffix(".bin")))
    return n

x = np.random.default_rng(0).standard_normal((3, 224, 224)).astype(np.float32)
nets = {True: net(True), False: net(False)}
def run(n):
    ex = n.create_extractor(); ex.input("in0", ncnn.Mat(x)); _, out = ex.extract("out0"); return np.array(out)
outs = {k: run(n) for k, n in nets.items()}
rounds = {True: [], False: []}
for r in range(5):
    for k, n in nets.items():
        for _ in range(2): run(n)
        t = []
        for _ in range(8):
            s = time.perf_counter(); run(n); t.append(time.perf_counter() - s)
        rounds[k].append(statistics.median(t) * 1e3)
from cnnexport.machine import cpu_facts

result = {"benchmark": "ncnn_winograd", "model": "vgg11", "threads": 2, "rounds": 5, "ncnn": ncnn.__version__,
          "winograd_ms": rounds[True], "direct_ms": rounds[False],
          "ratio_direct_over_winograd": [b / a for a, b in zip(rounds[True], rounds[False])],
          "max_abs_diff": float(np.abs(outs[True] - outs[False]).max()), "machine": cpu_facts()}
(Path(__file__).parent / "results" / "ncnn_winograd.json").write_text(json.dumps(result, indent=1) + "\n")
print(json.dumps(result["ratio_direct_over_winograd"]))
