"""Model architectures (PyTorch), offline pretrained weights and the chestlens bundle format.

``spec`` and ``catalog`` are readable without PyTorch (``bundle.json`` and where bundles live);
``bundle``, ``factory``, ``registry`` and the architecture modules need the ``[train]`` extra.
"""
