"""handjax.losses: every objective and loss of the papers as pure jax.numpy functions (no Flax).

    from handjax import losses
    q = losses.Gaussian(mean, logvar)
    fused = losses.product_of_experts([q_rgb, q_cloud], mask=has_modality)
    loss, terms = losses.poe_alignment_objective(rng, experts, decode, targets, recon_fns, ...)

Importing this package needs only jax, numpy, chex, scipy and ott-jax. Submodules group the
functions by topic; the names below are re-exported for convenience.
"""

from handjax.losses import adversarial
from handjax.losses import consistency
from handjax.losses import contrastive
from handjax.losses import elbo
from handjax.losses import gaussian
from handjax.losses import heatmap
from handjax.losses import image
from handjax.losses import kinematic
from handjax.losses import pointcloud
from handjax.losses import pose
from handjax.losses import pseudo_labels
from handjax.losses import schedules
from handjax.losses.adversarial import bce_with_logits
from handjax.losses.adversarial import discriminator_loss
from handjax.losses.adversarial import generator_loss
from handjax.losses.consistency import cross_modal_consistency
from handjax.losses.consistency import view_consistency
from handjax.losses.contrastive import nt_xent
from handjax.losses.elbo import cross_modal_elbo
from handjax.losses.elbo import disentangled_elbo
from handjax.losses.elbo import disentanglement_objective
from handjax.losses.elbo import embedding_elbo
from handjax.losses.elbo import kl_alignment_objective
from handjax.losses.elbo import masked_mean
from handjax.losses.elbo import poe_alignment_objective
from handjax.losses.elbo import variational_alignment_objective
from handjax.losses.gaussian import Gaussian
from handjax.losses.gaussian import Mixture
from handjax.losses.gaussian import kl
from handjax.losses.gaussian import kl_mixture_upper_bound
from handjax.losses.gaussian import kl_standard_normal
from handjax.losses.gaussian import mixture_of_experts
from handjax.losses.gaussian import mixture_of_products_of_experts
from handjax.losses.gaussian import product_of_experts
from handjax.losses.gaussian import sample
from handjax.losses.gaussian import sample_mixture
from handjax.losses.heatmap import gaussian_heatmaps
from handjax.losses.heatmap import heatmap_cross_entropy
from handjax.losses.heatmap import heatmap_l2
from handjax.losses.heatmap import soft_argmax
from handjax.losses.image import depth_l1
from handjax.losses.image import mask_l1
from handjax.losses.kinematic import bone_length_loss
from handjax.losses.kinematic import geometric_loss
from handjax.losses.kinematic import kcs_loss
from handjax.losses.pointcloud import chamfer_distance
from handjax.losses.pointcloud import chamfer_distance_squared
from handjax.losses.pointcloud import earth_movers_distance
from handjax.losses.pointcloud import exact_emd
from handjax.losses.pointcloud import sinkhorn_divergence
from handjax.losses.pose import pose_25d_distance
from handjax.losses.pose import pose_epe
from handjax.losses.pose import pose_l2
from handjax.losses.pose import pose_mse
from handjax.losses.pseudo_labels import confidence
from handjax.losses.pseudo_labels import select_confident
from handjax.losses.pseudo_labels import unsupervised_loss
from handjax.losses.schedules import cyclical_beta
from handjax.losses.schedules import linear_warmup_beta
from handjax.losses.schedules import log_linear_beta
