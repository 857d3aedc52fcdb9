"""The FLOPs-vs-speed study: ShuffleNetV2's guidelines G1-G4 on micro-networks, and the zoo's
latency against MACs per runtime (``cnnexport study guidelines`` / ``cnnexport study zoo``)."""
