"""The bundled demo project: a small classifier on synthetic data that learns visibly on a CPU."""
