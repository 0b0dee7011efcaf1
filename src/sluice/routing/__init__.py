"""Pick targets, attempt, fall back, time out."""
