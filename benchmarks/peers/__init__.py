"""Helpers of benchmarks/server_vs_peers.py: the seeded workload, the HTTP load client and the
server processes (ours and llama.cpp's llama-server)."""
