"""Progress: thread-safe counters the engine feeds, and views that render their snapshots."""
