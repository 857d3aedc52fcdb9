"""AlexNet: torchvision's single-GPU variant, and the original paper's network with LRN."""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_model

# The original network: Krizhevsky, Sutskever, Hinton, NeurIPS 2012 (no arXiv id).
PAPER = "ImageNet Classification with Deep Convolutional Neural Networks (Krizhevsky et al., NeurIPS 2012)"
# torchvision's single-GPU variant follows Krizhevsky's "One weird trick" paper, whose id this is.
TRICK_PAPER = "One weird trick for parallelizing convolutional neural networks (Krizhevsky, 2014)"
TRICK_ARXIV = "1404.5997"


class AlexNet(nn.Module):
    """torchvision's AlexNet (64-192-384-256-256 channels, no LRN, adaptive 6x6 pooling)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class AlexNetLRN(nn.Module):
    """The paper's network: 96-256-384-384-256 channels, conv2/4/5 split in two groups (the two
    GPUs), ReLU then local response normalisation after conv1 and conv2, overlapping 3x3/2 max
    pooling, dropout 0.5 before fc6 and fc7, 227x227 input.

    LRN: the paper's b = a / (k + alpha * sum a^2)^beta with n=5, alpha=1e-4, beta=0.75, k=2.
    PyTorch (and ONNX) divide alpha by n, so the layer is built with alpha = 1e-4 * 5.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        lrn = dict(size=5, alpha=1e-4 * 5, beta=0.75, k=2.0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=11, stride=4), nn.ReLU(inplace=True),
            nn.LocalResponseNorm(**lrn), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2), nn.ReLU(inplace=True),
            nn.LocalResponseNorm(**lrn), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )
        self.apply(init_alexnet_paper)
        # The paper: bias 1 in conv2, conv4, conv5 and the hidden fully connected layers (speeds up early
        # learning by giving the ReLUs positive inputs), 0 elsewhere.
        with torch.no_grad():
            for layer in (self.features[4], self.features[10], self.features[12], self.classifier[1],
                          self.classifier[4]):
                layer.bias.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def init_alexnet_paper(module: nn.Module) -> None:
    """Weights N(0, 0.01), biases 0 (the paper, section 5)."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.01)
        nn.init.zeros_(module.bias)


@register_model("alexnet", params=61_100_840, macs=710_000_000, source="torchvision", paper=TRICK_PAPER,
                arxiv=TRICK_ARXIV, torchvision_compatible=True)
def alexnet(**kwargs) -> AlexNet:
    return AlexNet(**kwargs)


# The paper (section 1): "60 million parameters".
@register_model("alexnet", input_size=(3, 227, 227), params=60_000_000, source="paper, section 1", paper=PAPER)
def alexnet_lrn(**kwargs) -> AlexNetLRN:
    return AlexNetLRN(**kwargs)
