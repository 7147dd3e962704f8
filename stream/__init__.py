"""driftline.stream — the monitor core and the shells that drive it.

Sub-packages, by role (each has its own face):

* :mod:`~driftline.stream.monitor` — the pure core: engine, windows, window state, verdicts, alerts,
  reference profiles and result records. No I/O; imports only ``detectors`` and ``schemas``.
* :mod:`~driftline.stream.runner` — the one partition runner (decode → dead-letter port → engine →
  checkpoint-store port) that the worker, the demo and replay share.
* :mod:`~driftline.stream.kafka` — the Faust worker: app, agents, topics, dead-letter producer, settings.
* :mod:`~driftline.stream.produce` — the producer API and its input files.
* :mod:`~driftline.stream.profiles` — reference profiles from training data, and their directory store.
* :mod:`~driftline.stream.demo` — the synthetic generator, the embedded demo and its HTML report.
* :mod:`~driftline.stream.cli` — the ``driftline`` command, one module per sub-command.

Nothing is imported here, so ``driftline --help`` loads none of Kafka, SQLAlchemy or pyarrow.
"""

__all__: list[str] = []
