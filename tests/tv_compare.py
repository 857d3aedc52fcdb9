"""Run in a subprocess: build torchvision's model from its own (pure Python) source, load its
state_dict into ours with strict=True, and compare eval-mode outputs. Prints one JSON line per model.

torchvision's compiled ops do not load beside this torch build, and the models need none of them:
``torchvision._meta_registrations`` (which registers meta kernels for those ops) is stubbed out.
Usage: python tv_compare.py TORCHVISION_SRC_DIR MODEL [MODEL ...]
"""

import json
import sys
import types

import torch

sys.path.insert(0, sys.argv[1])
sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
import torchvision.models as tvm  # noqa: E402

from cnnexport.models import create_model, model_info  # noqa: E402


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def compare(name, transform_input=False):
    torch.manual_seed(0)
    kwargs = {"transform_input": True} if transform_input else {}
    if name in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=True, init_weights=True)
    theirs = getattr(tvm, name)(**kwargs).eval()
    randomize(theirs, 1)
    with torch.device("meta"):  # no initialisation of weights the load replaces (VGG's cost seconds)
        ours = create_model(name, **({"transform_input": True} if transform_input else {}))
    ours.load_state_dict(theirs.state_dict(), strict=True, assign=True)
    assert not any(t.is_meta for t in [*ours.parameters(), *ours.buffers()]), name
    # at most 112 px (Inception v3 needs 75): the same code runs at a quarter of 224's cost, and the adaptive
    # poolings that are identities at 224 (AlexNet's 6x6, VGG's 7x7) do work too
    c, h, w = model_info(name).input_size
    h, w = min(h, 112), min(w, 112)
    x = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = theirs(x), ours(x)
    return {"model": name, "transform_input": transform_input, "max_abs": float((a - b).abs().max()),
            "scale": float(a.abs().max()), "same_top1": bool(torch.equal(a.argmax(1), b.argmax(1)))}


for name in sys.argv[2:]:
    print(json.dumps(compare(name)), flush=True)
    if name in ("googlenet", "inception_v3"):
        print(json.dumps(compare(name, transform_input=True)), flush=True)
