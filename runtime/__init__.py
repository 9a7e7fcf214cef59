"""What both sides load: the worker and every runner process.

Stdlib only at import time (a profile environment has neither pydantic nor boto3).
Modules: ``runner`` (the runner base and its spec), ``protocol`` (the host <-> runner
messages), ``_child`` (the runner process loop), ``machine`` (the machine's facts),
``atomic`` (the one way a file becomes visible), ``checks`` (input checks a runner's
``check`` hook runs in the worker), ``device`` (which torch device a runner uses).

This package is the runner author's one import: ``from runtime import Runner,
RunnerSpec, RunContext, OutputFile`` (see docs/guides/add-a-runner.md). An operator's
own runner package that imports only these names survives moves inside the worker.
``tests/test_layers.py`` fences what this package may load.
"""

from runtime.protocol import OutputFile
from runtime.runner import RunContext, Runner, RunnerSpec

__all__ = ["OutputFile", "RunContext", "Runner", "RunnerSpec"]
