"""mailbot: hands out monthly e-book access codes to library patrons who ask by email."""

__version__ = "0.2.0"
