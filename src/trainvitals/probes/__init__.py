"""Torch measurement of a model: results stay on the device until a logging step."""
