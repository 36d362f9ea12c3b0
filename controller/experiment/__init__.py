"""Pure parts of the worm-containment experiments: scenarios, models, results, plots."""
