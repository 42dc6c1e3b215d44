"""Fleet logic that runs outside the master: system metrics, release id, heartbeats.

Standard library and psutil only; never imports daemon/, child/, api/, bottle or waitress.
"""
