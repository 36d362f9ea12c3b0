"""ITU-T X.1125 correlative reacting system and X.1124 authentication on OpenFlow 1.3.

Only `controller.launcher` and `controller.ryu_shell` import Ryu; everything else is plain
Python that returns decisions and OpenFlow messages as data.
"""
__version__ = "0.1.0"
