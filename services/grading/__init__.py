"""研判 · 交办 · 督办 grading: incidents, levels, routing, deadlines, the handling workflow."""
