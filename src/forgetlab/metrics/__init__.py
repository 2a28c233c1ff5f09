"""Pure metric functions on plain data (lists, NumPy arrays): no model, no torch."""
