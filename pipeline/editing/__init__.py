"""Content editing: region masks that follow the motion, and values that change over time."""
