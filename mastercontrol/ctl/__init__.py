"""mastercontrol-ctl: the command-line client of the master's IPC socket."""
