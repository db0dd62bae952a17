"""Training: the recipe, the Accelerate loop, exact resume, distillation and the data pipeline."""
