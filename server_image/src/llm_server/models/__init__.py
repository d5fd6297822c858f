"""Model families implemented in our own code; transformers supplies configs and tokenizers."""
