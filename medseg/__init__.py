"""medseg: cooperative training and latent space data augmentation for robust cardiac MR segmentation."""

__version__ = "0.1.0"
