"""Autoscaler replay: a real request trace against simulated GPU replicas, four scaling
policies (ours, static, HPA, KubeAI), each with an equal tuning budget, judged on held-out load.

trace (requests, halves) · simulator (replicas, one run) · policies (ours and the baselines) ·
sweep (the configurations, the worker pool) · frontier (Pareto, held-out selection) ·
analysis (what the report says) · report (JSON, markdown) · plots · __main__ (command line).
"""

from .frontier import Pair, cheapest_at, chosen, dominance, held_out, pareto
from .policies import DEFAULT_RUNNING, MAX_REPLICAS, Hpa, KubeAi, Ours, Static
from .report import knob_text, report_json
from .simulator import Capacity, Policy, Replica, Run, SimConfig, Tick, calibrated, simulate
from .sweep import (
    BUDGET,
    DOWN_WINDOWS,
    DYNAMIC,
    FLOORS,
    HPA_TARGETS,
    KUBEAI_TARGETS,
    sweep,
)
from .trace import Request, halves, load_trace

__all__ = [
    "BUDGET", "DEFAULT_RUNNING", "DOWN_WINDOWS", "DYNAMIC", "FLOORS", "HPA_TARGETS",
    "KUBEAI_TARGETS", "MAX_REPLICAS", "Capacity", "Hpa", "KubeAi", "Ours", "Pair", "Policy",
    "Replica", "Request", "Run", "SimConfig", "Static", "Tick", "calibrated", "cheapest_at",
    "chosen", "dominance", "halves", "held_out", "knob_text", "load_trace", "pareto",
    "report_json", "simulate", "sweep",
]  # fmt: skip
