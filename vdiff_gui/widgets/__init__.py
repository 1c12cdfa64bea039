"""The window's widgets: each takes the ProjectState (or a controller) and shows it."""
