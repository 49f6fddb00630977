"""The TensorFlow side: the one Keras import point, the pipeline's stages, train/, optimize/,
export/.

May import `edgekit.device` (to verify files before they are written) and `edgekit.core`;
neither of those imports it.
"""
