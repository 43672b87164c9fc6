"""The engine: model loading, sites, tasks, interventions, the objective, training and evaluation."""
