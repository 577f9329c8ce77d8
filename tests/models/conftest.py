import pytest
import torch

from medseg.models.advanced_triplet_recon_segmentation_model import AdvancedTripletReconSegmentationModel


@pytest.fixture
def make_model():
    def factory(network_type: str = "FCN_16_standard", seed: int = 0, **kwargs) -> AdvancedTripletReconSegmentationModel:
        torch.manual_seed(seed)
        kwargs.setdefault("device", "cpu")
        return AdvancedTripletReconSegmentationModel(network_type=network_type, use_gpu=False, **kwargs)

    return factory


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(123)
    images = torch.rand(2, 1, 32, 32, generator=g)
    labels = torch.randint(0, 4, (2, 32, 32), generator=g)
    return images, labels
