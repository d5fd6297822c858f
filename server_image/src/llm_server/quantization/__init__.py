"""Weight-only quantization: schemes, quantize/dequantize, pre-quantized checkpoints."""
