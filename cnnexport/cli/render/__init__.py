"""What the CLI shows: rich tables of reports, the per-stage spinner and progress bars, one module per
kind of output. Only the CLI imports this package; it prints, the rest of the package never does."""

from .console import (live_console, out_console, StageStatus, ProgressBar, plain_progress, EvalProgress)
from .export import (tolerance_text, fp16_text, reduced_check, delegation_text, print_export_summary, print_verify, print_locate, runtime_default_text, print_quantize, describe_keep_float, print_fold)
from .bench import (bench_table, BENCH_COLUMNS, BENCH_DEFAULT_COLUMNS, BENCH_KEY_COLUMNS, print_bench)
from .profile import (print_profile, print_roofline, print_models, print_timm_models)
from .study import (print_guidelines, print_zoo, zoo_speed_tables)
from .eval import (print_eval)

__all__ = ["live_console", "out_console", "StageStatus", "ProgressBar", "plain_progress", "EvalProgress", "tolerance_text", "fp16_text", "reduced_check", "delegation_text", "print_export_summary", "print_verify", "print_locate", "runtime_default_text", "print_quantize", "describe_keep_float", "print_fold", "bench_table", "BENCH_COLUMNS", "BENCH_DEFAULT_COLUMNS", "BENCH_KEY_COLUMNS", "print_bench", "print_profile", "print_roofline", "print_models", "print_timm_models", "print_guidelines", "print_zoo", "zoo_speed_tables", "print_eval"]
