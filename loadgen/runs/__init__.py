"""A scenario run: the scenario format, metrics and gates, ``loadgen run`` itself, its results, ``loadgen compare``."""
