"""The job contract, the runner registry and host, the tasks and the runners.

Import the module you need (``models.contract``, ``models.registry``, ``models.host``):
this package exports nothing, so a runner process, which imports ``runtime.protocol``
from a profile environment without pydantic, never loads the contract.
"""
