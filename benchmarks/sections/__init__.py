"""The sections of benchmarks/REPORT.md, one module each, made from the saved results; `report.py` is the driver."""
