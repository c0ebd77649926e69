"""handjax: 3D hand pose estimation from single RGB images through learned latent spaces."""

__version__ = "0.1.0"
