"""The tasks this worker serves, one module each: worker side only.

A task module declares ``TASKS``, a tuple of :class:`~models.tasks.base.TaskSpec`:
the task's contract fragment (its pydantic job model and result types, defined in
the same module), the setting that names its default model, and its hooks around
the runner. Runner modules (``runners/``) name a task and serve it; they run in a
profile's interpreter, which may have no pydantic, so they never import a task module.
"""
