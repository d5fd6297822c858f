"""Tensor parallelism: process groups, the rank-0 runner, the worker ranks' loop."""
