"""The worker: the job contract and the tasks, the runner registry and host, the
environments, the factory profiles, and the operator's command line (``python -m models``).

Worker side only (pydantic, boto3 and huggingface_hub are there); a runner process
never imports this package. Import the module you need (``models.contract``,
``models.jobs``, ``models.registry``, ``models.host``): this package exports nothing,
so importing one module does not load the others. An operator's own task or runner
package imports ``models.plugin``.
"""
