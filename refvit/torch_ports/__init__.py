"""PyTorch ports of the five architectures, written from the official semantics with the official names.

The tests check refvit's models against them, and ``refvit bench`` times them against refvit on
the same weights. Importing this package does not import torch; importing one of its modules
(``dinat``, ``cswin``, ``smt``, ``dualvit``, ``coatnet``, ``build``) does.
"""
