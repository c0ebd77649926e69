"""handjax.models: Flax linen modules mapping arrays to arrays (or to `Gaussian` posteriors)."""

from handjax.models.decoders import DeconvDecoder, FoldingNet, folding_grid
from handjax.models.fusion import AttentionFusion, DualBranchResNet, attention_weights
from handjax.models.hourglass import Hourglass, latent_25d_readout
from handjax.models.keypoints import KeypointResNet
from handjax.models.mlp import (InjectionDecoder, JointEncoder, LatentDiscriminator, MLP,
                                VariationalMapper)
from handjax.models.pointset import PermutationEquivariantLayer, PointSetEncoder, PointSetFeatures
from handjax.models.resnet import BasicBlock, GaussianHead, ResNet, ResNetEncoder

__all__ = [
    "AttentionFusion", "BasicBlock", "DeconvDecoder", "DualBranchResNet", "FoldingNet",
    "GaussianHead", "Hourglass", "InjectionDecoder", "JointEncoder", "KeypointResNet",
    "LatentDiscriminator", "MLP", "PermutationEquivariantLayer", "PointSetEncoder",
    "PointSetFeatures", "ResNet", "ResNetEncoder", "VariationalMapper", "attention_weights",
    "folding_grid", "latent_25d_readout",
]
