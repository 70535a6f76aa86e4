"""``nex demo``'s old import place. The experiment now lives in :mod:`nex_interp.zoo.experiment`
(settings, one variant, the analyses, the figures, the whole run); this module only re-exports it
so that existing scripts and notebooks keep working."""

from .zoo.experiment import *  # noqa: F401,F403
from .zoo.experiment import __all__  # noqa: F401
