"""Pure core of the timeline projector: event-to-entry projection and statistics."""
