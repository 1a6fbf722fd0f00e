"""The fast probe engine: a fused output head and a frozen-prefix cache (stacked copies live in placements)."""
