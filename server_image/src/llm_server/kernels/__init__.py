"""Triton kernels, one per file, each beside the torch reference it is tested against.

They run on CUDA; tests also run them on CPU under Triton's interpreter (TRITON_INTERPRET=1,
which must be set before triton is first imported).
"""
