"""Benchmarks of meridian-bot. `python -m bench` runs the ack-latency benchmark."""
