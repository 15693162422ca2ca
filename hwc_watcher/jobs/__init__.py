"""The work the daemon does, each a pure plan carried out against the edges: the cycle, the recall, the
drill, the 08:15 guard, the alerts, and the scheduler that runs them."""
