"""The Ryu seam: with controller.launcher, the only code that imports Ryu."""
