"""Fine-tuning RDT on recorded episodes."""
