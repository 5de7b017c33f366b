"""Detector settings the benchmark scores. PROVISIONAL: chosen on 1 healthy and 4 high-LR
runs only (see RESULTS.md); the tune/holdout calibration has not been run yet."""
import math

SETTINGS: dict = {
    "interval": 3,  # the trainer's default gradient_monitor_interval
    # the largest block gain (block 0 in our GPTs): a 50% rise of its 5-check moving
    # average, sustained 3 checks; no absolute threshold (healthy block 0 reaches ~24)
    "gain_max": {"drift_threshold": 0.5, "absolute_threshold": math.inf, "window": 5, "consecutive": 3},
}
