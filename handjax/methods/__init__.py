"""handjax.methods: the published systems; importing this package registers them by name.

- ``crossmodal_vae``: Spurr et al. CVPR 2018 (cross-modal VAE, Alg. 1 pair alternation).
- ``aligned_latents``: Yang et al. ICCV 2019 (strategies S1-S4: extended decoders, KL or
  product-of-experts alignment; mixture fusions for comparison).
- ``dvae``: Yang dissertation ch. 4 (disentangled VAE, Alg. 4.1 / 4.2).
- ``multistage``: Stergioulas et al. (adversarial disentanglement, variational alignment, kinematic
  refinement with injection decoders).
- ``regression``: direct RGB -> 3D regression (the deterministic baseline; no latent space).
- ``semihand``: Yang dissertation ch. 6 (SemiHand: pseudo-labels, view and cross-modal consistency).
- ``dual_modality``: Yang dissertation ch. 7 (RGB/depth/fusion branches, attention fusion,
  contrastive pre-training, self-distillation).
"""

from handjax.methods import aligned_latents
from handjax.methods import crossmodal_vae
from handjax.methods import dual_modality
from handjax.methods import dvae
from handjax.methods import multistage
from handjax.methods import regression
from handjax.methods import semihand

__all__ = ["aligned_latents", "crossmodal_vae", "dual_modality", "dvae", "multistage", "regression", "semihand"]
