"""fmviz: see what each channel of a convolutional network responds to."""

__version__ = "0.1.0"
