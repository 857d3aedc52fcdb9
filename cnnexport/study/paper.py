"""The ShuffleNetV2 paper's controlled experiments (Ma et al., ECCV 2018, arXiv 1807.11164), as data.

Section 2: four micro-benchmarks, each 10 stacked blocks on a 56x56 feature map, one per guideline.
The paper's speeds are throughput (GPU: GTX 1080Ti, batches/s at batch 8; ARM: Snapdragon 810,
images/s at batch 1), transcribed here from Tables 1-4 for the x1 width; the study compares ratios
to each table's first row, since absolute speeds on other hardware mean nothing. Table 8 gives
MFLOPs (multiply-adds) and ImageNet top-1 error of the four lightweight families at four budgets.
No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SPATIAL = 56
BLOCKS = 10
WIDTHS = (1, 2, 4)


@dataclass(frozen=True)
class MicroNet:
    """One row of a guideline table: a block kind and its channel settings at width x1."""

    guideline: str
    label: str
    block: str                  # conv1x1_pair, group_conv1x1, fragments, bottleneck
    settings: dict = field(default_factory=dict)
    paper_gpu: float | None = None   # throughput at x1, as the paper reports it
    paper_arm: float | None = None

    def at_width(self, width: int, align: int = 1) -> dict:
        """The block's settings with every channel count multiplied by ``width``, then rounded to the
        nearest multiple of ``align`` (halves up; never below ``align``)."""
        def channels(v: int) -> int:
            return max(align, (2 * v * width + align) // (2 * align) * align)
        return {k: channels(v) if k in ("c1", "c2", "c") else v for k, v in self.settings.items()}


# Table 1 (G1): two 1x1 convs c1 -> c2 -> c1 per block, FLOPs fixed across ratios.
G1 = [
    MicroNet("G1", "1:1", "conv1x1_pair", {"c1": 128, "c2": 128}, 1480, 76.2),
    MicroNet("G1", "1:2", "conv1x1_pair", {"c1": 90, "c2": 180}, 1296, 72.9),
    MicroNet("G1", "1:6", "conv1x1_pair", {"c1": 52, "c2": 312}, 876, 69.1),
    MicroNet("G1", "1:12", "conv1x1_pair", {"c1": 36, "c2": 432}, 748, 57.6),
]
# Table 2 (G2): a 1x1 group conv c -> c per block; c grows with g so FLOPs stay fixed.
G2 = [
    MicroNet("G2", "g=1", "group_conv1x1", {"c": 128, "groups": 1}, 2451, 40.0),
    MicroNet("G2", "g=2", "group_conv1x1", {"c": 180, "groups": 2}, 1725, 35.0),
    MicroNet("G2", "g=4", "group_conv1x1", {"c": 256, "groups": 4}, 1026, 32.9),
    MicroNet("G2", "g=8", "group_conv1x1", {"c": 360, "groups": 8}, 634, 27.8),
]
# Table 3 (G3): 1x1 convs as 1, 2 or 4 fragments, in series or in parallel; FLOPs of the 1-fragment block.
G3 = [
    MicroNet("G3", "1-fragment", "fragments", {"c": 128, "fragments": 1, "parallel": False}, 2446, 40.2),
    MicroNet("G3", "2-fragment-series", "fragments", {"c": 128, "fragments": 2, "parallel": False}, 1790, 38.6),
    MicroNet("G3", "4-fragment-series", "fragments", {"c": 128, "fragments": 4, "parallel": False}, 752, 38.4),
    MicroNet("G3", "2-fragment-parallel", "fragments", {"c": 128, "fragments": 2, "parallel": True}, 1537, 33.4),
    MicroNet("G3", "4-fragment-parallel", "fragments", {"c": 128, "fragments": 4, "parallel": True}, 691, 35.0),
]
# Table 4 (G4): the ResNet bottleneck (1x1, 3x3, 1x1) with and without ReLU and shortcut.
G4 = [
    MicroNet("G4", "ReLU + shortcut", "bottleneck", {"c": 32, "relu": True, "shortcut": True}, 2427, 56.7),
    MicroNet("G4", "ReLU, no shortcut", "bottleneck", {"c": 32, "relu": True, "shortcut": False}, 2647, 61.9),
    MicroNet("G4", "shortcut, no ReLU", "bottleneck", {"c": 32, "relu": False, "shortcut": True}, 2672, 57.3),
    MicroNet("G4", "no ReLU, no shortcut", "bottleneck", {"c": 32, "relu": False, "shortcut": False}, 2842, 66.3),
]
GUIDELINES = {"G1": G1, "G2": G2, "G3": G3, "G4": G4}
# The guidelines whose FLOPs-matched channel counts (90, 180, 52, 36, 312...) are not multiples of 8:
# the study repeats them with channels rounded to multiples of 8 and 16 (the alignment factor).
ALIGNABLE = ("G1", "G2")
ALIGNMENTS = (8, 16)
CLAIMS = {
    "G1": "equal channel width minimises memory access cost: 1:1 is fastest at equal FLOPs",
    "G2": "excessive group convolution increases MAC: more groups is slower at equal FLOPs",
    "G3": "network fragmentation reduces parallelism: one fragment is fastest at equal FLOPs",
    "G4": "element-wise operations are not negligible: removing ReLU and shortcut is faster",
}


@dataclass(frozen=True)
class Table8Row:
    model: str          # cnnexport registry name
    paper_name: str
    mflops: int         # the paper's MFLOPs (multiply-adds)
    top1_err: float     # ImageNet top-1 error, %


# Table 8, grouped by complexity budget (MFLOPs).
TABLE8 = {
    40: [Table8Row("shufflenet_v2_x0_5", "ShuffleNet v2 0.5x", 41, 39.7),
         Table8Row("mobilenet_v1_0_25", "0.25 MobileNet v1", 41, 49.4),
         Table8Row("shufflenet_v1_g3_0_5", "ShuffleNet v1 0.5x (g=3)", 38, 43.2)],
    150: [Table8Row("shufflenet_v2_x1_0", "ShuffleNet v2 1x", 146, 30.6),
          Table8Row("mobilenet_v1_0_5", "0.5 MobileNet v1", 149, 36.3),
          Table8Row("shufflenet_v1_g3", "ShuffleNet v1 1x (g=3)", 140, 32.6)],
    300: [Table8Row("shufflenet_v2_x1_5", "ShuffleNet v2 1.5x", 299, 27.4),
          Table8Row("mobilenet_v2", "MobileNet v2 1x", 300, 28.0),
          Table8Row("shufflenet_v1_g3_1_5", "ShuffleNet v1 1.5x (g=3)", 292, 31.0),
          Table8Row("mobilenet_v1_0_75", "0.75 MobileNet v1", 325, 31.6)],
    600: [Table8Row("shufflenet_v2_x2_0", "ShuffleNet v2 2x", 591, 25.1),
          Table8Row("mobilenet_v1", "1.0 MobileNet v1", 569, 29.4),
          Table8Row("shufflenet_v1_g3_2_0", "ShuffleNet v1 2x (g=3)", 524, 29.1),
          Table8Row("mobilenet_v2_1_4", "MobileNet v2 1.4x", 585, 25.3)],
}
