"""Pure decisions of the executor: the run state machine, webhook requests, body templates."""
