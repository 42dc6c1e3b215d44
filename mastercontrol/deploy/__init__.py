"""Fleet deploys: Fabric tasks and the rolling, health-gated rollout."""
