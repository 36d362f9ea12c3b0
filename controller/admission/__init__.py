"""X.1124 admission: the controller as IEEE 802.1X authenticator and EAC (pure logic).

Everything here returns data (frames as bytes, effects as dataclasses); the Ryu shell sends.
"""
