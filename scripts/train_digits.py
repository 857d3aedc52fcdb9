"""Train a zoo model on scikit-learn's digits and write the weights shipped in cnnexport/models/weights/.

    python scripts/train_digits.py                                   # LeNet-5, 1x32x32
    python scripts/train_digits.py --model shufflenet_v2_x0_5 --channels 3 --size 64 --epochs 40
                                                                     # depthwise network, 3x64x64

The split is fixed (cnnexport.calib.digits): 1,347 training images, 450 test images, never mixed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from cnnexport.calib.digits import load_digits
from cnnexport.models import create_model
from cnnexport.models.digits_training import accuracy, train_classifier

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "cnnexport" / "models" / "weights"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--size", type=int, default=32, help="Digits upsampled to SIZE x SIZE.")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_digits(size=args.size, channels=args.channels)
    torch.manual_seed(0)  # the initial weights too
    model = train_classifier(create_model(args.model, num_classes=10), data.x_train, data.y_train,
                             epochs=args.epochs, lr=args.lr)
    result = {"model": args.model, "epochs": args.epochs, "input": [args.channels, args.size, args.size], "lr": args.lr, "train_images": len(data.y_train),
              "test_images": len(data.y_test), "train_accuracy": accuracy(model, data.x_train, data.y_train),
              "test_accuracy": accuracy(model, data.x_test, data.y_test)}
    path = WEIGHTS_DIR / f"{args.model}_digits.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={k: str(v) for k, v in result.items()})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
