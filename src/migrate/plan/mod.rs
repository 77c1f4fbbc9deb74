//! Migration planner (pure).
