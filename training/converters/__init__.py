"""Others' weights converted once into ours (EfficientNet-Lite, face-api's face detector, TAEF2)."""
