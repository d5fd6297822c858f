"""Building blocks shared by every model family: attention, linear, norm, rotary, sampler."""
