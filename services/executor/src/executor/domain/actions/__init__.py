"""The action adapters' pure half: what each I/O action sends and how its answer is judged.

``base`` holds what every action shares (:class:`~executor.domain.actions.base.ActionCall`,
outcome helpers); one module per action type builds its requests and classifies its results.
The I/O lives in ``executor.adapters`` and the registry in ``executor.actions``.
"""
