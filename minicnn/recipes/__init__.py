"""Recipes: the programs that produce the project's measured results (training, benchmarks, ...)."""
