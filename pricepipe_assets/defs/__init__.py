"""The asset graph, one module (or package) per asset group, named as the group is in the UI:
`exchanges`, `kafka`, `ingestion`, `live`, `lake`, `analytics`, `ml`, `retention`. Each holds its
assets with their checks, jobs, sensors and schedules, and says what it adds to the code location
in one function, ``definitions(settings)``, which `pricepipe_assets.definitions` merges.

Beside them: `resources/` (thin wrappers of the clients), and what several groups share:
`metadata.py`, `partitions.py`, `kafka_fed.py` (a Kafka-fed asset's batch) and `run_queue.py`.
"""
