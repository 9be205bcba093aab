"""Benchmarks of throughput, API-call cost, memory and push latency against the sandboxes (not run by pytest).

Run ``python -m benchmarks [--quick] [--only NAME] [--pairs bc-zoho,nav-zoho]``; see benchmarks/README.md.
"""
