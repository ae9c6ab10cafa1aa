"""Screen pop (issue 14): the caller's details when an agent's phone rings and answers, sent
to the live stream (GET /api/v1/events), the agent page (/agent) and signed webhooks."""
