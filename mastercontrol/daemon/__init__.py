"""The imperative shell: the select() master loop, child spawning, IPC, logs and signals."""
