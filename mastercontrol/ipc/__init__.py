"""The IPC protocol between the master and its clients (CLI, client API, heartbeat sender)."""
