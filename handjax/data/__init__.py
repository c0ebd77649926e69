"""handjax.data: the synthetic_hands generator, tfds builders, transforms and grain pipelines.

Importing this package registers the tfds builders `synthetic_hands`, `rhd`, `stb` and `freihand`.
"""

from handjax.data.builders import freihand as _freihand  # registers tfds "freihand"
from handjax.data.builders import rhd as _rhd  # registers tfds "rhd"
from handjax.data.builders import stb as _stb  # registers tfds "stb"
from handjax.data.builders import synthetic_hands as _synthetic_hands  # registers "synthetic_hands"
