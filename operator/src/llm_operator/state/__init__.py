"""The operator's in-memory state, in named parts that the reconciler (reconciler.py) holds:
what it wrote (WriteCache), what the API server refused (Rejections), when each
LLMDeployment's daemon wakes (Wakeups) and the autoscaler's tick and memory (AutoscalerClock).
Memory only: a restarted operator starts empty and reads the truth from the API server."""

from llm_operator.state.autoscaler_clock import AutoscalerClock
from llm_operator.state.rejections import Rejections
from llm_operator.state.wakeups import Wakeups
from llm_operator.state.writes import Key, WriteCache, stamp_of

__all__ = ["AutoscalerClock", "Key", "Rejections", "Wakeups", "WriteCache", "stamp_of"]
