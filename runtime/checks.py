"""Input checks a runner's ``check`` hook runs in the worker, before the job is queued.

They live here, not in ``media/``, because the hook runs in the worker process (which
never loads ``media``) while the same check guards the runner side too.
"""

from __future__ import annotations

import config
from errors import InvalidInput


def check_text_length(text: str) -> None:
    """Refuse text longer than ``MEDIA_WORKER_MAX_TEXT_CHARS``.

    Raises:
        InvalidInput: the text is too long (field ``text``).
    """
    limit = config.MAX_TEXT_CHARS.get()
    if len(text) > limit:
        raise InvalidInput(
            f"text: {len(text)} characters is more than this worker takes in one job "
            f"({limit}, MEDIA_WORKER_MAX_TEXT_CHARS); split it into several jobs",
            field="text",
        )
