"""The method: the five networks as one module (:class:`~medseg.method.networks.DualNetworks`), latent masking and
its options, the losses, and cooperative training as plain functions over the networks and a batch.

The package imports nothing itself, so that :mod:`medseg.method.mask_options` (torch-free) stays cheap to import
for the configuration.
"""
