"""handstep's engine: one training step of a tiny GPT-2 in NumPy, recorded as a trace.

    from engine import load_config, run, load_trace
    trace = run(load_config("configs/default.yaml"))
    trace["L0.attn.weights"]          # a NumPy array
    trace.save("trace.json"); load_trace("trace.json")
"""

from .budget import BudgetError, Estimate, check_budget, count_values, estimate
from .config import Config, ConfigError, load_config
from .explain import Explanation, explain
from .run import RunError, run
from .trace import Record, Trace, TraceError, load_trace

__all__ = ["BudgetError", "Config", "ConfigError", "Estimate", "Explanation", "Record", "RunError", "Trace",
           "TraceError", "check_budget", "count_values", "estimate", "explain", "load_config", "load_trace", "run"]
