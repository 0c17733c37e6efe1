"""Background watches the scheduler leader runs: the health monitor."""
