"""netsetup: connect a remote administrative assistant to their company, safely."""

__version__ = "0.1.0"
