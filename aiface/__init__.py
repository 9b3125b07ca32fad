"""The core: what runs at inference time, shared by the service, training and evaluation.

``preprocess`` (image bytes to model input), ``faces`` (finding and framing
faces), ``bundle`` (a model and its metadata on disk), ``layers`` (our custom
Keras layers), ``explain`` (Grad-CAM overlays). Nothing here imports
``training``; importing the package, ``preprocess``, ``faces``, ``explain`` or
``bundle`` loads neither Keras nor TensorFlow (``layers`` and the functions
that run a model do).
"""
