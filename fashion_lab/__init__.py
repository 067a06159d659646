"""fashion-lab."""
