"""fashion-lab's KerasTuner sweeper for Hydra: ``hydra/sweeper=kerastuner`` (``fashion-lab tune`` selects it)."""
