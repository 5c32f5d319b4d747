"""The search: the HyperModel, Keras Tuner fitted to it (strategies, pruners, callbacks, patches), resume, the
Optuna journal, the distributed roles, and the replay of pruners on recorded curves."""
