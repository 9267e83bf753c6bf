"""A volunteer's contribution: the run command (headless or dashboard), the session that supervises the training
process, the training process itself and its Lightning callback, and the headless log."""
