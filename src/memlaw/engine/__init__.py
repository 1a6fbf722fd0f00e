"""The fast probe engine: a fused output head, a frozen-prefix cache, stacked adapters."""
