"""The one training loop core every method plugs its steps into."""

from duiit.training.loop import LoopSettings, Task, run_loop
from duiit.training.runtime import Runtime

__all__ = ["LoopSettings", "Runtime", "Task", "run_loop"]
