"""The top floor: click commands that parse options, build a config, call the library and print.

The device commands (`bench`, `inspect`, `verify`) reach no TensorFlow: the workstation side is
imported inside the commands that need it.
"""
