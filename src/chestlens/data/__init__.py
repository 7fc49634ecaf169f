"""Datasets in their own formats: adapters, tasks, splits, hashing and tensors for training."""
