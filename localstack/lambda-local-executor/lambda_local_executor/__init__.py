"""LocalStack Lambda runtime executor plugin ``local-process``: Python handlers as local processes.

Enable with ``LAMBDA_RUNTIME_EXECUTOR=local-process`` in LocalStack's environment.
"""
