"""The ordered middleware chain every request passes through."""
