"""Building databases on a distributed engine (Ray Data): plan.py (what a builder hands over, no Ray),
shards.py (finished work kept on disk for resuming), engine.py (the Ray stage; Ray imported only there,
when a job runs). The builders take engine="ray" and pass their plan here; the database is then written
by the pack's own writer, as a local build writes it."""
