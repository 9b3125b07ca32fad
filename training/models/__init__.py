"""The networks: the classifiers and their weights, where they train, their calibration and frozen features."""
