"""The job contract, the runner registry and the runner host.

Names are exported lazily (PEP 562): a runner process imports
``models.protocol`` from a profile environment that has no pydantic, so this
package must not import the contract eagerly.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["JobResult", "RunnerHost", "parse_job", "resolve"]

_EXPORTS = {
    "JobResult": "models.contract",
    "parse_job": "models.contract",
    "RunnerHost": "models.host",
    "resolve": "models.registry",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
