"""ladtrain: LLM reasoning RL with the verified LAD loss from ``ladtheory``."""
