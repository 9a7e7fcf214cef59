"""What both sides load: the worker and every runner process.

Stdlib only at import time (a profile environment has neither pydantic nor boto3):
the runner protocol (``protocol``), the runner base (``runner``), the runner
process loop (``_child``), the machine's facts (``machine``) and the one way a file
becomes visible (``atomic``). ``tests/test_layers.py`` fences it.
"""
