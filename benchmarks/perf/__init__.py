"""The performance benchmark's phases; ``benchmarks/perf_workflow.py`` is its entry point."""
