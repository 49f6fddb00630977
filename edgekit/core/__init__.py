"""The ground floor: configs and their builder, errors, presets, data readers, atomic files and
the folder lock.

Imports neither TensorFlow nor any other layer of edgekit; every other layer may import it.
"""
