"""HTTP APIs (Bottle apps served by Waitress), run as supervised internal children."""
