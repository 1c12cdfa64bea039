"""vdiff's desktop window (Qt). Holds no model or video logic: everything it shows comes from `pipeline`."""
